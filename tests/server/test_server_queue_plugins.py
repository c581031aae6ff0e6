"""Queue create/update asks the installed plugins too: a queue every submit would fail on is
refused at once, with the path and the fix."""

from __future__ import annotations

import pytest
from kit import QUEUE, claim_now

from launchplane.core.client import LaunchplaneClient, NotFound, ValidationFailed
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio


async def test_resource_args_the_runner_model_refuses_are_refused(
    admin: LaunchplaneClient,
) -> None:
    config = {"resource": "local-process", "resource_args": {"local-process": {"timeout": 5}}}
    with pytest.raises(ValidationFailed) as caught:
        await admin.create_queue("bad", config)
    assert caught.value.status == 422
    [error] = caught.value.errors
    assert error["path"] == "resource_args.local-process.timeout"
    assert "did you mean 'timeout_seconds'" in error["message"]
    with pytest.raises(NotFound):
        await admin.get_queue("bad")


async def test_an_update_is_checked_the_same_way(admin: LaunchplaneClient) -> None:
    await admin.create_queue("checked-update", {"resource": "local-process"})
    bad = {"resource": "local-process", "resource_args": {"local-process": {"timeout_seconds": -1}}}
    with pytest.raises(ValidationFailed) as caught:
        await admin.update_queue("checked-update", bad)
    assert [e["path"] for e in caught.value.errors] == [
        "resource_args.local-process.timeout_seconds"
    ]
    assert (await admin.get_queue("checked-update"))["version"] == 1


async def test_a_placeholder_is_judged_at_submit_not_at_create(admin: LaunchplaneClient) -> None:
    config = {
        "resource": "local-process",
        "resource_args": {"local-process": {"timeout_seconds": "{{timeout}}"}},
        "template_variables": {"timeout": {"type": "integer", "default": 60, "min": 1}},
    }
    created = await admin.create_queue("templated", config)
    assert created["version"] == 1


async def test_a_misspelt_secret_scheme_is_refused(admin: LaunchplaneClient) -> None:
    config = {"resource": "local-process", "secrets": {"HF_TOKEN": "evn:HF_TOKEN"}}
    with pytest.raises(ValidationFailed) as caught:
        await admin.create_queue("bad", config)
    [error] = caught.value.errors
    assert error["path"] == "secrets.HF_TOKEN"
    assert "scheme 'evn' (did you mean 'env'?)" in error["message"]


async def test_a_provider_only_the_agents_have_is_a_warning(admin: LaunchplaneClient) -> None:
    config = {"resource": "local-process", "secrets": {"DB": "vault:prod/db#password"}}
    created = await admin.create_queue("vaulted", config)
    assert any(
        "secrets.DB" in w and "'vault' is not installed here" in w for w in created["warnings"]
    )


async def test_a_runner_only_the_agents_have_is_a_warning(admin: LaunchplaneClient) -> None:
    created = await admin.create_queue("slurm", {"resource": "slurm"})
    assert any("runner 'slurm' is not installed here" in w for w in created["warnings"])


async def test_provider_options_are_shown_to_admins_only(
    admin: LaunchplaneClient, submitter: LaunchplaneClient
) -> None:
    """A provider's options (an address, a mount path) are the admin's, like secret refs."""
    config = {
        "resource": "local-process",
        "secret_providers": {"vault": {"addr": "https://v:8200"}},
    }
    await admin.create_queue("provider-options", config)
    assert (await admin.get_queue("provider-options"))["config"]["secret_providers"] == {
        "vault": {"addr": "https://v:8200"}
    }
    seen = await submitter.get_queue("provider-options")
    assert list(seen["config"]["secret_providers"]) == ["vault"]
    job = await submitter.submit_job("provider-options", {"entry_point": "true"})
    assert "v:8200" not in str(seen) and "v:8200" not in str(job)
    assert "v:8200" not in str(await submitter.get_job(job["id"]))


async def test_a_run_record_shows_references_and_options_to_admins_only(
    server: EmbeddedServer,
    admin: LaunchplaneClient,
    submitter: LaunchplaneClient,
    agent: LaunchplaneClient,
) -> None:
    config = {
        "resource": "local-process",
        "secrets": {"DB_PASSWORD": "env:PROD_DB_PASSWORD"},
        "secret_providers": {"vault": {"addr": "https://v:8200"}},
    }
    await server.ensure_queue(QUEUE, config)
    job = await submitter.submit_job(QUEUE, {"entry_point": "true"})
    lease = await claim_now(agent)
    spec = lease.resolved.model_dump(mode="json")
    await agent.complete(lease.lease_id, "succeeded", exit_code=0, record={"spec": spec})

    assert (await admin.get_record(job["id"]))["spec"]["secrets"] == config["secrets"]
    seen = await submitter.get_record(job["id"])
    assert seen["spec"]["secrets"] == {"DB_PASSWORD": "<hidden>"}
    assert list(seen["spec"]["secret_providers"]) == ["vault"]
    assert "PROD_DB_PASSWORD" not in str(seen) and "v:8200" not in str(seen)


async def test_a_queue_that_names_its_runner_the_wandb_way_gets_that_runner_s_check(
    admin: LaunchplaneClient,
) -> None:
    # W&B calls the docker runner "local-container": the server must judge a submit with
    # the docker runner's model, not skip it because no runner has W&B's name.
    await admin.create_queue("wandb-named", {"resource": "local-container"})
    job = {"docker": {"image": "x"}, "resource_args": {"docker": {"memroy": "4g"}}}
    with pytest.raises(ValidationFailed) as caught:
        await admin.submit_job("wandb-named", job)
    [error] = caught.value.errors
    assert error["path"] == "resource_args.docker.memroy"
    assert "did you mean 'memory'" in error["message"]

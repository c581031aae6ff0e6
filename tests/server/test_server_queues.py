"""Queues: creation checks placeholders at once, updates are versioned, secrets stay hidden."""

from __future__ import annotations

import httpx
import pytest
from serverkit import bearer

from launchplane.core.client import Conflict, LaunchplaneClient, NotFound, ValidationFailed

pytestmark = pytest.mark.anyio


async def test_create_and_show_queue(admin: LaunchplaneClient) -> None:
    created = await admin.create_queue("gpu", {"resource": "local-process", "max_attempts": 2})
    assert created["name"] == "gpu"
    assert created["version"] == 1
    assert created["config"] == {"resource": "local-process", "max_attempts": 2}
    shown = await admin.get_queue("gpu")
    assert shown == created
    assert "gpu" in [queue["name"] for queue in await admin.list_queues()]


async def test_undeclared_placeholder_is_refused_with_its_path(admin: LaunchplaneClient) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await admin.create_queue("bad", {"entry_point": "python {{script}}"})
    assert caught.value.status == 422
    assert [error["path"] for error in caught.value.errors] == ["entry_point"]
    assert "script" in caught.value.errors[0]["message"]
    with pytest.raises(NotFound):
        await admin.get_queue("bad")


async def test_every_problem_is_listed(admin: LaunchplaneClient) -> None:
    config = {"entry_pont": "x", "max_attempts": 0, "hyperparameters": {"lr": "{{lr}}"}}
    with pytest.raises(ValidationFailed) as caught:
        await admin.create_queue("bad", config)
    paths = {error["path"] for error in caught.value.errors}
    assert {"entry_pont", "max_attempts", "hyperparameters.lr"} <= paths


async def test_duplicate_queue_is_a_conflict(admin: LaunchplaneClient) -> None:
    with pytest.raises(Conflict):
        await admin.create_queue("q", {})


async def test_update_bumps_the_version(admin: LaunchplaneClient) -> None:
    updated = await admin.update_queue("q", {"resource": "local-process", "lease_ttl_seconds": 5})
    assert updated["version"] == 2
    assert updated["config"]["lease_ttl_seconds"] == 5
    with pytest.raises(NotFound):
        await admin.update_queue("missing", {})


async def test_unused_variable_is_a_warning(admin: LaunchplaneClient) -> None:
    created = await admin.create_queue(
        "warned", {"template_variables": {"gpus": {"type": "integer", "default": 1}}}
    )
    assert any("gpus" in warning for warning in created["warnings"])


async def test_secret_references_are_shown_to_admins_only(
    admin: LaunchplaneClient, submitter: LaunchplaneClient
) -> None:
    await admin.create_queue("secret", {"secrets": {"DB_PASSWORD": "env:PROD_DB_PASSWORD"}})
    assert (await admin.get_queue("secret"))["config"]["secrets"] == {
        "DB_PASSWORD": "env:PROD_DB_PASSWORD"
    }
    seen = await submitter.get_queue("secret")
    assert list(seen["config"]["secrets"]) == ["DB_PASSWORD"]
    assert "PROD_DB_PASSWORD" not in str(seen)
    job = await submitter.submit_job("secret", {"entry_point": "true"})
    assert "PROD_DB_PASSWORD" not in str(job)


async def test_queue_name_is_checked(http: httpx.AsyncClient, server) -> None:
    response = await http.post(
        "/queues", json={"name": "a b/c", "config": {}}, headers=bearer(server.admin_token)
    )
    assert response.status_code == 422
    assert response.json()["detail"]["errors"][0]["path"] == "name"

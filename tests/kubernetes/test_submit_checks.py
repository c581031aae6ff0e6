"""``resource_args.kubernetes`` is judged by the queue server at queue create and at submit.

A real queue server (``EmbeddedServer``) on a loopback port, in this loop, and
the typed client: the server validates with the kubernetes runner's model (and
the OpenAPI schema for a W&B manifest), so a bad field is refused with its path
before any agent sees the job. No cluster is contacted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from launchplane.core.client import LaunchplaneClient, ValidationFailed
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.settings import ServerSettings

pytestmark = [pytest.mark.kubernetes, pytest.mark.anyio]

JOB = {"docker": {"image": "busybox:1.36"}, "command": ["echo", "hi"]}


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[LaunchplaneClient]:
    settings = ServerSettings(data_dir=tmp_path / "data")
    async with (
        EmbeddedServer(settings=settings) as server,
        LaunchplaneClient(server.url, server.admin_token, retries=0) as client,
    ):
        yield client


async def refused(call: Any) -> list[dict[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        await call
    assert caught.value.status == 422
    return caught.value.errors


async def test_a_wandb_manifest_with_a_misspelt_field_is_refused_at_queue_create(
    admin: LaunchplaneClient,
) -> None:
    manifest = {"spec": {"template": {"spec": {"containers": [{"name": "m", "imag": "x"}]}}}}
    config = {"resource": "kubernetes", "resource_args": {"kubernetes": manifest}}
    errors = await refused(admin.create_queue("bad", config))
    assert errors == [
        {
            "path": "resource_args.kubernetes.spec.template.spec.containers.0",
            "message": "Additional properties are not allowed ('imag' was unexpected)",
        }
    ]


async def test_a_placeholder_quantity_waits_for_its_value_at_submit(
    admin: LaunchplaneClient,
) -> None:
    config = {
        "resource": "kubernetes",
        "template_variables": {"gpus": {"type": "integer", "default": 1, "min": 0, "max": 8}},
        "resource_args": {"kubernetes": {"requests": {"nvidia.com/gpu": "{{gpus}}"}}},
    }
    await admin.create_queue("gpu", config)
    job = await admin.submit_job("gpu", JOB, template_variables={"gpus": 4})
    assert job["id"]


async def test_a_submitter_is_refused_with_the_path_and_the_fix(admin: LaunchplaneClient) -> None:
    await admin.create_queue("k8s", {"resource": "kubernetes"})
    errors = await refused(
        admin.submit_job("k8s", {**JOB, "resource_args": {"kubernetes": {"node_selecter": {}}}})
    )
    assert errors[0]["path"] == "resource_args.kubernetes.node_selecter"
    assert "did you mean 'node_selector'?" in errors[0]["message"]
    errors = await refused(
        admin.submit_job(
            "k8s", {**JOB, "resource_args": {"kubernetes": {"service_account": "cluster-admin"}}}
        )
    )
    assert errors[0]["path"] == "resource_args.kubernetes.service_account"
    privileged = {"spec": {"template": {"spec": {"hostPID": True, "containers": [{}]}}}}
    errors = await refused(
        admin.submit_job("k8s", {**JOB, "resource_args": {"kubernetes": privileged}})
    )
    assert errors[0]["path"] == "resource_args.kubernetes.spec.template.spec.hostPID"
    assert "allow_privileged: true" in errors[0]["message"]


async def test_a_queue_may_allow_privileged_pods_for_its_jobs(admin: LaunchplaneClient) -> None:
    config = {"resource": "kubernetes", "resource_args": {"kubernetes": {"allow_privileged": True}}}
    await admin.create_queue("trusted", config)
    privileged = {"spec": {"template": {"spec": {"hostPID": True, "containers": [{}]}}}}
    job = await admin.submit_job("trusted", {**JOB, "resource_args": {"kubernetes": privileged}})
    assert job["id"]
    errors = await refused(
        admin.submit_job(
            "trusted", {**JOB, "resource_args": {"kubernetes": {"allow_privileged": False}}}
        )
    )
    assert errors[0]["path"] == "resource_args.kubernetes.allow_privileged"


@pytest.mark.parametrize(
    "key",
    ["service_account", "serviceAccountName", "service_account_name", "configFile", "context"],
)
async def test_every_spelling_of_an_admin_field_is_refused_to_a_submitter(
    admin: LaunchplaneClient, key: str
) -> None:
    await admin.create_queue("k8s", {"resource": "kubernetes"})
    errors = await refused(
        admin.submit_job("k8s", {**JOB, "resource_args": {"kubernetes": {key: "x"}}})
    )
    assert errors[0]["path"] == f"resource_args.kubernetes.{key}"
    assert "queue" in errors[0]["message"]


async def test_wandb_keys_that_are_no_kubernetes_field_are_refused_with_the_field_to_use(
    admin: LaunchplaneClient,
) -> None:
    body = {"jobName": "x", "gpus": "2", "image": "y", "labels": [{"key": "a", "value": "b"}]}
    errors = await refused(
        admin.create_queue("k8s", {"resource": "kubernetes", "resource_args": {"kubernetes": body}})
    )
    by_path = {e["path"].removeprefix("resource_args.kubernetes."): e["message"] for e in errors}
    assert set(by_path) == {"jobName", "gpus", "image", "labels"}
    assert "lp-<job id>-<attempt>" in by_path["jobName"]
    assert "nvidia.com/gpu" in by_path["gpus"]
    assert "docker.image" in by_path["image"]
    assert "{name: value}" in by_path["labels"]


async def test_numbers_in_labels_and_annotations_become_strings(admin: LaunchplaneClient) -> None:
    manifest = {
        "metadata": {"labels": {"tier": 2}},
        "spec": {"template": {"metadata": {"annotations": {"threshold": 2.5, "on": True}}}},
    }
    config = {"resource": "kubernetes", "resource_args": {"kubernetes": manifest}}
    await admin.create_queue("k8s", config)
    assert (await admin.submit_job("k8s", JOB))["id"]

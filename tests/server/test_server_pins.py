"""Unpinned inputs at submit: the answer's ``warnings``, ``strict_pins`` and a queue's
``guardrails.require_pins`` (a 422 naming each path and its fix), on a real server."""

from __future__ import annotations

import pytest
from kit import QUEUE

from launchplane.core.client import LaunchplaneClient, ValidationFailed
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

DIGEST = "sha256:" + "b" * 64
COMMIT = "0123456789abcdef0123456789abcdef01234567"
UNPINNED = {
    "git": {"repository": "https://example.com/r.git", "branch": "main"},
    "docker": {"image": "python:3.11"},
    "input_artifacts": ["dataset:latest"],
    "requirements": ["numpy"],
}
PINNED = {
    "git": {"repository": "https://example.com/r.git", "commit": COMMIT},
    "docker": {"image": f"python@{DIGEST}"},
    "input_artifacts": ["dataset:v2"],
    "requirements": ["numpy==1.26.4"],
}
PATHS = ["git.branch", "docker.image", "input_artifacts[0]", "requirements[0]"]


async def test_submit_answers_with_a_warning_per_unpinned_input(
    submitter: LaunchplaneClient,
) -> None:
    job = await submitter.submit_job(QUEUE, UNPINNED)
    assert [warning.split(": ", 1)[0] for warning in job["warnings"]] == PATHS
    assert "set git.commit" in job["warnings"][0]
    # The job's own document says so too, later.
    assert (await submitter.get_job(job["id"]))["warnings"] == job["warnings"]
    assert (await submitter.submit_job(QUEUE, PINNED))["warnings"] == []


async def test_strict_pins_refuses_with_each_path_and_its_fix(
    submitter: LaunchplaneClient,
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job(QUEUE, UNPINNED, strict_pins=True)
    assert caught.value.status == 422
    assert [error["path"] for error in caught.value.errors] == PATHS
    assert all("(--strict-pins)" in error["message"] for error in caught.value.errors)
    assert await submitter.list_jobs(QUEUE) == []
    await submitter.submit_job(QUEUE, PINNED, strict_pins=True)


async def test_a_queue_that_requires_pins_refuses_unpinned_jobs_even_from_admins(
    server: EmbeddedServer, submitter: LaunchplaneClient, admin: LaunchplaneClient
) -> None:
    await server.ensure_queue(
        "pinned", {"resource": "local-process", "guardrails": {"require_pins": True}}
    )
    for client in (submitter, admin):
        with pytest.raises(ValidationFailed) as caught:
            await client.submit_job("pinned", UNPINNED)
        assert caught.value.status == 422
        errors = {error["path"]: error["message"] for error in caught.value.errors}
        assert list(errors) == PATHS
        assert "queue 'pinned' requires pins" in errors["docker.image"]
        assert "python@sha256:..." in errors["docker.image"]
    accepted = await submitter.submit_job("pinned", PINNED)
    assert accepted["warnings"] == []


async def test_a_queue_default_that_is_unpinned_is_the_queues_to_fix(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    """The check is on the resolved job: a queue's own tag refuses every job on it."""
    await server.ensure_queue(
        "tagged",
        {"docker": {"image": "python:3.11"}, "guardrails": {"require_pins": True}},
    )
    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job("tagged", {})
    assert [error["path"] for error in caught.value.errors] == ["docker.image"]

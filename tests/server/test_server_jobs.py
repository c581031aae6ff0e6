"""Jobs: submit-time validation, idempotency, the claim-to-complete life cycle, cancel, logs."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import httpx
import pytest
from kit import QUEUE, claim_now
from serverkit import bearer

from launchplane.core.client import LaunchplaneClient, NotFound, ValidationFailed
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

GUARDED_QUEUE: dict[str, Any] = {
    "resource": "local-process",
    "docker": {"image": "python:3.11"},
    "locked": ["docker.image"],
    "hyperparameters": {"lr": "{{lr}}"},
    "template_variables": {"lr": {"type": "float", "min": 0, "max": 1, "default": 0.1}},
}


async def test_submit_claim_events_logs_complete(
    submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    job = await submitter.submit_job(QUEUE, {"entry_point": "python train.py"})
    assert job["state"] == "queued"
    assert job["attempt"] == 0
    assert job["id"].startswith("j-")
    assert job["resolved"]["entry_point"] == "python train.py"
    assert job["resolved"]["queue"] == QUEUE

    lease = await claim_now(agent)
    assert lease.lease_id.startswith("l-")
    assert lease.job_id == job["id"]
    assert lease.attempt == 1
    assert lease.resolved.model_dump(mode="json") == job["resolved"]
    assert (lease.resolved.entry_point, lease.resolved.resource) == (
        "python train.py",
        "local-process",
    )
    assert lease.lease_ttl_seconds == 60

    await agent.post_event(lease.lease_id, "building", stage="build")
    await agent.post_event(lease.lease_id, "running", details={"run_id": "r-1"})
    assert (await submitter.get_job(job["id"]))["state"] == "running"
    assert await agent.append_logs(lease.lease_id, ["epoch 1", "epoch 2"]) == 2
    assert await agent.append_logs(lease.lease_id, ["done"]) == 3

    with pytest.raises(NotFound):
        await submitter.get_record(job["id"])
    finished = await agent.complete(
        lease.lease_id, "succeeded", exit_code=0, record={"image": "python:3.11"}
    )
    assert finished["state"] == "succeeded"
    assert finished["exit_code"] == 0

    shown = await submitter.get_job(job["id"])
    assert [e["state"] for e in shown["events"]] == [
        "queued",
        "claimed",
        "building",
        "running",
        "succeeded",
    ]
    assert shown["agent_id"] == "agent-1"
    assert await submitter.get_record(job["id"]) == {"image": "python:3.11"}
    page = await submitter.read_logs(job["id"])
    assert [line["line"] for line in page["lines"]] == ["epoch 1", "epoch 2", "done"]
    assert [line["seq"] for line in page["lines"]] == [1, 2, 3]
    assert page["next"] == 3
    assert page["done"] is True
    tail = await submitter.read_logs(job["id"], after=2)
    assert [line["line"] for line in tail["lines"]] == ["done"]


async def test_failed_job_keeps_stage_reason_and_exit_code(
    submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    job = await submitter.submit_job(QUEUE, {"entry_point": "false"})
    lease = await claim_now(agent)
    await agent.complete(lease.lease_id, "failed", 3, stage="run", reason="exit code 3")
    shown = await submitter.get_job(job["id"])
    assert (shown["state"], shown["exit_code"], shown["failure_stage"], shown["reason"]) == (
        "failed",
        3,
        "run",
        "exit code 3",
    )
    # A retried completion (the answer was lost) is answered, not fenced.
    again = await agent.complete(lease.lease_id, "failed", 3, stage="run", reason="exit code 3")
    assert again["state"] == "failed"


async def test_jobs_list_newest_first_with_filters(submitter: LaunchplaneClient) -> None:
    first = await submitter.submit_job(QUEUE, {"entry_point": "a"})
    second = await submitter.submit_job(QUEUE, {"entry_point": "b"})
    await submitter.cancel_job(first["id"])
    listed = await submitter.list_jobs(queue=QUEUE)
    assert [job["id"] for job in listed] == [second["id"], first["id"]]
    assert [job["id"] for job in await submitter.list_jobs(state="cancelled")] == [first["id"]]
    assert await submitter.list_jobs(queue="other") == []
    assert len(await submitter.list_jobs(limit=1)) == 1


async def test_guardrail_violations_are_422_with_paths(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    await server.ensure_queue("guarded", GUARDED_QUEUE)
    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job(
            "guarded", {"docker": {"image": "evil:latest"}, "hyperparameters": {"lr": 3}}
        )
    paths = {error["path"] for error in caught.value.errors}
    assert paths == {"docker.image", "hyperparameters.lr"}
    assert caught.value.message == "invalid job: 2 problems"

    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job("guarded", {}, template_variables={"lr": "5"})
    assert [error["path"] for error in caught.value.errors] == ["template_variables.lr"]

    accepted = await submitter.submit_job("guarded", {}, template_variables={"lr": "0.5"})
    assert accepted["resolved"]["hyperparameters"] == {"lr": 0.5}
    assert accepted["template_variables"] == {"lr": "0.5"}
    assert accepted["queue_version"] == 1
    assert await submitter.list_jobs(queue="guarded") == [{**accepted, "events": []}], (
        "refused submissions leave no job behind"
    )


async def test_a_locked_entry_point_cannot_be_got_around_with_a_command(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    # command runs instead of entry_point: a free command would replace the admin's program.
    locked = {"entry_point": ["python", "approved.py"], "locked": ["entry_point"]}
    await server.ensure_queue("program", {"resource": "local-process", **locked})
    for job, path in (
        ({"command": ["sh", "-c", "id"]}, "command"),
        ({"overrides": {"command": ["sh"]}}, "overrides.command"),  # a W&B launch spec
    ):
        with pytest.raises(ValidationFailed) as caught:
            await submitter.submit_job("program", job)
        assert caught.value.status == 422
        assert [error["path"] for error in caught.value.errors] == [path]
    accepted = await submitter.submit_job("program", {"args": ["--epochs", "3"]})
    assert accepted["resolved"]["entry_point"] == ["python", "approved.py"]
    assert accepted["resolved"]["command"] is None


async def test_runner_resource_args_are_checked_at_submit(submitter: LaunchplaneClient) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job(
            QUEUE, {}, overrides=[{"resource_args": {"local-process": {"timeout_second": 5}}}]
        )
    assert caught.value.errors[0]["path"] == "resource_args.local-process.timeout_second"
    assert "timeout_seconds" in caught.value.errors[0]["message"]


async def test_unknown_queue_is_404(submitter: LaunchplaneClient) -> None:
    with pytest.raises(NotFound) as caught:
        await submitter.submit_job("nope", {})
    assert caught.value.errors == [{"path": "queue", "message": "no such queue"}]


async def test_job_records_the_queue_version_it_resolved_against(
    server: EmbeddedServer, submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    old = await submitter.submit_job(QUEUE, {})
    await server.ensure_queue(QUEUE, {"resource": "local-process", "env": {"STAGE": "v2"}})
    new = await submitter.submit_job(QUEUE, {})
    assert (old["queue_version"], new["queue_version"]) == (1, 2)
    assert new["resolved"]["env"] == {"STAGE": "v2"}
    lease = await claim_now(agent)
    assert lease.job_id == old["id"], "oldest first"
    assert lease.queue_version == 1
    assert lease.resolved.env == {}, "resolved against version 1, before STAGE was set"
    assert lease.resolved.model_dump(mode="json") == old["resolved"]


async def test_idempotency_key_returns_the_same_job(
    http: httpx.AsyncClient, server: EmbeddedServer
) -> None:
    token = await server.create_token("submitter")
    headers = {**bearer(token), "Idempotency-Key": "nightly-2024-06-01"}
    body = {"queue": QUEUE, "job": {"entry_point": "train"}}
    first = await http.post("/jobs", json=body, headers=headers)
    again = await http.post("/jobs", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    # Keys are per token: another submitter's identical key is its own job.
    other = await server.create_token("submitter")
    theirs = await http.post("/jobs", json=body, headers={**headers, **bearer(other)})
    assert theirs.status_code == 201
    assert theirs.json()["id"] != first.json()["id"]


async def test_fifty_concurrent_submits_with_one_key_make_one_job(
    http: httpx.AsyncClient, server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    token = await server.create_token("submitter")
    headers = {**bearer(token), "Idempotency-Key": str(uuid.uuid4())}
    body = {"queue": QUEUE, "job": {"entry_point": "train"}}
    answers: list[httpx.Response] = []

    async def send() -> None:
        answers.append(await http.post("/jobs", json=body, headers=headers, timeout=60))

    async with anyio.create_task_group() as tasks:
        for _ in range(50):
            tasks.start_soon(send)
    assert len(answers) == 50
    assert sorted(response.status_code for response in answers) == [200] * 49 + [201]
    assert len({response.json()["id"] for response in answers}) == 1
    assert len(await submitter.list_jobs(queue=QUEUE)) == 1


async def test_cancel_queued_job_at_once(
    submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    job = await submitter.submit_job(QUEUE, {})
    cancelled = await submitter.cancel_job(job["id"])
    assert cancelled["state"] == "cancelled"
    assert await agent.claim(QUEUE, "agent-1", wait=0) is None
    assert (await submitter.read_logs(job["id"]))["done"] is True
    assert (await submitter.cancel_job(job["id"]))["state"] == "cancelled", "idempotent"


async def test_cancel_running_job_reaches_the_agent_on_heartbeat(
    submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    job = await submitter.submit_job(QUEUE, {})
    lease = await claim_now(agent)
    await agent.post_event(lease.lease_id, "running")
    beat = await agent.heartbeat("agent-1", [lease.lease_id])
    assert (beat["renewed"], beat["cancel"]) == ([lease.lease_id], [])

    requested = await submitter.cancel_job(job["id"])
    assert (requested["state"], requested["cancel_requested"]) == ("running", True)
    beat = await agent.heartbeat("agent-1", [lease.lease_id])
    assert beat["cancel"] == [lease.lease_id]
    assert beat["renewed"] == [lease.lease_id]

    await agent.complete(lease.lease_id, "cancelled", exit_code=-15, reason="cancelled by user")
    final = await submitter.get_job(job["id"])
    assert final["state"] == "cancelled"


async def test_follow_logs_wakes_on_new_lines_and_ends_with_the_job(
    submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    job = await submitter.submit_job(QUEUE, {})
    lease = await claim_now(agent)
    seen: list[str] = []

    async def follow() -> None:
        async for line in submitter.follow_logs(job["id"], wait=10):
            seen.append(line["line"])

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(follow)
        for n in range(3):
            await anyio.sleep(0.05)
            await agent.append_logs(lease.lease_id, [f"line {n}"])
        with anyio.fail_after(2):
            while len(seen) < 3:
                await anyio.sleep(0.01)
        await agent.complete(lease.lease_id, "succeeded", exit_code=0)
    assert seen == ["line 0", "line 1", "line 2"]


async def test_log_long_poll_returns_when_a_line_arrives(
    submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    job = await submitter.submit_job(QUEUE, {})
    lease = await claim_now(agent)
    pages: list[dict[str, Any]] = []

    async def wait_for_line() -> None:
        pages.append(await submitter.read_logs(job["id"], after=0, wait=20))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait_for_line)
            await anyio.sleep(0.2)
            await agent.append_logs(lease.lease_id, ["hello"])
    assert [line["line"] for line in pages[0]["lines"]] == ["hello"]
    assert pages[0]["done"] is False
    empty = await submitter.read_logs(job["id"], after=1, wait=0.2)
    assert (empty["lines"], empty["next"], empty["done"]) == ([], 1, False)


async def test_unknown_job_is_404(submitter: LaunchplaneClient) -> None:
    for call in (
        submitter.get_job("j-missing"),
        submitter.cancel_job("j-missing"),
        submitter.get_record("j-missing"),
        submitter.read_logs("j-missing"),
    ):
        with pytest.raises(NotFound):
            await call

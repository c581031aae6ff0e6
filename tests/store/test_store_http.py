"""The HTTP API over each backend: what submitters and agents see is the same on both."""

from __future__ import annotations

import time
from datetime import datetime

import anyio
import httpx
import pytest
from kit import assert_fenced, claim_now, wait_for_state
from storekit import QUEUE

from launchplane.core.client import LaunchplaneClient
from launchplane.core.lease import Lease
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio


async def test_a_job_from_submit_to_success_with_its_history(
    submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    job = await submitter.submit_job(QUEUE, {"entry_point": "python train.py"})
    assert (job["state"], job["attempt"]) == ("queued", 0)
    lease = await claim_now(agent)
    assert (lease.job_id, lease.attempt, lease.resolved.entry_point) == (
        job["id"],
        1,
        "python train.py",
    )
    await agent.post_event(lease.lease_id, "running")
    assert await agent.append_logs(lease.lease_id, ["epoch 1", "epoch 2"]) == 2
    await agent.complete(lease.lease_id, "succeeded", exit_code=0, record={"run": "r1"})

    shown = await submitter.get_job(job["id"])
    assert (shown["state"], shown["exit_code"], shown["attempt"]) == ("succeeded", 0, 1)
    assert [(e["state"], e["attempt"]) for e in shown["events"]] == [
        ("queued", 0),
        ("claimed", 1),
        ("running", 1),
        ("succeeded", 1),
    ]
    assert await submitter.get_record(job["id"]) == {"run": "r1"}
    page = await submitter.read_logs(job["id"])
    assert ([line["line"] for line in page["lines"]], page["done"]) == (
        ["epoch 1", "epoch 2"],
        True,
    )


async def test_fifty_concurrent_submits_with_one_key_make_one_job(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    token = await server.create_token("submitter")
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "nightly-42"}
    answers: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=server.url + "/api/v1", headers=headers) as http:

        async def submit() -> None:
            answers.append(await http.post("/jobs", json={"queue": QUEUE, "job": {}}))

        async with anyio.create_task_group() as tasks:
            for _ in range(50):
                tasks.start_soon(submit)
    assert sorted(answer.status_code for answer in answers) == [200] * 49 + [201]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert len(await submitter.list_jobs(queue=QUEUE)) == 1


async def test_claims_are_oldest_first_and_wake_when_a_job_arrives(
    submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    submitted = [(await submitter.submit_job(QUEUE, {}))["id"] for _ in range(4)]
    assert [(await claim_now(agent)).job_id for _ in submitted] == submitted

    claims: list[Lease | None] = []

    async def wait_for_job() -> None:
        claims.append(await agent.claim(QUEUE, "agent-2", wait=20))

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(wait_for_job)
        await anyio.sleep(0.2)
        late = await submitter.submit_job(QUEUE, {})
    assert claims[0] is not None and claims[0].job_id == late["id"]
    assert time.perf_counter() - started < 2


async def test_expired_lease_is_requeued_and_fenced_then_agent_lost(
    server: EmbeddedServer, submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    await server.ensure_queue(QUEUE, {"lease_ttl_seconds": 0.3, "max_attempts": 2})
    job = await submitter.submit_job(QUEUE, {})
    lost = await claim_now(agent)
    requeued = await wait_for_state(submitter, job["id"], ("queued",), timeout=10)
    assert (requeued["state"], requeued["attempt"], requeued["agent_id"]) == ("queued", 1, None)
    await assert_fenced(agent, lost.lease_id)

    # The second lease must outlive its event on a loaded machine (CI saw 0.3 s run out between
    # the claim and the event), then expire on its own.
    await server.ensure_queue(QUEUE, {"lease_ttl_seconds": 2, "max_attempts": 2})
    second = await claim_now(agent, agent_id="agent-2")
    assert second.attempt == 2
    await agent.post_event(second.lease_id, "building")
    final = await wait_for_state(submitter, job["id"], timeout=15)
    assert (final["state"], final["reason"], final["failure_stage"], final["attempt"]) == (
        "failed",
        "agent lost",
        "building",
        2,
    )
    attempts = [(e["state"], e["attempt"]) for e in final["events"]]
    assert attempts[-3:] == [("claimed", 2), ("building", 2), ("failed", 2)]
    assert ("queued", 1) in attempts


async def test_cancel_queued_at_once_and_active_through_the_heartbeat(
    submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    running = await submitter.submit_job(QUEUE, {})
    waiting = await submitter.submit_job(QUEUE, {})
    lease = await claim_now(agent)
    assert (await submitter.cancel_job(waiting["id"]))["state"] == "cancelled"
    flagged = await submitter.cancel_job(running["id"])
    assert (flagged["state"], flagged["cancel_requested"]) == ("claimed", True)
    beat = await agent.heartbeat("agent-1", [lease.lease_id])
    assert beat["cancel"] == [lease.lease_id]
    await agent.complete(lease.lease_id, "cancelled", reason="cancelled by user")
    assert (await submitter.get_job(running["id"]))["state"] == "cancelled"
    assert await agent.claim(QUEUE, "agent-1", wait=0) is None


async def test_log_followers_wake_on_new_lines_and_end_with_the_job(
    submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    job = await submitter.submit_job(QUEUE, {})
    lease = await claim_now(agent)
    followed: list[str] = []
    woke_after: list[float] = []

    async def follow() -> None:
        started = time.perf_counter()
        async for line in submitter.follow_logs(job["id"], wait=20):
            woke_after.append(time.perf_counter() - started)
            followed.append(line["line"])

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(follow)
            await anyio.sleep(0.2)
            await agent.append_logs(lease.lease_id, ["first"])
            await anyio.sleep(0.2)
            await agent.append_logs(lease.lease_id, [f"line {n}" for n in range(1500)])
            await agent.complete(lease.lease_id, "succeeded", exit_code=0)
    assert followed == ["first", *(f"line {n}" for n in range(1500))]
    assert woke_after[0] < 1.0, "a follower is woken, not left to its wait"
    page = await submitter.read_logs(job["id"], after=1000)
    assert (len(page["lines"]), page["next"], page["done"]) == (501, 1501, True)


async def test_retried_infrastructure_failure_keeps_every_attempt_in_history(
    server: EmbeddedServer, submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    await server.ensure_queue(QUEUE, {"retry": {"max_attempts": 2, "backoff_seconds": 0.5}})
    job = await submitter.submit_job(QUEUE, {})
    first = await claim_now(agent)
    answer = await agent.complete(
        first.lease_id,
        "failed",
        stage="run",
        reason="ErrImagePull: registry unreachable",
        infrastructure_failure=True,
    )
    assert (answer["state"], answer["attempt"], answer["reason"]) == ("queued", 1, None)

    started = time.perf_counter()
    second = await agent.claim(QUEUE, "agent-2", wait=10)
    waited = time.perf_counter() - started
    assert second is not None and second.attempt == 2
    assert waited < 2.5, f"claimed {waited:.2f}s after the failure; backoff is 0.5s"
    await agent.complete(second.lease_id, "failed", exit_code=3, stage="run", reason="bug")

    final = await submitter.get_job(job["id"])
    assert (final["state"], final["attempt"], final["exit_code"], final["reason"]) == (
        "failed",
        2,
        3,
        "bug",
    )
    failures = [e for e in final["events"] if e["state"] == "failed"]
    assert [(e["attempt"], e["reason"]) for e in failures] == [
        (1, "ErrImagePull: registry unreachable"),
        (2, "bug"),
    ]
    assert failures[0]["details"] == {"infrastructure_failure": True}
    # The backoff, on the server's own clock (the client's would count the complete
    # call's round trip, which a loaded machine stretches past the backoff).
    reclaimed = next(e for e in final["events"] if e["state"] == "claimed" and e["attempt"] == 2)
    backoff = datetime.fromisoformat(reclaimed["at"]) - datetime.fromisoformat(failures[0]["at"])
    assert backoff.total_seconds() >= 0.5, f"claimed again {backoff} after the failure"

"""Claims are long-polled leases; lost agents are swept and their jobs re-queued or failed."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import httpx
import pytest
from kit import QUEUE, agent_client, assert_fenced, claim_now

from launchplane.core.client import ApiError, LaunchplaneClient
from launchplane.core.lease import Lease
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio


async def test_claim_returns_204_after_wait_when_no_job(agent: LaunchplaneClient) -> None:
    started = time.perf_counter()
    assert await agent.claim(QUEUE, "agent-1", wait=0.5) is None
    elapsed = time.perf_counter() - started
    assert 0.45 <= elapsed < 5


async def test_a_lease_carries_the_stored_resolved_job_and_no_raw_layers(
    submitter: LaunchplaneClient, agent: LaunchplaneClient, http: httpx.AsyncClient
) -> None:
    job = await submitter.submit_job(
        QUEUE,
        {"entry_point": "train.py", "hyperparameters": {"lr": 0.1}},
        overrides=[{"env": {"STAGE": "test"}}],
    )
    answer = await http.post(
        f"/queues/{QUEUE}/claim",
        params={"wait": 5},
        json={"agent_id": "agent-1"},
        headers={"Authorization": f"Bearer {agent.token}"},
    )
    lease = answer.json()
    assert set(lease) == set(Lease.model_fields), "the agent's Lease reads every field sent"
    assert not {"queue_config", "spec", "overrides", "template_variables"} & set(lease)
    assert (lease["resolved"], lease["queue_version"]) == (job["resolved"], job["queue_version"])
    assert Lease.model_validate(lease).resolved.env == {"STAGE": "test"}


async def test_claim_wakes_at_once_when_a_job_is_submitted(
    submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    await submitter.submit_job(QUEUE, {})  # warm up: plugin registry, connections
    await claim_now(agent)
    wakes: list[float] = []
    submits: list[float] = []
    for _ in range(5):
        sent = 0.0

        async def submit_later() -> None:
            nonlocal sent
            await anyio.sleep(0.1)
            sent = time.perf_counter()
            await submitter.submit_job(QUEUE, {})
            submits.append(time.perf_counter() - sent)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(submit_later)
            lease = await agent.claim(QUEUE, "agent-1", wait=30)
            wakes.append(time.perf_counter() - sent)
        assert lease is not None
    wakes.sort()
    submits.sort()
    print(
        f"\nclaim wake latency, submit sent -> lease received: median {wakes[2] * 1000:.1f} ms "
        f"(min {wakes[0] * 1000:.1f}, max {wakes[-1] * 1000:.1f}); "
        f"the submit call alone: median {submits[2] * 1000:.1f} ms"
    )
    assert wakes[2] < 1.0


async def test_claims_are_exclusive_and_oldest_first(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    submitted = [(await submitter.submit_job(QUEUE, {}))["id"] for _ in range(6)]
    claimed: list[str] = []

    async def claimer(n: int) -> None:
        async with await agent_client(server, [QUEUE]) as client:
            while (lease := await client.claim(QUEUE, f"agent-{n}", wait=0.2)) is not None:
                claimed.append(lease.job_id)

    async with anyio.create_task_group() as tasks:
        for n in range(3):
            tasks.start_soon(claimer, n)
    assert sorted(claimed) == sorted(submitted), "every job claimed exactly once"


async def test_stale_lease_is_fenced_after_the_sweeper_requeued_it(
    server: EmbeddedServer, submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    await server.ensure_queue(QUEUE, {"lease_ttl_seconds": 0.3, "max_attempts": 3})
    job = await submitter.submit_job(QUEUE, {})
    lost = await claim_now(agent)
    assert lost.lease_ttl_seconds == 0.3
    await anyio.sleep(0.6)  # no heartbeat: the lease expires and the sweeper re-queues

    requeued = await submitter.get_job(job["id"])
    assert (requeued["state"], requeued["attempt"], requeued["agent_id"]) == ("queued", 1, None)
    assert "agent lost" in requeued["events"][-1]["reason"]
    await assert_fenced(agent, lost.lease_id)
    beat = await agent.heartbeat("agent-1", [lost.lease_id])
    assert (beat["renewed"], beat["stale"]) == ([], [lost.lease_id])

    second = await claim_now(agent)
    assert (second.job_id, second.attempt) == (job["id"], 2)


async def test_heartbeats_keep_a_lease_alive(
    server: EmbeddedServer, submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    # Beats 0.2 s apart keep a 1 s lease for 1.6 s: past its TTL, with 0.8 s to spare per
    # beat on a loaded CI machine (0.4 s with 0.15 s beats left too little and flaked).
    await server.ensure_queue(QUEUE, {"lease_ttl_seconds": 1.0})
    job = await submitter.submit_job(QUEUE, {})
    lease = await claim_now(agent)
    for _ in range(8):
        await anyio.sleep(0.2)
        beat = await agent.heartbeat("agent-1", [lease.lease_id])
        assert beat["renewed"] == [lease.lease_id]
        assert beat["lease_ttl_seconds"] == 1.0
    assert (await submitter.get_job(job["id"]))["state"] == "claimed"
    # Another agent cannot renew (or learn about) this agent's lease.
    assert (await agent.heartbeat("agent-2", [lease.lease_id]))["stale"] == [lease.lease_id]


async def test_max_attempts_exhausted_fails_the_job_as_agent_lost(
    server: EmbeddedServer, submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    await server.ensure_queue(QUEUE, {"lease_ttl_seconds": 0.2, "max_attempts": 2})
    job = await submitter.submit_job(QUEUE, {})
    for attempt in (1, 2):
        lease = await claim_now(agent)
        assert lease.attempt == attempt
        await agent.post_event(lease.lease_id, "running")
        await anyio.sleep(0.5)
    final = await submitter.get_job(job["id"])
    assert (final["state"], final["reason"], final["failure_stage"]) == (
        "failed",
        "agent lost",
        "running",
    )
    assert final["attempt"] == 2
    assert await agent.claim(QUEUE, "agent-1", wait=0) is None
    assert (await submitter.read_logs(job["id"]))["done"] is True


async def test_release_requeues_at_once_and_wakes_claimers(
    submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    job = await submitter.submit_job(QUEUE, {})
    lease = await claim_now(agent)
    claims: list[Lease | None] = []

    async def wait_for_claim() -> None:
        claims.append(await agent.claim(QUEUE, "agent-2", wait=10))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait_for_claim)
            await anyio.sleep(0.1)
            await agent.release(lease.lease_id, "agent shutting down")
    assert claims[0] is not None
    assert (claims[0].job_id, claims[0].attempt) == (job["id"], 2)
    events = (await submitter.get_job(job["id"]))["events"]
    assert events[-2]["reason"] == "released by agent: agent shutting down"
    await agent.release(lease.lease_id)  # a retried release is answered, not fenced


async def test_cancel_then_lost_agent_ends_cancelled(
    server: EmbeddedServer, submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    await server.ensure_queue(QUEUE, {"lease_ttl_seconds": 0.2})
    job = await submitter.submit_job(QUEUE, {})
    await claim_now(agent)
    await submitter.cancel_job(job["id"])
    await anyio.sleep(0.5)
    assert (await submitter.get_job(job["id"]))["state"] == "cancelled"


async def test_register_returns_the_leases_the_agent_still_holds(
    server: EmbeddedServer, submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    job = await submitter.submit_job(QUEUE, {"entry_point": "train"})
    lease = await claim_now(agent)
    held = await agent.register_agent(
        "agent-1", host="box", queues=[QUEUE], version="0.1.0", plugins={"local-process": "0.1.0"}
    )
    assert [lease.lease_id for lease in held] == [lease.lease_id]
    assert held[0].resolved.entry_point == "train"
    assert held[0].job_id == job["id"]
    assert await agent.register_agent("agent-9", queues=[QUEUE]) == []

    async with LaunchplaneClient(server.url, server.admin_token) as admin:
        agents = {entry["agent_id"]: entry for entry in await admin.list_agents()}
    assert agents["agent-1"]["host"] == "box"
    assert agents["agent-1"]["queues"] == [QUEUE]
    assert agents["agent-1"]["last_heartbeat"] is not None


async def test_a_claim_counts_as_a_heartbeat_and_a_missing_queue_is_404(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    """The claim transaction also notes the agent alive; a claim of no queue leaves no trace."""
    async with (
        await agent_client(server, ["*"]) as agent,
        LaunchplaneClient(server.url, server.admin_token) as admin,
    ):
        with pytest.raises(ApiError) as caught:
            await agent.claim("no-such-queue", "ghost", wait=0)
        assert caught.value.status == 404
        assert "queue 'no-such-queue' not found" in str(caught.value)
        assert await agent.claim(QUEUE, "agent-1", wait=0) is None
        first = {a["agent_id"]: a for a in await admin.list_agents()}
        await submitter.submit_job(QUEUE, {})
        assert await agent.claim(QUEUE, "agent-1", wait=0) is not None
        second = {a["agent_id"]: a for a in await admin.list_agents()}
    assert "ghost" not in first, "a refused claim must not register its agent"
    assert second["agent-1"]["last_heartbeat"] > first["agent-1"]["last_heartbeat"]


async def test_shutdown_ends_long_polls_at_once(tmp_path: Path) -> None:
    results: list[Lease | None] = []
    async with anyio.create_task_group() as tasks, EmbeddedServer(data_dir=tmp_path) as server:
        await server.ensure_queue(QUEUE, {})
        client = await agent_client(server, [QUEUE])

        async def poll() -> None:
            async with client:
                results.append(await client.claim(QUEUE, "agent-1", wait=60))

        tasks.start_soon(poll)
        await anyio.sleep(0.2)
        started = time.perf_counter()
    assert results == [None]
    assert time.perf_counter() - started < 5

"""Several server processes on one PostgreSQL database: exclusivity and NOTIFY wake-ups.

Claims waiting on one server must wake when a job is submitted through
another. The poll fallback is set to 5 s here, so a pickup well under a
second proves that NOTIFY, not polling, woke the claim.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text
from storekit import QUEUE, ServerProcess, submit_many

from launchplane.core.client import LaunchplaneClient
from launchplane.core.lease import Lease
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.settings import ServerSettings
from launchplane.server.store import Store

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

FALLBACK = 5.0
PICKUPS = 50


async def submit_and_time_pickup(
    submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> tuple[float, Lease | None]:
    """Seconds from sending a submit (to one server) to the lease (from another)."""
    claims: list[Lease | None] = []
    sent = 0.0

    async def claim() -> None:
        claims.append(await agent.claim(QUEUE, "waiting-agent", wait=30))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(claim)
        await anyio.sleep(0.1)  # the claim is waiting on its server
        sent = time.perf_counter()
        await submitter.submit_job(QUEUE, {})
    return time.perf_counter() - sent, claims[0]


async def test_two_server_processes_share_work_and_wake_each_other(
    pg_url: str, tmp_path: Path
) -> None:
    servers = [
        ServerProcess(pg_url, tmp_path / name, "--poll-interval", str(FALLBACK))
        for name in ("a", "b")
    ]
    with servers[0], servers[1]:
        a, b = servers
        async with LaunchplaneClient(a.url, a.admin_token) as admin:
            await admin.create_queue(QUEUE, {"resource": "local-process"})
            agent_token = (await admin.create_token("agent", [QUEUE]))["token"]
            submit_token = (await admin.create_token("submitter"))["token"]

        # Exclusivity: agents split across both servers.
        store = Store(pg_url)
        await store.open()
        try:
            job_ids = await submit_many(store, 200)
        finally:
            await store.close()
        leases: list[str] = []

        async def agent(n: int) -> None:
            url = (a, b)[n % 2].url
            async with LaunchplaneClient(url, agent_token, retries=0) as client:
                while (lease := await client.claim(QUEUE, f"agent-{n}", wait=0.5)) is not None:
                    leases.append(lease.job_id)
                    await client.complete(lease.lease_id, "succeeded", exit_code=0)

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tasks:
                for n in range(10):
                    tasks.start_soon(agent, n)
        claimed = Counter(leases)
        assert [job for job, times in claimed.items() if times > 1] == [], "claimed twice"
        assert set(claimed) == set(job_ids)

        # Wake-ups: a claim waiting on B, a submit through A.
        async with (
            LaunchplaneClient(a.url, submit_token, retries=0) as submitter,
            LaunchplaneClient(b.url, agent_token, retries=0) as waiting,
        ):
            await submit_and_time_pickup(submitter, waiting)  # warm-up: connections
            latencies = []
            for _ in range(PICKUPS):
                latency, lease = await submit_and_time_pickup(submitter, waiting)
                assert lease is not None
                latencies.append(latency)
    p50 = statistics.median(latencies)
    print(
        f"\nNOTIFY pickup, submit on server A -> lease on server B, {PICKUPS} jobs: "
        f"p50 {p50 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms "
        f"(poll fallback {FALLBACK:g} s)"
    )
    assert p50 < 1.0, "NOTIFY, not the poll fallback, must wake waiting claims"
    assert max(latencies) < FALLBACK


@asynccontextmanager
async def two_servers(
    pg_url: str, tmp_path: Path, poll_interval: float
) -> AsyncIterator[tuple[EmbeddedServer, EmbeddedServer]]:
    """Two servers in this process, each with its own pool, hub and LISTEN connection."""
    async with AsyncExitStack() as stack:
        servers = []
        for name in ("a", "b"):
            settings = ServerSettings(
                data_dir=tmp_path / name, db_url=pg_url, poll_interval=poll_interval
            )
            servers.append(await stack.enter_async_context(EmbeddedServer(settings=settings)))
        a, b = servers
        await a.ensure_queue(QUEUE, {"resource": "local-process"})
        for server in servers:
            with anyio.fail_after(10):
                while server.state.store.listener is None:
                    await anyio.sleep(0.01)
                await server.state.store.listener.connected.wait()
        yield a, b


@asynccontextmanager
async def clients(
    a: EmbeddedServer, b: EmbeddedServer
) -> AsyncIterator[tuple[LaunchplaneClient, LaunchplaneClient]]:
    submit_token = await a.create_token("submitter")
    agent_token = await b.create_token("agent", [QUEUE])
    async with (
        LaunchplaneClient(a.url, submit_token, retries=0) as submitter,
        LaunchplaneClient(b.url, agent_token, retries=0) as agent,
    ):
        yield submitter, agent


async def test_a_dropped_listen_connection_is_reestablished(pg_url: str, tmp_path: Path) -> None:
    async with (
        two_servers(pg_url, tmp_path, FALLBACK) as (a, b),
        clients(a, b) as (
            submitter,
            agent,
        ),
    ):
        listener = b.state.store.listener
        assert listener is not None
        async with a.state.store.engine.connect() as conn:
            killed = await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'launchplane-listener' "
                    "AND datname = current_database()"
                )
            )
            assert len(killed.all()) == 2
        # Right away: picked up by the reconnected listener (it wakes every waiter on
        # reconnecting) or at worst by the poll fallback; never stranded.
        latency, lease = await submit_and_time_pickup(submitter, agent)
        assert lease is not None and latency < FALLBACK + 1
        with anyio.fail_after(10):
            await b.state.store.listener.connected.wait()  # type: ignore[union-attr]
        latency, lease = await submit_and_time_pickup(submitter, agent)
        assert lease is not None and latency < 1.0, "NOTIFY works again after reconnecting"


async def test_polling_picks_up_what_no_notification_announced(pg_url: str, tmp_path: Path) -> None:
    async with two_servers(pg_url, tmp_path, 0.5) as (a, b), clients(a, b) as (submitter, agent):
        job = await submitter.submit_job(QUEUE, {})
        hold = "UPDATE jobs SET not_before = now() + interval '1 hour' WHERE id = :id"
        async with a.state.store.engine.begin() as conn:
            await conn.execute(text(hold), {"id": job["id"]})
        claims: list[Lease | None] = []

        async def claim() -> None:
            claims.append(await agent.claim(QUEUE, "agent-1", wait=20))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(claim)
            await anyio.sleep(0.3)
            assert claims == []
            released = time.perf_counter()
            # A change no NOTIFY announces: only polling can notice it.
            async with a.state.store.engine.begin() as conn:
                await conn.execute(
                    text("UPDATE jobs SET not_before = NULL WHERE id = :id"), {"id": job["id"]}
                )
        assert claims[0] is not None and claims[0].job_id == job["id"]
        assert time.perf_counter() - released < 2.0


async def test_log_followers_on_another_server_poll_and_end_with_the_job(
    pg_url: str, tmp_path: Path
) -> None:
    """Log appends are not broadcast (each NOTIFY serialises commits cluster-wide):
    a follower on another server polls for lines. The job's end is broadcast."""
    poll = 2.0
    async with two_servers(pg_url, tmp_path, poll) as (a, b):
        submitter = await a.create_token("submitter")
        agent_token = await a.create_token("agent", [QUEUE])
        async with (
            LaunchplaneClient(a.url, agent_token, retries=0) as agent,
            LaunchplaneClient(a.url, submitter, retries=0) as on_a,
            LaunchplaneClient(b.url, submitter, retries=0) as on_b,
        ):
            job = await on_a.submit_job(QUEUE, {})
            lease = await agent.claim(QUEUE, "agent-1", wait=5)
            assert lease is not None
            seen = anyio.Event()
            lines: list[str] = []

            async def follow() -> None:
                async for line in on_b.follow_logs(job["id"], wait=20):
                    lines.append(line["line"])
                    seen.set()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(follow)
                await anyio.sleep(0.3)
                appended = time.perf_counter()
                await agent.append_logs(lease.lease_id, ["epoch 1"])
                with anyio.fail_after(poll + 1):
                    await seen.wait()
                arrived = time.perf_counter() - appended
                # The follower waits again now; polling alone would end it ~1.8 s later.
                await anyio.sleep(0.2)
                completed = time.perf_counter()
                await agent.complete(lease.lease_id, "succeeded", exit_code=0)
            ended = time.perf_counter() - completed
    assert lines == ["epoch 1"]
    print(f"\nfollower on server B: line after {arrived:.2f}s (polled), end after {ended:.2f}s")
    assert ended < 1.0, "the end of the job is notified, not polled"

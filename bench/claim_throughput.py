#!/usr/bin/env python3
"""Claim throughput of the queue server on SQLite and PostgreSQL; NOTIFY pickup across servers.

Claims. ``launchplane server`` runs as its own process on a fresh database.
M jobs are queued straight into that database (through the server's ``Store``,
before the clock starts: this measures claims, not submits). N claimers in
this process, each with its own HTTP client and agent token, then loop
``claim`` -> ``complete`` until every job is done. Reported per backend:
seconds, claims/s (= completed jobs/s), and the latency of a claim request
that returned a lease (p50/p95), with a check that no job was handed out twice.

Pickup (PostgreSQL). Two server processes on one database (default poll
fallback, 2 s). A claim waits on server B; a job is submitted through server
A; latency = lease received - submit sent, over 50 jobs. Far below the poll
interval means NOTIFY woke the claim.

PostgreSQL comes from ``--pg-url``, ``$LAUNCHPLANE_BENCH_DATABASE_URL``,
``$LAUNCHPLANE_TEST_DATABASE_URL`` or port 54329 (``scripts/services/postgres.sh``);
a scratch database is made there and dropped. Without it the PostgreSQL rows
say why they were skipped.

    .venv/bin/python bench/claim_throughput.py [--quick] [--jobs 600] [--agents 20] [--pg-url URL]
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _common as c
import anyio

PICKUPS = 50


async def _claims(server: c.ServerProcess, db_url: str, jobs: int, agents: int) -> dict[str, Any]:
    from launchplane.core.client import LaunchplaneClient
    from launchplane.server.store import Store

    async with LaunchplaneClient(server.url, server.admin_token) as admin:
        await admin.create_queue(c.QUEUE, c.LOCAL_QUEUE_CONFIG)
        token = (await admin.create_token("agent", [c.QUEUE]))["token"]
    store = Store(db_url)
    await store.open()
    try:
        version = (await store.get_queue(c.QUEUE)).version
        for _ in range(jobs):
            await store.submit_job(
                queue=c.QUEUE,
                queue_version=version,
                spec={},
                overrides=[],
                template_variables={},
                resolved={},
            )
    finally:
        await store.close()

    claimed: list[str] = []
    latencies: list[float] = []
    done = anyio.Event()

    async def claimer(n: int) -> None:
        async with LaunchplaneClient(server.url, token, retries=0) as client:
            while not done.is_set():
                sent = time.perf_counter()
                lease = await client.claim(c.QUEUE, f"bench-{n}", wait=0.5)
                if lease is None:
                    continue
                latencies.append(time.perf_counter() - sent)
                claimed.append(lease.job_id)
                await client.complete(lease.lease_id, "succeeded", exit_code=0)
                if len(claimed) == jobs:
                    done.set()

    watch = c.CpuWatch([server.pid]).start()
    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for n in range(agents):
            tasks.start_soon(claimer, n)
        await done.wait()
        seconds = time.perf_counter() - started
    twice = [job for job, count in Counter(claimed).items() if count > 1]
    return {
        "seconds": seconds,
        "claims_per_s": jobs / seconds,
        "claim_ms": c.summary([x * 1000 for x in latencies]),
        "claimed_twice": twice,
        "cpu": watch.stop(),
    }


async def _pickups(a: c.ServerProcess, b: c.ServerProcess) -> list[float]:
    from launchplane.core.client import LaunchplaneClient

    async with LaunchplaneClient(a.url, a.admin_token) as admin:
        await admin.create_queue(c.QUEUE, c.LOCAL_QUEUE_CONFIG)
        agent_token = (await admin.create_token("agent", [c.QUEUE]))["token"]
    async with (
        LaunchplaneClient(a.url, a.admin_token, retries=0) as submitter,
        LaunchplaneClient(b.url, agent_token, retries=0) as agent,
    ):
        latencies = []
        for index in range(PICKUPS + 1):  # the first one warms connections up
            leases: list[Any] = []
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_wait_for_lease, agent, leases)
                await anyio.sleep(0.05)  # the claim is waiting on server B
                sent = time.perf_counter()
                await submitter.submit_job(c.QUEUE, {})
            if leases[0] is None:
                raise RuntimeError("a claim waiting on server B got no job")
            if index:
                latencies.append(time.perf_counter() - sent)
    return latencies


async def _wait_for_lease(agent: Any, leases: list[Any]) -> None:
    leases.append(await agent.claim(c.QUEUE, "bench-waiting", wait=30))


def _run_claims(directory: Path, db_url: str, jobs: int, agents: int) -> dict[str, Any]:
    with c.ServerProcess(directory, db_url) as server:
        return anyio.run(_claims, server, db_url, jobs, agents)


def _run_pickups(directory: Path, db_url: str) -> list[float]:
    for name in ("a", "b"):
        (directory / name).mkdir()
    with (
        c.ServerProcess(directory / "a", db_url) as a,
        c.ServerProcess(directory / "b", db_url) as b,
    ):
        return anyio.run(_pickups, a, b)


def main() -> None:
    parser = c.arguments(__doc__.splitlines()[1])
    parser.add_argument("--jobs", type=int, help="Jobs per backend [600; --quick: 200].")
    parser.add_argument("--agents", type=int, default=20, help="Concurrent claimers [20].")
    parser.add_argument("--pg-url", help="PostgreSQL server to use (a scratch database is made).")
    args = parser.parse_args()
    jobs = args.jobs or (200 if args.quick else 600)
    report = c.Report("claim_throughput", "Claim throughput (SQLite, PostgreSQL)", args)
    rows: list[list[str]] = []

    def record(key: str, label: str, result: dict[str, Any]) -> None:
        report.details[key] = result
        note = c.foreign_note(result["cpu"])
        if result["claimed_twice"]:
            report.fail(
                f"{key}_claims_per_s", f"{label}: claims/s", "jobs/s", "a job claimed twice"
            )
            return
        report.add(f"{key}_claims_per_s", f"{label}: claims/s", result["claims_per_s"], "jobs/s")
        report.add(f"{key}_claim_p50_ms", f"{label}: claim p50", result["claim_ms"]["p50"], "ms")
        report.add(
            f"{key}_claim_p95_ms", f"{label}: claim p95", result["claim_ms"]["p95"], "ms", note=note
        )
        rows.append(
            [
                label,
                str(jobs),
                str(args.agents),
                c.fmt(result["seconds"], "s"),
                c.fmt(result["claims_per_s"]),
                c.fmt(result["claim_ms"]["p50"], "ms"),
                c.fmt(result["claim_ms"]["p95"], "ms"),
            ]
        )

    with c.workspace("claims-sqlite") as directory:
        url = f"sqlite+aiosqlite:///{directory / 'launchplane.db'}"
        record("sqlite", "SQLite", _run_claims(directory, url, jobs, args.agents))

    pg_url, why = c.postgres_url(args.pg_url)
    if pg_url is None:
        for key, label, unit in (
            ("postgresql_claims_per_s", "PostgreSQL: claims/s", "jobs/s"),
            ("notify_pickup_p50_ms", "PostgreSQL: NOTIFY pickup p50", "ms"),
        ):
            report.skip(key, label, unit, why)
    else:
        try:
            with c.scratch_database(pg_url) as db_url, c.workspace("claims-pg") as directory:
                record(
                    "postgresql", "PostgreSQL", _run_claims(directory, db_url, jobs, args.agents)
                )
            with c.scratch_database(pg_url) as db_url, c.workspace("pickup-pg") as directory:
                pickups = [x * 1000 for x in _run_pickups(directory, db_url)]
            report.details["notify_pickup_ms"] = c.summary(pickups)
            note = "submit on server A -> lease on server B; poll fallback 2 s"
            report.add(
                "notify_pickup_p50_ms",
                "PostgreSQL: NOTIFY pickup p50",
                statistics.median(pickups),
                "ms",
                note=note,
            )
            report.add("notify_pickup_max_ms", "PostgreSQL: NOTIFY pickup max", max(pickups), "ms")
        except Exception as exc:
            reason = " ".join(str(exc).split())[:300]
            report.fail("notify_pickup_p50_ms", "PostgreSQL: NOTIFY pickup p50", "ms", reason)

    print()
    c.print_table(
        ("backend", "jobs", "agents", "seconds", "claims/s", "claim p50", "claim p95"), rows
    )
    report.finish()


if __name__ == "__main__":
    main()

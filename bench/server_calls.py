#!/usr/bin/env python3
"""Server CPU per API call: where the queue server's time per job goes.

A ``launchplane server`` process (SQLite by default, ``--db URL`` for another
database) is driven through the public async client, one call at a time:
a submitter token for submit/get_job/health, an agent token for the lease
calls an agent makes (claim with ``wait=0``, event, logs, heartbeat,
complete). For each kind of call, N calls are made in a row and the
server's ``utime + stime`` (/proc) is read before and after: CPU milliseconds
per call, and the client-observed wall time per call.

A job through an agent costs the server one submit, one claim, one event per
stage the agent reports (``resolving``, ``building``, ``running``), at least
one log batch and one complete, plus its share of heartbeats; the "per job"
line adds those up, and ``1000 / per job`` is the most jobs per second one
server process (one event loop, one core) can dispatch.

    .venv/bin/python bench/server_calls.py [--quick] [--calls 200] [--db URL]
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import _common as c
import anyio

EVENTS_PER_JOB = 3  # resolving, building, running (the agent's pipeline reports each stage)


async def _measure(server: c.ServerProcess, n: int) -> dict[str, dict[str, float]]:
    from launchplane.core.client import LaunchplaneClient

    token = await c.setup_queue(server)
    job = {"name": "calls", "command": ["true"]}
    results: dict[str, dict[str, float]] = {}
    async with (
        LaunchplaneClient(server.url, server.admin_token) as submitter,
        LaunchplaneClient(server.url, token) as agent,
    ):
        await agent.register_agent("bench-calls", queues=[c.QUEUE])

        async def phase(name: str, call: Callable[[int], Awaitable[Any]]) -> list[Any]:
            await anyio.sleep(0.2)
            cpu = c.cpu_seconds(server.pid)
            start = time.perf_counter()
            out = [await call(index) for index in range(n)]
            wall = time.perf_counter() - start
            await anyio.sleep(0.2)  # let the server finish what the last answer left behind
            results[name] = {
                "cpu_ms": (c.cpu_seconds(server.pid) - cpu) * 1000 / n,
                "wall_ms": wall * 1000 / n,
            }
            return out

        await phase("health", lambda i: submitter.health())
        jobs = await phase("submit", lambda i: submitter.submit_job(c.QUEUE, job))
        leases = await phase("claim", lambda i: agent.claim(c.QUEUE, "bench-calls", wait=0))
        if any(lease is None for lease in leases):
            raise RuntimeError("a claim came back empty")
        await phase("event", lambda i: agent.post_event(leases[i].lease_id, "resolving"))
        await phase(
            "logs",
            # Numbered like the agent's batches (a retried batch is stored once).
            lambda i: agent.append_logs(leases[i].lease_id, ["a line"], leases[i].log_count + 1),
        )
        await phase("heartbeat", lambda i: agent.heartbeat("bench-calls", [leases[i].lease_id]))
        await phase(
            "complete",
            lambda i: agent.complete(
                leases[i].lease_id, "succeeded", exit_code=0, record={"bench": True}
            ),
        )
        await phase("get_job", lambda i: submitter.get_job(jobs[i]["id"]))
    return results


def main() -> None:
    parser = c.arguments(__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, help="Calls of each kind [120; --quick: 60].")
    parser.add_argument(
        "--db",
        default="sqlite",
        help="sqlite (a temp file), postgresql (a scratch database on the server that "
        "dispatch_latency.py would use), or a PostgreSQL URL (a scratch database is made on it)",
    )
    args = parser.parse_args()
    n = args.calls or (60 if args.quick else 120)
    report = c.Report("server_calls", "Server CPU per API call", args)
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(c.workspace("calls"))
        try:
            db_url = c.database_option(stack, args.db)
            if db_url is not None:
                report.details["database"] = db_url.split("@")[-1]
            with c.ServerProcess(directory, db_url) as server:
                results = anyio.run(_measure, server, n)
        except Exception as exc:
            report.fail("per_job_cpu_ms", "Server CPU per job (sum of its calls)", "ms", str(exc))
            report.finish()
            return
    report.details["calls"] = results
    report.details["calls_per_kind"] = n
    for name, figures in results.items():
        report.add(
            f"{name}_cpu_ms",
            f"server CPU per {name} call",
            figures["cpu_ms"],
            "ms",
            note=f"wall {figures['wall_ms']:.1f} ms per call (client side)",
        )
    per_job = (
        results["submit"]["cpu_ms"]
        + results["claim"]["cpu_ms"]
        + EVENTS_PER_JOB * results["event"]["cpu_ms"]
        + results["logs"]["cpu_ms"]
        + results["complete"]["cpu_ms"]
    )
    report.add(
        "per_job_cpu_ms",
        "Server CPU per job (submit+claim+3 events+logs+complete)",
        per_job,
        "ms",
        note="heartbeats not included",
    )
    report.add(
        "server_bound_jobs_per_s",
        "Server-bound ceiling (one core)",
        1000 / per_job,
        "jobs/s",
        note="1000 / CPU per job",
    )
    report.finish()


if __name__ == "__main__":
    main()

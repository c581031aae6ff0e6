#!/usr/bin/env python3
"""Footprint: memory and CPU of an idle agent and an idle server, read from /proc.

Set-up: ``launchplane server`` (SQLite) and one ``launch-agent`` serving one
local-process queue, as separate processes. The agent first runs a few jobs
(so whatever a job makes it import is loaded: the steady state, not a
just-started process), then both sit idle: the agent in its claim long-poll
(one request per 30 s) with its idle heartbeat (every 20 s).

* RSS: ``VmRSS`` of ``/proc/<pid>/status`` after 30 s idle; PSS (shared pages
  split between the processes that map them) from ``smaps_rollup``.
* CPU: ``utime + stime`` of ``/proc/<pid>/stat`` over a 60 s idle window
  (clock ticks of 10 ms), cross-checked with the sum of the threads'
  ``schedstat`` (nanoseconds). ``--quick`` uses a 6 s RSS delay and a 12 s
  window and scales CPU to a minute (and says so).

    .venv/bin/python bench/footprint.py [--quick]
"""

from __future__ import annotations

import time
from typing import Any

import _common as c
import anyio

TARGETS = {"agent_rss": 60.0, "agent_cpu": 0.1, "server_rss": 100.0}
WARMUP_JOBS = 5


def sample(pid: int) -> dict[str, Any]:
    return {
        "rss_kib": c.rss_kib(pid),
        "pss_kib": c.pss_kib(pid),
        "cpu_s": c.cpu_seconds(pid),
        "cpu_ns": c.cpu_ns_threads(pid),
        "threads": c.thread_count(pid),
    }


async def _measure(
    server: c.ServerProcess,
    agent: c.AgentProcess,
    job: dict[str, Any],
    rss_at: float,
    window: float,
) -> dict[str, Any]:
    from launchplane.core.client import LaunchplaneClient

    pids = {"agent": agent.pid, "server": server.pid}
    async with LaunchplaneClient(server.url, server.admin_token) as client:
        await c.wait_registered(client, agent)
        fresh = {k: sample(p) for k, p in pids.items()}
        for _ in range(WARMUP_JOBS):
            submitted = await client.submit_job(c.QUEUE, job)
            final = await client.wait_for_job(submitted["id"], poll=1)
            if final["state"] != "succeeded":
                raise RuntimeError(f"warm-up job {final['id']} ended {final['state']}")
    # Idle from here: this process closes its connection and only reads /proc.
    await anyio.sleep(1.0)
    start = time.monotonic()
    watch = c.CpuWatch(list(pids.values())).start()
    before = {k: sample(p) for k, p in pids.items()}
    await anyio.sleep(rss_at - (time.monotonic() - start))
    at_rss = {k: sample(p) for k, p in pids.items()}
    await anyio.sleep(window - (time.monotonic() - start))
    after = {k: sample(p) for k, p in pids.items()}
    elapsed = time.monotonic() - start
    out: dict[str, Any] = {
        "window_seconds": elapsed,
        "rss_after_seconds": rss_at,
        "load": watch.stop(),
    }
    for name in pids:
        cpu = after[name]["cpu_s"] - before[name]["cpu_s"]
        ns = after[name]["cpu_ns"] - before[name]["cpu_ns"]
        out[name] = {
            "fresh_rss_mib": fresh[name]["rss_kib"] / 1024,
            "rss_mib": at_rss[name]["rss_kib"] / 1024,
            "pss_mib": (at_rss[name]["pss_kib"] or 0) / 1024 or None,
            "threads": at_rss[name]["threads"],
            "cpu_seconds": cpu,
            "cpu_seconds_per_minute": cpu * 60 / elapsed,
            "schedstat_cpu_seconds_per_minute": ns / 1e9 * 60 / elapsed,
        }
    return out


def main() -> None:
    parser = c.arguments(__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, help="Idle CPU window, seconds [60; --quick: 12].")
    parser.add_argument("--rss-after", type=float, help="Idle seconds before RSS [30; --quick: 6].")
    args = parser.parse_args()
    window = args.window or (12.0 if args.quick else 60.0)
    rss_at = args.rss_after or (6.0 if args.quick else 30.0)
    report = c.Report("footprint", "Footprint: idle agent and idle server (/proc)", args)
    with c.workspace("footprint") as directory:
        job = c.write_first_line_job(directory)
        try:
            with c.ServerProcess(directory) as server:
                token = anyio.run(c.setup_queue, server)
                with c.AgentProcess(directory, server.url, token, max_jobs=4) as agent:
                    result = anyio.run(_measure, server, agent, job, rss_at, window)
        except Exception as exc:
            report.fail("agent_rss_mib", "Idle agent RSS", "MiB", str(exc), ("<=", 60.0))
            report.finish()
            return
    report.details.update(result)
    scaled = "" if window >= 60 else f"; {window:.0f}s window scaled to a minute"
    a, s = result["agent"], result["server"]
    report.add(
        "agent_rss_mib",
        f"Idle agent RSS (after {rss_at:.0f}s idle)",
        a["rss_mib"],
        "MiB",
        ("<=", TARGETS["agent_rss"]),
        f"PSS {c.fmt(a['pss_mib'], 'MiB')}; fresh {c.fmt(a['fresh_rss_mib'], 'MiB')}",
    )
    report.add(
        "agent_cpu_s_per_min",
        "Idle agent CPU per minute",
        a["cpu_seconds_per_minute"],
        "s",
        ("<=", TARGETS["agent_cpu"]),
        f"schedstat {a['schedstat_cpu_seconds_per_minute']:.4f} s{scaled}",
    )
    report.add(
        "server_rss_mib",
        f"Idle server RSS (after {rss_at:.0f}s idle)",
        s["rss_mib"],
        "MiB",
        ("<=", TARGETS["server_rss"]),
        f"PSS {c.fmt(s['pss_mib'], 'MiB')}; fresh {c.fmt(s['fresh_rss_mib'], 'MiB')}",
    )
    report.add(
        "server_cpu_s_per_min",
        "Idle server CPU per minute",
        s["cpu_seconds_per_minute"],
        "s",
        None,
        f"schedstat {s['schedstat_cpu_seconds_per_minute']:.4f} s{scaled}",
    )
    report.note(
        f"the agent ran {WARMUP_JOBS} jobs before the idle window (steady state); "
        + c.foreign_note(result["load"])
    )
    report.finish()


if __name__ == "__main__":
    main()

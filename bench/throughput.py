#!/usr/bin/env python3
"""Throughput: N trivial jobs submitted at once, one agent with --max-jobs 8.

Set-up: ``launchplane server`` (SQLite) and one ``launch-agent --max-jobs 8``
as separate processes, a local-process queue, the ``first_line.py`` job of the
latency benchmark. The agent is started and registered first; then all N jobs
are submitted at once through the public async client (32 submits in flight)
and the clock runs from just before the first submit until the last job has
*succeeded*. The end is the server's own timestamp of the last completion
(``updated_at`` of the final job state), so the benchmark's polling at the tail
does not add to the figure.

    jobs/s = N / (last completion - start of the first submit)

Also reported: how fast the server accepted the submits, and the CPU that the
agent, the job processes and the server each spent per job (utime+stime from
/proc), which is what bounds the figure on a small machine.

    .venv/bin/python bench/throughput.py [--quick] [--jobs 300] [--max-jobs 8] [--repeat 2]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import _common as c
import anyio

TARGET = 25.0
SUBMITTERS = 32


async def _measure(
    server: c.ServerProcess, agent: c.AgentProcess, job: dict[str, Any], n: int
) -> dict[str, Any]:
    from launchplane.core.client import FINAL_STATES, LaunchplaneClient

    async with LaunchplaneClient(server.url, server.admin_token, timeout=120) as client:
        await c.wait_registered(client, agent)
        await anyio.sleep(0.5)
        pids = {"agent": agent.pid, "server": server.pid}
        cpu0 = {k: c.cpu_seconds(p) for k, p in pids.items()}
        children0 = c.cpu_seconds(agent.pid, children=True) - cpu0["agent"]
        ids: list[str] = [""] * n
        limiter = anyio.Semaphore(SUBMITTERS)

        async def submit(index: int) -> None:
            async with limiter:
                ids[index] = (await client.submit_job(c.QUEUE, job))["id"]

        watch = c.CpuWatch([agent.pid, server.pid]).start()
        start = time.time()
        async with anyio.create_task_group() as tg:
            for index in range(n):
                tg.start_soon(submit, index)
        submitted = time.time()
        # Claims are FIFO: the last job submitted is about the last to end. Wait on it
        # (a long-poll, no busy polling), then until every job is final.
        await client.wait_for_job(ids[-1], poll=5)
        while True:
            jobs = await client.list_jobs(queue=c.QUEUE, limit=1000)
            if all(j["state"] in FINAL_STATES for j in jobs) and len(jobs) >= n:
                break
            await anyio.sleep(0.2)
        load = watch.stop()
        cpu1 = {k: c.cpu_seconds(p) for k, p in pids.items()}
        children1 = c.cpu_seconds(agent.pid, children=True) - cpu1["agent"]
        rss = {k: c.rss_kib(p) for k, p in pids.items()}
    mine = [j for j in jobs if j["id"] in set(ids)]
    states: dict[str, int] = {}
    for j in mine:
        states[j["state"]] = states.get(j["state"], 0) + 1
    end = max(c.parse_time(j["updated_at"]) for j in mine)
    return {
        "jobs": n,
        "states": states,
        "seconds": end - start,
        "jobs_per_second": n / (end - start) if states.get("succeeded") == n else None,
        "submit_seconds": submitted - start,
        "submits_per_second": n / (submitted - start),
        "cpu_ms_per_job": {
            "agent": (cpu1["agent"] - cpu0["agent"]) * 1000 / n,
            "job_processes": (children1 - children0) * 1000 / n,
            "server": (cpu1["server"] - cpu0["server"]) * 1000 / n,
        },
        "rss_mib_after": {k: (v or 0) / 1024 for k, v in rss.items()},
        "load": load,
    }


def run_once(directory: Path, n: int, max_jobs: int) -> dict[str, Any]:
    job = c.write_first_line_job(directory)
    with c.ServerProcess(directory) as server:
        token = anyio.run(c.setup_queue, server)
        with c.AgentProcess(directory, server.url, token, max_jobs=max_jobs) as agent:
            return anyio.run(_measure, server, agent, job, n)


def main() -> None:
    parser = c.arguments(__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, help="Jobs per run [300; --quick: 100].")
    parser.add_argument("--max-jobs", type=int, default=8)
    parser.add_argument("--repeat", type=int, help="Runs, each on a fresh server [2; --quick: 1].")
    args = parser.parse_args()
    n = args.jobs or (100 if args.quick else 300)
    repeat = args.repeat or (1 if args.quick else 2)
    title = f"Throughput: {n} jobs at once, --max-jobs {args.max_jobs}"
    report = c.Report("throughput", title, args)
    runs = []
    for index in range(repeat):
        with c.workspace("throughput") as directory:
            try:
                run = run_once(directory, n, args.max_jobs)
            except Exception as exc:
                report.fail("jobs_per_second", "Throughput", "jobs/s", str(exc), (">=", TARGET))
                report.finish()
                return
        runs.append(run)
        cpu = run["cpu_ms_per_job"]
        print(
            f"   run {index + 1}: {run['jobs_per_second'] or 0:.1f} jobs/s "
            f"({n} in {run['seconds']:.2f}s; states {run['states']}); "
            f"CPU/job agent {cpu['agent']:.1f} ms, jobs {cpu['job_processes']:.1f} ms, "
            f"server {cpu['server']:.1f} ms; {c.foreign_note(run['load'])}",
            flush=True,
        )
    report.details["runs"] = runs
    rates = [r["jobs_per_second"] for r in runs]
    if any(r is None for r in rates):
        report.fail(
            "jobs_per_second",
            "Throughput",
            "jobs/s",
            f"not every job succeeded: {[r['states'] for r in runs]}",
            (">=", TARGET),
        )
        report.finish()
        return
    spread = c.spread(rates) if len(rates) > 1 else None
    report.add(
        "jobs_per_second",
        f"Throughput ({n} jobs, --max-jobs {args.max_jobs})",
        c.percentile(rates, 50),
        "jobs/s",
        (">=", TARGET),
        f"median of {len(rates)}; others used up to "
        f"{max(r['load']['foreign_fraction'] for r in runs) * 100:.0f}% of the CPUs",
        spread=spread,
    )
    report.add(
        "submits_per_second",
        "Submits accepted (32 in flight)",
        c.percentile([r["submits_per_second"] for r in runs], 50),
        "jobs/s",
    )
    for part in ("agent", "server", "job_processes"):
        report.add(
            f"cpu_ms_per_job_{part}",
            f"CPU per job: {part.replace('_', ' ')}",
            c.percentile([r["cpu_ms_per_job"][part] for r in runs], 50),
            "ms",
        )
    report.add(
        "server_rss_after_mib",
        f"Server RSS after {n} jobs",
        c.percentile([r["rss_mib_after"]["server"] for r in runs], 50),
        "MiB",
    )
    report.add(
        "agent_rss_after_mib",
        f"Agent RSS after {n} jobs",
        c.percentile([r["rss_mib_after"]["agent"] for r in runs], 50),
        "MiB",
    )
    total = sum(
        c.percentile([r["cpu_ms_per_job"][p] for r in runs], 50)
        for p in ("agent", "server", "job_processes")
    )
    cores = c.machine()["cpus_usable"]
    report.note(
        f"CPU bound: {total:.0f} ms of CPU per job on {cores} cores caps this at about "
        f"{cores * 1000 / total:.0f} jobs/s"
    )
    report.finish()


if __name__ == "__main__":
    main()

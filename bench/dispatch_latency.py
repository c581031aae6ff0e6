#!/usr/bin/env python3
"""Dispatch latency: from just before the submit call to the first line of user code.

Set-up (the real deployment shape, on loopback): ``launchplane server`` (SQLite,
then PostgreSQL when one is reachable) and one ``launch-agent`` as separate
processes; a queue with the local-process runner and the noop builder. The job
is ``first_line.py``, whose first line is ``FIRST_LINE = time.time()``; it
prints that value and the benchmark reads it back through the API (the job's
log). Jobs are submitted one at a time through the public async client
(``LaunchplaneClient.submit_job``, one kept-alive connection), with a random
0-2 s gap before each (seeded).

    latency = FIRST_LINE - time.time() taken just before submit_job()

Both timestamps come from the same host clock. The first job after the agent
started is reported apart ("cold"): it pays one-off imports in the agent.
Each job's latency is split with the server's ``claimed`` event and the run
record's ``running`` timestamp (agent side, when the process was spawned):
submit -> claimed (server: submit, resolve, wake the long-poll, claim),
claimed -> spawned (agent: resolve, prepare, noop build, spawn),
spawned -> first line (the job's Python interpreter starting). The last part
is compared with the same script spawned directly (``interpreter floor``).

    .venv/bin/python bench/dispatch_latency.py [--quick] [--jobs 50] [--db sqlite|postgresql|both]
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as c
import anyio

TARGETS = {"sqlite": {"p50": 60.0, "p95": 150.0}, "postgresql": {"p50": 100.0}}


async def _measure(
    server: c.ServerProcess, agent: c.AgentProcess, job: dict[str, Any], n: int, seed: int
) -> dict[str, Any]:
    from launchplane.core.client import LaunchplaneClient

    async with LaunchplaneClient(server.url, server.admin_token) as client:
        await c.wait_registered(client, agent)
        await anyio.sleep(0.5)  # the agent's first claim long-poll is open

        async def submit() -> tuple[str, float, float]:
            before = time.time()
            submitted = await client.submit_job(c.QUEUE, job)
            return submitted["id"], before, time.time()

        cold = await submit()
        await client.wait_for_job(cold[0], poll=1)
        cpu0 = (
            c.cpu_seconds(agent.pid),
            c.cpu_seconds(agent.pid, children=True),
            c.cpu_seconds(server.pid),
        )
        rng = random.Random(seed)
        watch = c.CpuWatch([agent.pid, server.pid]).start()
        sent: list[tuple[str, float, float]] = []
        for _ in range(n):
            await anyio.sleep(rng.uniform(0, 2))
            sent.append(await submit())
        samples = []
        # Settle: the last job ends and its calls reach the server before the CPU is read.
        await client.wait_for_job(sent[-1][0], poll=1)
        await anyio.sleep(0.3)
        load = watch.stop()
        cpu1 = (
            c.cpu_seconds(agent.pid),
            c.cpu_seconds(agent.pid, children=True),
            c.cpu_seconds(server.pid),
        )
        per_job = [(b - a) * 1000 / n for a, b in zip(cpu0, cpu1, strict=True)]
        cpu = {
            "agent_ms_per_job": per_job[0],
            "job_process_ms_per_job": per_job[1] - per_job[0],
            "server_ms_per_job": per_job[2],
        }
        for job_id, before, after in [cold, *sent]:
            final = await client.wait_for_job(job_id, poll=2)
            first = await c.first_line_time(client, job_id)
            if final["state"] != "succeeded" or first is None:
                raise RuntimeError(
                    f"job {job_id} ended {final['state']} ({final.get('reason')}); "
                    f"agent log: {c.tail(agent.log_path, 5)}"
                )
            claimed = next(
                (c.parse_time(e["at"]) for e in final["events"] if e["state"] == "claimed"), None
            )
            record = await client.get_record(job_id)
            running = record.get("timestamps", {}).get("running")
            samples.append(
                {
                    "job_id": job_id,
                    "latency_ms": (first - before) * 1000,
                    "submit_call_ms": (after - before) * 1000,
                    "to_claimed_ms": (claimed - before) * 1000 if claimed else None,
                    "claimed_to_spawned_ms": (c.parse_time(running) - claimed) * 1000
                    if running and claimed
                    else None,
                    "spawned_to_first_line_ms": (first - c.parse_time(running)) * 1000
                    if running
                    else None,
                }
            )
    return {"cold": samples[0], "samples": samples[1:], "cpu": cpu, "load": load}


def interpreter_floor(code_dir: Path, runs: int) -> dict[str, float]:
    """first_line.py spawned directly with the same Python: the part no launcher can remove."""
    values = []
    for _ in range(runs):
        before = time.time()
        out = subprocess.run(
            [sys.executable, "first_line.py"],
            cwd=code_dir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        values.append((float(out.split()[1]) - before) * 1000)
    return c.summary(values)


def run_backend(directory: Path, db_url: str | None, n: int, seed: int) -> dict[str, Any]:
    job = c.write_first_line_job(directory)
    with c.ServerProcess(directory, db_url) as server:
        token = anyio.run(c.setup_queue, server)
        with c.AgentProcess(directory, server.url, token, max_jobs=4) as agent:
            return anyio.run(_measure, server, agent, job, n, seed)


def _part(samples: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in samples if s[key] is not None]
    return c.percentile(values, 50) if values else None


def report_backend(report: c.Report, name: str, label: str, result: dict[str, Any]) -> None:
    samples = result["samples"]
    latencies = [s["latency_ms"] for s in samples]
    stats = c.summary(latencies)
    targets = TARGETS[name]
    report.add(
        f"{name}_p50_ms",
        f"Dispatch latency p50 ({label})",
        stats["p50"],
        "ms",
        ("<=", targets["p50"]) if "p50" in targets else None,
        f"n={stats['n']}; {c.foreign_note(result['load'])}",
    )
    report.add(
        f"{name}_p95_ms",
        f"Dispatch latency p95 ({label})",
        stats["p95"],
        "ms",
        ("<=", targets["p95"]) if "p95" in targets else None,
    )
    report.add(f"{name}_max_ms", f"Dispatch latency max ({label})", stats["max"], "ms")
    report.add(
        f"{name}_cold_ms",
        f"First job after agent start ({label})",
        result["cold"]["latency_ms"],
        "ms",
        note="one-off imports in the agent",
    )
    parts = {
        key: _part(samples, key)
        for key in (
            "submit_call_ms",
            "to_claimed_ms",
            "claimed_to_spawned_ms",
            "spawned_to_first_line_ms",
        )
    }
    report.details[name] = {"latency_ms": stats, "median_parts_ms": parts, **result}
    report.note(
        f"{label} median split: submit call {c.fmt(parts['submit_call_ms'], 'ms')}; "
        f"submit->claimed {c.fmt(parts['to_claimed_ms'], 'ms')}; "
        f"claimed->spawned {c.fmt(parts['claimed_to_spawned_ms'], 'ms')} (agent); "
        f"spawned->first line {c.fmt(parts['spawned_to_first_line_ms'], 'ms')} (interpreter)"
    )
    cpu = result["cpu"]
    report.note(
        f"{label} CPU per job: agent {c.fmt(cpu['agent_ms_per_job'], 'ms')}, "
        f"server {c.fmt(cpu['server_ms_per_job'], 'ms')}, "
        f"job process {c.fmt(cpu['job_process_ms_per_job'], 'ms')} (utime+stime, /proc)"
    )


def main() -> None:
    parser = c.arguments(__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, help="Jobs per backend [50; --quick: 12].")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", help="PostgreSQL server (a scratch database is made on it).")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    n = args.jobs or (12 if args.quick else 50)
    title = "Dispatch latency: submit -> first line of user code"
    report = c.Report("dispatch_latency", title, args)
    report.details["jobs_per_backend"] = n
    report.details["gap_seconds"] = f"uniform(0, 2), seed {args.seed}"

    with c.workspace("floor") as directory:
        c.write_first_line_job(directory)
        floor = interpreter_floor(directory / "code", 5 if args.quick else 15)
    report.details["interpreter_floor_ms"] = floor
    report.add(
        "interpreter_floor_ms",
        "Interpreter floor (spawn -> first line, no launcher)",
        floor["p50"],
        "ms",
        note="same script, subprocess.run",
    )

    if args.db in ("sqlite", "both"):
        try:
            with c.workspace("latency-sqlite") as directory:
                result = run_backend(directory, None, n, args.seed)
            report_backend(report, "sqlite", "SQLite", result)
        except Exception as exc:
            report.fail(
                "sqlite_p50_ms", "Dispatch latency p50 (SQLite)", "ms", str(exc), ("<=", 60.0)
            )
    if args.db in ("postgresql", "both"):
        url, why = c.postgres_url(args.pg_url)
        label = "Dispatch latency p50 (PostgreSQL)"
        if url is None:
            report.skip("postgresql_p50_ms", label, "ms", why, ("<=", 100.0))
            print(f"PostgreSQL: skipped: {why}", flush=True)
        else:
            report.details["postgresql_server"] = url.split("@")[-1]
            try:
                with c.scratch_database(url) as db_url, c.workspace("latency-pg") as directory:
                    result = run_backend(directory, db_url, n, args.seed)
                report_backend(report, "postgresql", "PostgreSQL", result)
            except Exception as exc:
                reason = " ".join(str(exc).split())[:300]
                status = "skipped" if "not installed" in reason else "failed"
                print(f"PostgreSQL: {status}: {reason}", flush=True)
                (report.skip if status == "skipped" else report.fail)(
                    "postgresql_p50_ms", label, "ms", f"{status}: {reason}", ("<=", 100.0)
                )
    report.finish()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Soak: N agents run M jobs while agents and the server are killed (SIGKILL) at random.

Set-up: ``launchplane server`` (SQLite; ``--db postgres``: a scratch database
next to ``$LAUNCHPLANE_TEST_DATABASE_URL``) on a fixed loopback port and N
``launch-agent`` processes (``--max-jobs``, one work directory each), all
separate processes, a local-process queue (lease TTL ``--lease-ttl``, up to
``--max-attempts`` attempts). M jobs are submitted at once, each an
idempotent submit retried with its own key while the server is down. Each job
(``soak_job.py``) prints ``--lines`` numbered lines over a random 0.2-2 s
(``--silent-share`` of them print only their first and last line, as a job
that computes quietly would; ``--long-share`` of them are silent and last 2-3
lease TTLs, long enough for an orphan to outlive its lease) and keeps a
marker file (``*.soakmark``) in its run directory's ``output/``, the one
place a sandboxed job may write: its start time, then after every printed
line the time and the lines printed so far, then its end.

Meanwhile a chaos task kills a random victim every ``--kill-every`` seconds on
average (exponential gaps; seeded): the server with probability
``--server-share``, else an agent. The victim is restarted after 0.2-2 s: the
server on the same data directory and port, an agent with the same agent id
and work directory; ``--down-share`` of the agents killed stay down 1.5-2.5
lease TTLs instead, so their leases expire and their jobs run again on other
agents (the output of the killed attempts comes back as late lines when the
agent does). Kills stop once every job has ended (or at ``--timeout``), and the
figures are read once no agent's work directory holds output it has not
shipped (``output.log``), or after ``--settle`` seconds.
A prober times ``GET /health`` every 100 ms throughout.

Figures, read back through the API and the marker files once the run is over:

* **jobs lost**: submitted (acknowledged) jobs that did not end ``succeeded``
  (target 0; the states are listed);
* **lines lost**: lines of a job's last attempt that it printed and the server
  does not hold (target 0); lines an *interrupted* attempt printed that are not
  stored are reported apart (a line in the pipe to an agent that was killed);
* **duplicated lines**: a line of one attempt stored more than once;
* **unshipped outputs**: run directories still holding an ``output.log`` when the
  figures are read (output an agent has not shipped yet, or never will);
* **overlapping attempts**: jobs two of whose attempts were alive at once on
  this host (the marker files' time spans intersect; target 0);
* **5xx**: answers >= 500 to the benchmark's own calls (submits, polls, the
  prober) plus tracebacks in the server's log (target 0);
* **/health** p50 / p99 / max of the probes answered, and how many got no
  answer (the server was down: expected during its kills).

    .venv/bin/python bench/soak.py [--quick] [--agents 20] [--jobs 2000] [--db sqlite|postgres]
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as c
import anyio
import httpx

MARK = ".soakmark"
JOB = """\
import os, sys, time
key, lines, seconds, silent = sys.argv[1:5]
markers = os.environ["LAUNCHPLANE_OUTPUT_DIR"]  # the one place a sandboxed job may write
lines, seconds, silent = int(lines), float(seconds), silent == "1"
attempt = os.environ["LAUNCHPLANE_ATTEMPT"]
name = f"{key}.{attempt}.{os.getpid()}.soakmark"  # MARK
with open(os.path.join(markers, name), "a", buffering=1) as m:
    m.write(f"start {time.time()!r}\\n")
    for i in range(lines):
        if not silent or i in (0, lines - 1):
            print(f"soak {key} {attempt} {i}", flush=True)
        m.write(f"alive {time.time()!r} {i + 1}\\n")
        time.sleep(seconds / lines)
    m.write(f"end {time.time()!r}\\n")
"""
"""The job: numbered lines, and a marker file of its life (start, each line, end)."""

LINE = re.compile(r"soak (\S+) (\d+) (\d+)$")
PROBE_SECONDS = 0.1
SUBMITTERS = 16


class Counting(httpx.AsyncBaseTransport):
    """Counts the answers >= 500 the benchmark's own calls get."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.errors: Counter[int] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if response.status_code >= 500:
            self.errors[response.status_code] += 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Attempt:
    """One attempt's life, from its marker file."""

    start: float
    last: float
    printed: int = 0
    ended: bool = False


@dataclass
class Soak:
    """The processes of one run and what the chaos task did to them."""

    args: Any
    root: Path
    server: c.ServerProcess
    token: str = ""
    agents: list[c.AgentProcess] = field(default_factory=list)
    restarts: Counter[str] = field(default_factory=Counter)
    server_tracebacks: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    long_downs: int = 0
    """Agent kills after which the agent stayed down past its leases (``--down-share``)."""
    done: anyio.Event = field(default_factory=anyio.Event)

    def agent(self, index: int) -> c.AgentProcess:
        name = f"agent-{index}"
        directory = self.root / name
        directory.mkdir(exist_ok=True)
        return c.AgentProcess(
            directory,
            self.server.url,
            self.token,
            max_jobs=self.args.max_jobs,
            agent_id=f"soak-{name}",
            log_name=f"agent-{self.restarts[name]}.log",
        ).start()

    def count_server_tracebacks(self) -> None:
        """Tracebacks in the server's log so far (read before a restart truncates it)."""
        with contextlib.suppress(OSError):
            self.server_tracebacks += self.server.log_path.read_text(errors="replace").count(
                "Traceback (most recent call last)"
            )

    async def chaos(self, rng: random.Random) -> None:
        """Kill a random victim, restart it a moment later; until every job has ended."""
        while not self.done.is_set():
            with anyio.move_on_after(rng.expovariate(1 / self.args.kill_every)):
                await self.done.wait()
            if self.done.is_set():
                return
            down = rng.uniform(0.2, 2.0)
            if self.args.down_share and rng.random() < self.args.down_share:
                long_down = rng.uniform(1.5, 2.5) * self.args.lease_ttl
            else:
                long_down = None
            if rng.random() < self.args.server_share:
                self.kills["server"] += 1
                os.kill(self.server.pid, signal.SIGKILL)
                self.server.proc.wait()  # type: ignore[union-attr]
                self.count_server_tracebacks()
                await anyio.sleep(down)
                await anyio.to_thread.run_sync(self.server.start)
            else:
                index = rng.randrange(len(self.agents))
                self.kills["agent"] += 1
                # The agent only (it leads its own session): its jobs live on as orphans.
                os.kill(self.agents[index].pid, signal.SIGKILL)
                self.agents[index].proc.wait()  # type: ignore[union-attr]
                if long_down is not None:
                    self.long_downs += 1
                await anyio.sleep(down if long_down is None else long_down)
                self.restarts[f"agent-{index}"] += 1
                self.agents[index] = self.agent(index)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def probe_health(url: str, soak: Soak, latencies: list[float], missed: list[int]) -> None:
    """``GET /health`` every ``PROBE_SECONDS`` (a fresh request each; 5 s timeout)."""
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
        while not soak.done.is_set():
            started = time.perf_counter()
            try:
                response = await http.get("/api/v1/health")
                if response.status_code >= 500:
                    missed[1] += 1
                else:
                    latencies.append((time.perf_counter() - started) * 1000)
            except httpx.HTTPError:
                missed[0] += 1
            await anyio.sleep(PROBE_SECONDS)


async def patient(call: Any, *args: Any, timeout: float, **kwargs: Any) -> Any:
    """``call`` retried while the server is down or restarting (it is killed on purpose)."""
    from launchplane.core.client import ApiError, ConnectionLost, ServerUnreachable

    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call(*args, **kwargs)
        except (ServerUnreachable, ConnectionLost, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.status < 500:
                raise
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(0.2)


def read_markers(root: Path) -> dict[str, dict[int, list[Attempt]]]:
    """Per job key, per attempt, the lives its marker files tell (one per process).

    Each attempt writes its marker into its own run directory's ``output/``
    (the sandbox lets a job write nowhere else), so they are found below ``root``.
    """
    lives: dict[str, dict[int, list[Attempt]]] = {}
    for path in root.rglob(f"*{MARK}"):
        key, attempt, _pid = path.name.removesuffix(MARK).split(".")
        life: Attempt | None = None
        for row in path.read_text().splitlines():
            parts = row.split()
            if len(parts) < 2:
                continue  # a line cut short by a kill
            when = float(parts[1])
            if parts[0] == "start":
                life = Attempt(when, when)
            elif life is not None:
                life.last = when
                if parts[0] == "alive" and len(parts) == 3:
                    life.printed = int(parts[2])
                elif parts[0] == "end":
                    life.ended = True
        if life is not None:
            lives.setdefault(key, {}).setdefault(int(attempt), []).append(life)
    return lives


def overlaps(attempts: dict[int, list[Attempt]]) -> float:
    """The longest time two lives of one job were alive at once (0: never)."""
    spans = [life for lives in attempts.values() for life in lives]
    worst = 0.0
    for i, a in enumerate(spans):
        for b in spans[i + 1 :]:
            worst = max(worst, min(a.last, b.last) - max(a.start, b.start))
    return worst


async def run(args: Any, report: c.Report, db_url: str | None) -> None:
    from launchplane.core.client import FINAL_STATES, LaunchplaneClient

    rng = random.Random(args.seed)
    with c.workspace("soak") as root:
        code = root / "code"
        code.mkdir()
        (code / "soak_job.py").write_text(JOB)
        server = c.ServerProcess(root, db_url=db_url, port=free_port()).start()
        soak = Soak(args, root, server)
        transport = Counting()
        try:
            queue = {
                **c.LOCAL_QUEUE_CONFIG,
                "lease_ttl_seconds": args.lease_ttl,
                "max_attempts": args.max_attempts,
            }
            soak.token = await c.setup_queue(server, config=queue)
            soak.agents = [soak.agent(i) for i in range(args.agents)]
            latencies: list[float] = []
            missed = [0, 0]
            jobs: dict[str, str] = {}
            async with (
                LaunchplaneClient(server.url, server.admin_token, transport=transport) as client,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(probe_health, server.url, soak, latencies, missed)
                tg.start_soon(soak.chaos, rng)
                limiter = anyio.Semaphore(SUBMITTERS)
                started = time.monotonic()

                async def submit(index: int) -> None:
                    key = f"j{index:05d}"
                    long = rng.random() < args.long_share
                    silent = "1" if long or rng.random() < args.silent_share else "0"
                    span = (2 * args.lease_ttl, 3 * args.lease_ttl) if long else (0.2, 2.0)
                    seconds = f"{rng.uniform(*span):.2f}"
                    job = {
                        "workdir": str(code),
                        "command": [
                            sys.executable,
                            "soak_job.py",
                            key,
                            str(args.lines),
                            seconds,
                            silent,
                        ],
                    }
                    async with limiter:
                        answer = await patient(
                            client.submit_job, c.QUEUE, job, idempotency_key=key, timeout=120
                        )
                    jobs[key] = answer["id"]

                async with anyio.create_task_group() as submitters:
                    for index in range(args.jobs):
                        submitters.start_soon(submit, index)
                submitted = time.monotonic() - started
                print(f"   {len(jobs)} jobs submitted in {submitted:.1f}s", flush=True)
                final: dict[str, dict[str, Any]] = {}
                deadline = time.monotonic() + args.timeout
                while len(final) < len(jobs) and time.monotonic() < deadline:
                    for key, job_id in jobs.items():
                        if key not in final:
                            job = await patient(client.get_job, job_id, timeout=120)
                            if job["state"] in FINAL_STATES:
                                final[key] = job
                    if len(final) < len(jobs):
                        await anyio.sleep(1.0)
                elapsed = time.monotonic() - started
                soak.done.set()
                for key, job_id in jobs.items():
                    if key not in final:
                        final[key] = await patient(client.get_job, job_id, timeout=120)
                unshipped = await settle(root, args.settle)
                logs = {
                    key: await patient(all_lines, client, job_id, timeout=120)
                    for key, job_id in jobs.items()
                }
        finally:
            soak.done.set()
            for agent in soak.agents:
                agent.stop()
            soak.count_server_tracebacks()
            server.stop()
        evaluate(args, report, soak, final, logs, read_markers(root), elapsed)
        report.add(
            "unshipped_outputs",
            "unshipped outputs (output.log left)",
            unshipped,
            "",
            note=f"run directories with output the server may lack, after up to {args.settle:g}s",
        )
        report_health(report, latencies, missed)
        errors = sum(transport.errors.values())
        report.add(
            "http_5xx",
            "5xx answers + server tracebacks",
            errors + soak.server_tracebacks,
            "",
            ("<=", 0),
            note=f"{dict(transport.errors) or 'no 5xx answers'}; "
            f"{soak.server_tracebacks} tracebacks in the server log",
        )


async def settle(root: Path, timeout: float) -> int:
    """Wait (up to ``timeout`` s) until no agent work directory holds output it has not
    shipped: an agent restarted after its leases expired ships it as late lines. Returns
    how many such run directories are left."""

    def left() -> int:
        return sum(1 for _ in root.glob("agent-*/work/*/output.log"))

    deadline = time.monotonic() + timeout
    while (count := left()) and time.monotonic() < deadline:
        await anyio.sleep(0.5)
    return count


async def all_lines(client: Any, job_id: str) -> list[str]:
    """Every stored line of a job (all attempts), in seq order."""
    lines: list[str] = []
    after = 0
    while True:
        page = await client.read_logs(job_id, after=after)
        if not page["lines"]:
            return lines
        lines += [line["line"] for line in page["lines"]]
        after = page["next"]


def evaluate(
    args: Any,
    report: c.Report,
    soak: Soak,
    final: dict[str, dict[str, Any]],
    logs: dict[str, list[str]],
    lives: dict[str, dict[int, list[Attempt]]],
    elapsed: float,
) -> None:
    states = Counter(job["state"] for job in final.values())
    lost_jobs = [key for key, job in final.items() if job["state"] != "succeeded"]
    lost_lines = lost_interrupted = duplicated = notices = 0
    overlapping: list[tuple[str, float]] = []
    attempts: Counter[int] = Counter()
    for key, job in final.items():
        stored: Counter[tuple[int, int]] = Counter()
        for text in logs[key]:
            match = LINE.match(text)
            if match and match.group(1) == key:
                stored[(int(match.group(2)), int(match.group(3)))] += 1
            elif "lines dropped here" in text or "lines lost here" in text:
                notices += 1
        duplicated += sum(n - 1 for n in stored.values() if n > 1)
        job_lives = lives.get(key, {})
        attempts[len(job_lives)] += 1
        for attempt, processes in job_lives.items():
            for life in processes:
                expected = {
                    i
                    for i in range(life.printed)
                    if job["spec"]["command"][5] != "1" or i in (0, args.lines - 1)
                }
                missing = sum(1 for i in expected if (attempt, i) not in stored)
                last = job["state"] == "succeeded" and attempt == job["attempt"] and life.ended
                if last:
                    lost_lines += missing
                else:
                    lost_interrupted += missing
        worst = overlaps(job_lives)
        if worst > 0:
            overlapping.append((key, round(worst, 1)))
    report.add(
        "jobs_lost",
        "jobs lost (not succeeded)",
        len(lost_jobs),
        "",
        ("<=", 0),
        note=f"{len(final)} jobs in {elapsed:.0f}s; states {dict(states)}"
        + (f"; e.g. {lost_jobs[:3]}" if lost_jobs else ""),
    )
    report.add("lines_lost", "lines lost (last attempts)", lost_lines, "", ("<=", 0))
    report.add(
        "lines_lost_interrupted",
        "lines lost (interrupted attempts)",
        lost_interrupted,
        "",
        note="printed by an attempt whose agent or server was killed, never stored",
    )
    report.add("lines_duplicated", "duplicated lines", duplicated, "", ("<=", 0))
    report.add(
        "overlapping_attempts",
        "jobs with overlapping attempts",
        len(overlapping),
        "",
        ("<=", 0),
        note=(
            f"longest overlap {max(w for _, w in overlapping):.1f}s, e.g. {overlapping[:3]}"
            if overlapping
            else "no two attempts of a job alive at once"
        ),
    )
    report.add(
        "kills",
        "kills (agents / server)",
        sum(soak.kills.values()),
        "",
        note=f"{soak.kills['agent']} agents ({soak.long_downs} down past their leases), "
        f"{soak.kills['server']} server; "
        f"jobs by attempts run {dict(sorted(attempts.items()))}; {notices} drop notices",
    )
    report.details.update(
        states=dict(states),
        lost_jobs=lost_jobs,
        overlapping=overlapping,
        kills=dict(soak.kills),
        attempts=dict(attempts),
    )


def report_health(report: c.Report, latencies: list[float], missed: list[int]) -> None:
    p99 = c.percentile(latencies, 99) if latencies else None
    report.add(
        "health_p99_ms",
        "/health p99",
        p99,
        "ms",
        ("<=", 50),
        note=(
            f"p50 {c.fmt(c.percentile(latencies, 50), 'ms')}, "
            f"max {c.fmt(max(latencies, default=0), 'ms')}, {len(latencies)} answered, "
            f"{missed[0]} unanswered (server down), {missed[1]} 5xx"
        ),
    )


def main() -> None:
    parser = c.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=20, help="Agent processes [20].")
    parser.add_argument("--jobs", type=int, default=2000, help="Jobs in all [2000].")
    parser.add_argument("--max-jobs", type=int, default=4, help="Jobs at once per agent [4].")
    parser.add_argument("--lines", type=int, default=20, help="Lines each job prints [20].")
    parser.add_argument("--silent-share", type=float, default=0.2, help="Quiet jobs [0.2].")
    parser.add_argument(
        "--long-share", type=float, default=0.05, help="Quiet jobs of 2-3 lease TTLs [0.05]."
    )
    parser.add_argument("--kill-every", type=float, default=5.0, help="Mean s between kills.")
    parser.add_argument("--server-share", type=float, default=0.2, help="Kills of the server.")
    parser.add_argument("--lease-ttl", type=float, default=5.0, help="Queue lease TTL [5 s].")
    parser.add_argument(
        "--down-share",
        type=float,
        default=0.1,
        help="Agent kills after which it stays down past its leases (1.5-2.5 TTLs) [0.1].",
    )
    parser.add_argument(
        "--settle", type=float, default=30.0, help="Wait for unshipped output up to [30 s]."
    )
    parser.add_argument("--max-attempts", type=int, default=20, help="Attempts per job [20].")
    parser.add_argument("--timeout", type=float, default=1800, help="Give up after [1800 s].")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    if args.quick:  # about half a minute
        args.agents, args.jobs = min(args.agents, 4), min(args.jobs, 100)
        args.kill_every = min(args.kill_every, 3.0)
    report = c.Report(
        "soak",
        f"Soak: {args.agents} agents x {args.jobs} jobs, random SIGKILLs ({args.db})",
        args,
    )
    report.details["args"] = vars(args)
    if args.db == "postgres":
        url = os.environ.get("LAUNCHPLANE_TEST_DATABASE_URL")
        if not url:
            raise SystemExit("--db postgres needs LAUNCHPLANE_TEST_DATABASE_URL")
        with c.scratch_database(url) as scratch:
            anyio.run(run, args, report, scratch)
    else:
        anyio.run(run, args, report, None)
    report.finish()


if __name__ == "__main__":
    main()

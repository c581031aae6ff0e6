"""Shared helpers of the benchmarks in ``bench/``: no dependency beyond the base install.

* :func:`machine` - what the figures were measured on (CPU, memory, kernel,
  Python, launchplane version, git commit);
* :class:`Report` - figures with their targets, a printed table with
  PASS/MISS, ``bench/results/<name>.json`` and a history line per run
  (``bench/results/history.jsonl``) from which ``bench/run_all`` shows the
  run-to-run spread;
* :class:`ServerProcess` / :class:`AgentProcess` - ``launchplane server`` and
  ``launch-agent`` as separate processes, exactly as they are deployed;
* ``/proc`` readers (RSS, PSS, CPU seconds): psutil is not part of the install.

Scripts import this module as ``_common`` (``python bench/x.py`` puts
``bench/`` first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
HISTORY = RESULTS / "history.jsonl"
BIN = Path(sys.executable).parent
"""The console scripts (``launchplane``, ``launch-agent``) next to this interpreter."""

CLK_TCK = os.sysconf("SC_CLK_TCK")
QUEUE = "bench"
LOCAL_QUEUE_CONFIG: dict[str, Any] = {"resource": "local-process", "builder": {"type": "noop"}}

FIRST_LINE_JOB = """\
import time; FIRST_LINE = time.time()  # the first line of user code: when the job really began
print("first-line", repr(FIRST_LINE), flush=True)
"""
"""The trivial job of the latency and throughput benchmarks (``first_line.py``)."""


# -- machine ------------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _git(*args: str) -> str | None:
    """A read-only git query (``--no-optional-locks``: never touches the index)."""
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(ROOT), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def machine() -> dict[str, Any]:
    """What these figures were measured on."""
    cpuinfo = _read("/proc/cpuinfo")
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "unknown",
    )
    mhz = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "cpu MHz" in line),
        None,
    )
    meminfo = {
        line.split(":")[0]: line.split(":")[1].strip()
        for line in _read("/proc/meminfo").splitlines()
        if ":" in line
    }
    mem_kib = int(meminfo.get("MemTotal", "0 kB").split()[0])
    os_release = dict(
        line.split("=", 1) for line in _read("/etc/os-release").splitlines() if "=" in line
    )
    try:
        from importlib.metadata import version

        lp_version = version("launchplane")
    except Exception:  # not installed: running from a checkout
        lp_version = "unknown"
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    cpu_max = _read("/sys/fs/cgroup/cpu.max").strip() or None
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cgroup_cpu_max": cpu_max,
        "cpu_model": model,
        "cpu_mhz": float(mhz) if mhz else None,
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "os": os_release.get("PRETTY_NAME", "").strip('"') or platform.system(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "launchplane_version": lp_version,
        "git_commit": commit,
        "git_dirty": bool(dirty) if dirty is not None else None,
        "hostname": socket.gethostname(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def describe_machine(m: dict[str, Any]) -> str:
    commit = (m.get("git_commit") or "?")[:10] + ("+dirty" if m.get("git_dirty") else "")
    quota = f", cgroup cpu.max {m['cgroup_cpu_max']}" if m.get("cgroup_cpu_max") else ""
    return (
        f"{m['nproc']} CPU ({m['cpu_model']}{quota}), {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}, {m['os']}, Python {m['python']}, "
        f"launchplane {m['launchplane_version']} @ {commit}, load {m['loadavg_at_start']}"
    )


# -- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (NumPy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "min": min(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


def spread(values: Sequence[float]) -> dict[str, float]:
    """Run-to-run spread of a repeated figure: min, median, max and (max-min)/median."""
    med = percentile(values, 50)
    return {
        "n": len(values),
        "min": min(values),
        "median": med,
        "max": max(values),
        "relative": (max(values) - min(values)) / med if med else float("nan"),
    }


# -- reports ------------------------------------------------------------------------------


@dataclass
class Figure:
    key: str
    label: str
    value: float | None
    unit: str
    target: tuple[str, float] | None = None
    """("<=", 60.0) or (">=", 25.0); None: informational."""
    note: str = ""
    status: str = ""
    """PASS, MISS, INFO, SKIP (with the reason in note) or FAIL (could not measure)."""
    spread: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.status:
            return
        if self.value is None:
            self.status = "FAIL"
        elif self.target is None:
            self.status = "INFO"
        else:
            op, limit = self.target
            ok = self.value <= limit if op == "<=" else self.value >= limit
            self.status = "PASS" if ok else "MISS"

    def target_text(self) -> str:
        if self.target is None:
            return ""
        op, limit = self.target
        return f"{op} {limit:g} {self.unit}".strip()

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "value": self.value,
            "unit": self.unit,
            "target": self.target_text() or None,
            "status": self.status,
            "note": self.note,
            "spread": self.spread,
        }


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:  # NaN
        return "-"
    magnitude = abs(value)
    text = (
        f"{value:.0f}"
        if magnitude >= 100
        else f"{value:.1f}"
        if magnitude >= 10
        else f"{value:.2f}"
        if magnitude >= 0.1
        else f"{value:.3f}"
    )
    return f"{text} {unit}".strip()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))


class Report:
    """Figures of one benchmark: printed as a table and written as JSON."""

    def __init__(self, name: str, title: str, args: argparse.Namespace) -> None:
        self.name = name
        self.title = title
        self.quick = bool(getattr(args, "quick", False))
        self.started = time.time()
        self.started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.machine = machine()
        self.figures: list[Figure] = []
        self.details: dict[str, Any] = {}
        self.notes: list[str] = []
        print(f"== {title}{'  (--quick)' if self.quick else ''}", flush=True)
        print(f"   machine: {describe_machine(self.machine)}", flush=True)

    def add(self, *args: Any, **kwargs: Any) -> Figure:
        figure = Figure(*args, **kwargs)
        self.figures.append(figure)
        return figure

    def skip(self, key: str, label: str, unit: str, reason: str, target: Any = None) -> None:
        self.figures.append(Figure(key, label, None, unit, target, reason, status="SKIP"))

    def fail(self, key: str, label: str, unit: str, reason: str, target: Any = None) -> None:
        self.figures.append(Figure(key, label, None, unit, target, reason, status="FAIL"))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def finish(self) -> Path:
        duration = time.time() - self.started
        print()
        rows = []
        for f in self.figures:
            value = fmt(f.value, f.unit) if f.value is not None else "-"
            if f.spread:
                value += f"  ({fmt(f.spread['min'])}..{fmt(f.spread['max'])}, n={f.spread['n']})"
            rows.append((f.label, value, f.target_text(), f.status, f.note))
        print_table(("figure", "value (spread)", "target", "status", "note"), rows)
        for text in self.notes:
            print(f"  * {text}")
        data = {
            "name": self.name,
            "title": self.title,
            "started_at": self.started_at,
            "duration_seconds": round(duration, 2),
            "quick": self.quick,
            "argv": sys.argv,
            "machine": self.machine,
            "figures": [f.as_dict() for f in self.figures],
            "notes": self.notes,
            "details": self.details,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")
        with HISTORY.open("a") as history:
            line = {
                "name": self.name,
                "started_at": self.started_at,
                "quick": self.quick,
                "run_id": os.environ.get("LAUNCHPLANE_BENCH_RUN_ID"),
                "git_commit": self.machine.get("git_commit"),
                "figures": {f.key: f.value for f in self.figures if f.value is not None},
            }
            history.write(json.dumps(line) + "\n")
        print(f"  -> {path.relative_to(ROOT)} ({duration:.1f}s)", flush=True)
        return path


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="A short run (CI): fewer samples, shorter windows."
    )
    return parser


# -- /proc --------------------------------------------------------------------------------


def rss_kib(pid: int) -> int | None:
    """VmRSS from /proc/<pid>/status, in KiB."""
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def pss_kib(pid: int) -> int | None:
    """Pss from /proc/<pid>/smaps_rollup (shared pages split between sharers), in KiB."""
    for line in _read(f"/proc/{pid}/smaps_rollup").splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def cpu_seconds(pid: int, children: bool = False) -> float | None:
    """utime + stime of /proc/<pid>/stat (all threads); ``children`` adds reaped children."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def cpu_ns_threads(pid: int) -> int | None:
    """Nanoseconds on CPU summed over live threads (/proc/<pid>/task/*/schedstat)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        text = _read(f"/proc/{pid}/task/{tid}/schedstat")
        if text:
            total += int(text.split()[0])
    return total


def thread_count(pid: int) -> int | None:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return None


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from the first line of /proc/stat."""
    fields = [int(x) for x in _read("/proc/stat").splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


class CpuWatch:
    """How much CPU *other* processes used while a benchmark measured (a noisy-neighbour check).

    foreign = all CPUs' busy time (/proc/stat) - this process - the watched pids (with
    their reaped children, e.g. an agent's jobs). Reported as a fraction of the machine.
    """

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self.pids = list(pids)

    def _ours(self) -> float:
        times = os.times()
        own = times.user + times.system + times.children_user + times.children_system
        return own + sum(cpu_seconds(pid, children=True) or 0.0 for pid in self.pids)

    def start(self) -> CpuWatch:
        self._t0 = time.monotonic()
        self._machine0 = machine_ticks()
        self._ours0 = self._ours()
        return self

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._t0
        busy1, total1 = machine_ticks()
        busy = (busy1 - self._machine0[0]) / CLK_TCK
        capacity = (total1 - self._machine0[1]) / CLK_TCK or 1e-9
        ours = self._ours() - self._ours0
        foreign = max(0.0, busy - ours)
        return {
            "seconds": round(elapsed, 2),
            "machine_busy_fraction": round(busy / capacity, 3),
            "ours_cpu_seconds": round(ours, 2),
            "foreign_cpu_seconds": round(foreign, 2),
            "foreign_fraction": round(foreign / capacity, 3),
        }


def foreign_note(watch: dict[str, float]) -> str:
    return f"other processes used {watch['foreign_fraction'] * 100:.0f}% of the CPUs meanwhile"


def wait_quiet(
    threshold: float = 0.25, sample: float = 2.0, timeout: float = 120.0
) -> dict[str, Any]:
    """Wait until other processes use less than ``threshold`` of the machine (or ``timeout``)."""
    start = time.monotonic()
    announced = False
    while True:
        watch = CpuWatch().start()
        time.sleep(sample)
        load = watch.stop()["foreign_fraction"]
        waited = time.monotonic() - start
        if load < threshold or waited >= timeout:
            if announced or load >= threshold:
                print(f"   machine load {load * 100:.0f}% after waiting {waited:.0f}s", flush=True)
            return {
                "foreign_fraction": load,
                "waited_seconds": round(waited, 1),
                "quiet": load < threshold,
            }
        if not announced:
            print(
                f"   other processes use {load * 100:.0f}% of the CPUs; waiting for a quieter "
                f"machine (up to {timeout:.0f}s)...",
                flush=True,
            )
            announced = True


# -- processes ----------------------------------------------------------------------------


def console_script(name: str) -> str:
    """``launchplane`` / ``launch-agent`` of this interpreter's environment."""
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found next to {sys.executable} nor on PATH: install first")
    return found


def bench_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LAUNCHPLANE_HOME"] = str(home)
    env.pop("LAUNCHPLANE_TOKEN", None)
    env.pop("LAUNCHPLANE_SERVER", None)
    return env


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def attach_profiler(pid: int, name: str) -> None:
    """``LAUNCHPLANE_BENCH_PYSPY=<dir>``: record ``pid`` with py-spy (collapsed stacks).

    For profiling only (py-spy is not a dependency): ``pip install py-spy`` anywhere on PATH.
    """
    target = os.environ.get("LAUNCHPLANE_BENCH_PYSPY")
    if not target:
        return
    out = Path(target) / f"{name}-{pid}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.Popen(
        [
            os.environ.get("PYSPY", "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout``; the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)
    return proc.returncode


class ServerProcess:
    """``launchplane server`` on a free loopback port (or ``port``), its own data directory."""

    def __init__(self, directory: Path, db_url: str | None = None, port: int = 0) -> None:
        self.directory = directory
        self.db_url = db_url
        self.port = port
        self.data_dir = directory / "server"
        self.log_path = directory / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> ServerProcess:
        argv = [
            console_script("launchplane"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "warning",
        ]
        if self.db_url:
            argv += ["--db", self.db_url]
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=bench_env(self.directory / "home"),
            start_new_session=True,
        )
        attach_profiler(self.proc.pid, "server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if "listening on " in line:
                    self.url = line.split("listening on ", 1)[1].strip()
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"launchplane server exited with {self.proc.returncode}: "
                    + (tail(self.log_path, 6) or "(no output)")
                )
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"launchplane server did not listen within {timeout:.0f}s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class AgentProcess:
    """``launch-agent`` serving one queue of a :class:`ServerProcess`."""

    def __init__(
        self,
        directory: Path,
        server_url: str,
        token: str,
        *,
        queue: str = QUEUE,
        max_jobs: int = 4,
        agent_id: str = "bench-agent",
        python_flags: Sequence[str] = (),
        log_name: str = "agent.log",
        extra: Sequence[str] = (),
    ) -> None:
        self.argv = [
            *((sys.executable, *python_flags) if python_flags else ()),
            console_script("launch-agent"),
            "--server",
            server_url,
            "--token",
            token,
            "--queue",
            queue,
            "--max-jobs",
            str(max_jobs),
            "--agent-id",
            agent_id,
            "--work-dir",
            str(directory / "work"),
            "--log-level",
            "warning",
            "--drain-timeout",
            "30",
            *extra,
        ]
        self.directory = directory
        self.agent_id = agent_id
        self.log_path = directory / log_name
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0

    def start(self) -> AgentProcess:
        log = self.log_path.open("wb")
        env = bench_env(self.directory / "home")
        self.spawned_at = time.time()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        attach_profiler(self.proc.pid, "agent")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"launch-agent exited with {self.proc.returncode}: {tail(self.log_path, 8)}"
            )

    def stop(self) -> int | None:
        return stop_process(self.proc, timeout=35) if self.proc is not None else None

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@contextlib.contextmanager
def workspace(prefix: str) -> Iterator[Path]:
    """A temporary directory, removed afterwards (kept with LAUNCHPLANE_BENCH_KEEP=1)."""
    path = Path(tempfile.mkdtemp(prefix=f"lp-bench-{prefix}-"))
    try:
        yield path
    finally:
        if os.environ.get("LAUNCHPLANE_BENCH_KEEP") != "1":
            shutil.rmtree(path, ignore_errors=True)
        else:
            print(f"  (kept {path})")


def write_first_line_job(directory: Path) -> dict[str, Any]:
    """The trivial job: ``first_line.py``, run by the local-process runner (agent's Python)."""
    code = directory / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "first_line.py").write_text(FIRST_LINE_JOB)
    return {"name": "bench-first-line", "workdir": str(code), "entry_point": "first_line.py"}


def parse_time(text: str) -> float:
    """An API timestamp (ISO 8601) as seconds since the epoch."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def setup_queue(
    server: ServerProcess, queue: str = QUEUE, config: dict[str, Any] | None = None
) -> str:
    """Create the queue on the server; an agent token for it."""
    from launchplane.core.client import LaunchplaneClient

    async with LaunchplaneClient(server.url, server.admin_token) as client:
        await client.create_queue(queue, config or LOCAL_QUEUE_CONFIG)
        created = await client.create_token("agent", [queue], "bench-agent")
    return str(created["token"])


async def wait_registered(client: Any, agent: AgentProcess, timeout: float = 30.0) -> float:
    """Until the server lists the agent; its ``registered_at`` (epoch seconds)."""
    import anyio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agent.check_alive()
        for entry in await client.list_agents():
            if entry["agent_id"] == agent.agent_id:
                return parse_time(entry["registered_at"])
        await anyio.sleep(0.02)
    raise RuntimeError(f"the agent did not register within {timeout:.0f}s: {tail(agent.log_path)}")


async def first_line_time(client: Any, job_id: str) -> float | None:
    """The ``time.time()`` the job printed on its first line, read back through the API."""
    page = await client.read_logs(job_id, after=0)
    for line in page["lines"]:
        text = line["line"]
        if text.startswith("first-line "):
            return float(text.split()[1])
    return None


def postgres_url(explicit: str | None) -> tuple[str | None, str]:
    """The PostgreSQL URL to benchmark against, or None and why not."""
    for url, origin in (
        (explicit, "--pg-url"),
        (os.environ.get("LAUNCHPLANE_BENCH_DATABASE_URL"), "$LAUNCHPLANE_BENCH_DATABASE_URL"),
        (os.environ.get("LAUNCHPLANE_TEST_DATABASE_URL"), "$LAUNCHPLANE_TEST_DATABASE_URL"),
    ):
        if url:
            return url, origin
    default = "postgresql+asyncpg://postgres@127.0.0.1:54329/launchplane_test"
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 54329), timeout=0.5):
        return default, "default port 54329 of scripts/services/postgres.sh"
    return None, (
        "no PostgreSQL: pass --pg-url, set LAUNCHPLANE_BENCH_DATABASE_URL, "
        "or start one with scripts/services/postgres.sh"
    )


def database_option(stack: contextlib.ExitStack, db: str) -> str | None:
    """A ``--db sqlite|postgresql|URL`` choice as the server's ``--db``: None for SQLite,
    else a scratch PostgreSQL database that ``stack`` drops; RuntimeError when there is none."""
    if db == "sqlite":
        return None
    url, why = postgres_url(None if db == "postgresql" else db)
    if url is None:
        raise RuntimeError(why)
    return stack.enter_context(scratch_database(url))


@contextlib.contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """A fresh database next to the one ``url`` names (dropped afterwards), so the benchmark
    neither sees nor disturbs what the test suite keeps in it. Needs asyncpg."""
    import asyncio
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    try:
        import asyncpg  # type: ignore[import-not-found]
    except ImportError:
        raise RuntimeError(
            "asyncpg is not installed (pip install 'launchplane[postgres]')"
        ) from None
    parts = urlsplit(url)
    plain = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))
    name = f"launchplane_bench_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(plain, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

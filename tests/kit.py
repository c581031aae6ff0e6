"""Helpers shared by the test directories (fixtures live in the conftest.py files).

What one directory alone uses stays in its own ``<name>kit.py`` (serverkit,
storekit, chaoskit, dockerkit, agentkit); what several use is here, once.
Test modules import helpers from these uniquely named modules, never from
``conftest``: every test directory has a conftest.py, and when one pytest call
collects several directories ``conftest`` is whichever was imported last.
pyproject's ``pythonpath = ["tests"]`` makes this module importable in every
run; pytest's default ("prepend") import mode puts a test directory on
sys.path before it imports that directory's conftest and tests, and with it
the directory's own kit.

Every wait here polls a condition with a deadline; none sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.abc
import httpx
import pytest
from click.testing import CliRunner, Result

from launchplane.agent.loop import Agent, AgentSettings
from launchplane.cli import cli
from launchplane.core.client import FINAL_STATES, LaunchplaneClient, StaleLease
from launchplane.core.lease import Lease
from launchplane.core.yamlsafe import load_document
from launchplane.server.embedded import EmbeddedServer

T = TypeVar("T")
BIN = Path(sys.executable).parent
LAUNCH_AGENT = str(BIN / "launch-agent")
"""``launch-agent`` of this venv: the console script next to the interpreter."""
QUEUE = "q"
"""The queue of the ``server`` fixtures of tests/server and tests/store."""


# -- external services and child processes ----------------------------------------------


def require_service(name: str, available: bool, why: str = "") -> None:
    """Skip (locally) or fail (in CI) when an external service is missing.

    ``.ci/run`` sets ``LAUNCHPLANE_REQUIRE_SERVICES=1``: there a missing Docker
    engine or PostgreSQL must not pass as a green, skipped run.
    """
    if available:
        return
    message = f"{name} is not available{': ' + why if why else ''}"
    if os.environ.get("LAUNCHPLANE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (LAUNCHPLANE_REQUIRE_SERVICES=1: CI must provide it)")
    pytest.skip(message)


DOCKER_BASE_IMAGE = "launchplane/python-base:bookworm"
"""The image Docker tests run and build on (``scripts/services/docker.sh`` makes it)."""
DOCKER_HINT = "run scripts/services/docker.sh"


def require_docker() -> Any:
    """A docker-py client of a running engine that has the base image; else skip (or fail in CI)."""
    client = None
    with contextlib.suppress(Exception):  # no docker-py, no engine
        import docker

        engine = docker.from_env(timeout=10)
        engine.ping()
        client = engine
    require_service("Docker engine", client is not None, f"no docker-py or engine; {DOCKER_HINT}")
    assert client is not None
    has_base = bool(client.images.list(name=DOCKER_BASE_IMAGE))
    require_service(f"base image {DOCKER_BASE_IMAGE}", has_base, DOCKER_HINT)
    return client


LAUNCHPLANE = str(BIN / "launchplane")
"""The ``launchplane`` command of the venv the tests run in."""


def free_port() -> int:
    """A loopback TCP port nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def server_process(data_dir: Path) -> Iterator[str]:
    """A real ``launchplane server`` process on a free loopback port: its URL, once healthy.

    Its admin token is ``data_dir / "admin-token"``; it is stopped on exit.
    """
    port = free_port()
    argv = [LAUNCHPLANE, "server", "--port", str(port), "--data-dir", str(data_dir)]
    with _serving(argv, f"http://127.0.0.1:{port}", "/api/v1/health", "server", 30) as url:
        yield url


@contextlib.contextmanager
def _serving(argv: list[str], url: str, probe: str, what: str, timeout: float) -> Iterator[str]:
    """Start ``argv``, wait until ``url + probe`` answers, yield ``url``; stop it on exit."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(url + probe, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"{what} did not start"
                assert process.poll() is None, f"{what} exited"
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test's environment without LAUNCHPLANE_* settings, plus ``extra``.

    A child must not pick up the caller's server, token or home: it gets only
    what its command line (or ``extra``) says.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHPLANE_")}
    env.update(extra)
    return env


def pythonpath(*directories: Path) -> str:
    """``PYTHONPATH`` for a child that imports test plugins from ``directories``.

    The caller's own ``PYTHONPATH`` is kept after them, so the child runs the
    launchplane under test (a checkout on ``PYTHONPATH``), not whichever one the
    venv has installed.
    """
    return os.pathsep.join([*map(str, directories), *filter(None, [os.environ.get("PYTHONPATH")])])


def pid_gone(pid: int) -> bool:
    """True when the process no longer exists (a zombie waiting for its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: it is being reaped
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def pids_with_argument(argument: str, program: str | None = None) -> list[int]:
    """Live processes (zombies excluded) with ``argument`` in their argv, from the host's /proc;
    only those named ``program`` (``/proc/<pid>/comm``) when given.

    A sandboxed job sees only its own PID namespace, so it cannot print a pid
    the test could check: the test finds its processes by a unique argument.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if program is not None and comm != program:
            continue
        if argument.encode() in argv and not pid_gone(int(entry.name)):
            found.append(int(entry.name))
    return found


def unique_seconds(seconds: int) -> str:
    """A ``sleep`` argument near ``seconds`` that no other process has: its argv finds it."""
    return f"{seconds}.{secrets.randbelow(10**9):09d}"


async def find_process(argument: str, program: str, timeout: float = 10) -> int:
    """The host pid of the one live ``program`` with ``argument`` in its argv, once it runs.

    A job that prints ``$$`` in its sandbox prints its pid in its own PID
    namespace (1, 2, ...): a test finds its host pid this way instead.
    """

    async def check() -> int | None:
        found = pids_with_argument(argument, program)
        return found[0] if len(found) == 1 else None

    return await eventually(check, timeout, f"one {program} process with argument {argument}")


# -- bounded waits ----------------------------------------------------------------------


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float, what: str, every: float = 0.05
) -> T:
    """Poll ``check`` until it returns something other than None/False; fail after ``timeout``."""
    with anyio.move_on_after(timeout):
        while True:
            value = await check()
            if value is not None and value is not False:
                return value
            await anyio.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


async def wait_gone(pid: int, timeout: float = 10.0) -> float:
    """Seconds until ``pid`` was gone; fails after ``timeout``."""
    started = anyio.current_time()

    async def check() -> bool:
        return pid_gone(pid)

    await eventually(check, timeout, f"process {pid} to end", every=0.02)
    return anyio.current_time() - started


async def wait_for_state(
    client: LaunchplaneClient,
    job_id: str,
    states: Sequence[str] = tuple(FINAL_STATES),
    timeout: float = 30,
) -> dict[str, Any]:
    """The job once it is in one of ``states`` (by default: any final state)."""

    async def check() -> dict[str, Any] | None:
        job = await client.get_job(job_id)
        return job if job["state"] in states else None

    return await eventually(check, timeout, f"job {job_id} to reach {'/'.join(states)}")


async def log_lines(client: LaunchplaneClient, job_id: str) -> list[str]:
    """Every line the server holds for the job, across as many pages as it takes."""
    lines: list[str] = []
    after = 0
    while True:
        page = await client.read_logs(job_id, after=after)
        lines += [line["line"] for line in page["lines"]]
        if not page["lines"]:
            return lines
        after = page["next"]


async def wait_for_line(
    client: LaunchplaneClient, job_id: str, predicate: Callable[[str], bool], timeout: float = 20
) -> str:
    """The first log line of the job that satisfies ``predicate`` (followed with long-polls)."""
    with anyio.fail_after(timeout):
        after = 0
        while True:
            page = await client.read_logs(job_id, after=after, wait=1)
            for line in page["lines"]:
                if predicate(line["line"]):
                    return line["line"]
            after = page["next"]


# -- agents -----------------------------------------------------------------------------


_AGENT_TOKENS: weakref.WeakKeyDictionary[EmbeddedServer, dict[str, str]] = (
    weakref.WeakKeyDictionary()
)
"""Per server, agent id -> the agent token that agent id was first started with."""


async def agent_token(
    server: EmbeddedServer, queues: Sequence[str], agent_id: str | None = None
) -> str:
    """An agent token for ``queues``; the same one each time for a named ``agent_id``.

    The server binds an agent id to the first token that uses it (a stolen
    token cannot pose as another agent), so an agent restarted under its id
    comes back with its own token, as a deployed one would.
    """
    if agent_id is None:
        return await server.create_token("agent", queues=list(queues))
    known = _AGENT_TOKENS.setdefault(server, {})
    if agent_id not in known:
        known[agent_id] = await server.create_token("agent", queues=list(queues))
    return known[agent_id]


@asynccontextmanager
async def running_agent(
    server: EmbeddedServer, work_dir: Path, queues: Sequence[str], **options: Any
) -> AsyncIterator[Agent]:
    """An agent in this event loop; on exit it stops and releases whatever still runs.

    Unless ``options`` say otherwise a cancelled job gets 1 s before SIGKILL and
    a claim long-polls 5 s, so that cancels and the agent's own shutdown are quick.
    """
    token = await agent_token(server, queues, options.get("agent_id"))
    settings = AgentSettings(
        server=server.url,
        token=token,
        queues=list(queues),
        work_dir=work_dir,
        **{"cancel_grace": 1.0, "claim_wait": 5.0, **options},
    )
    agent = Agent(settings)
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(agent.run, handle_signals=False))
        with anyio.fail_after(10):
            await agent.wait_started()
        try:
            yield agent
        finally:
            agent.shutdown()  # stop claiming, drain ...
            agent.shutdown()  # ... and stop what still runs now


class AgentProcess:
    """``launch-agent`` as a real child process, with its log file."""

    def __init__(self, process: anyio.abc.Process, log_file: Path, agent_id: str) -> None:
        self.process = process
        self.log_file = log_file
        self.agent_id = agent_id

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    async def wait_log(self, text: str, timeout: float = 20) -> str:
        """The agent's log once it contains ``text``."""

        async def check() -> str | None:
            log = self.log()
            return log if text in log else None

        return await eventually(check, timeout, f"'{text}' in the log of agent {self.agent_id}")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait(self) -> int:
        """The agent's exit code, once it has exited."""
        return await self.process.wait()

    async def kill(self) -> None:
        """SIGKILL: the agent gets no chance to release anything."""
        self.process.kill()
        await self.process.wait()


@asynccontextmanager
async def agent_process(
    server_url: str,
    token: str,
    work_dir: Path,
    *,
    queues: Sequence[str],
    agent_id: str | None = None,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    log_name: str | None = None,
) -> AsyncIterator[AgentProcess]:
    """Start ``launch-agent``; kill it on exit if still running.

    Its output goes to ``log_name`` (default: ``<agent id>.log``) next to
    ``work_dir``. It yields at once: callers that need the agent serving wait
    for that in its log.
    """
    log_file = work_dir.parent / (log_name or f"{agent_id or 'agent'}.log")
    command = [
        LAUNCH_AGENT,
        "--server",
        server_url,
        "--token",
        token,
        "--work-dir",
        str(work_dir),
        *(["--agent-id", agent_id] if agent_id else []),
        *(item for queue in queues for item in ("--queue", queue)),
        *args,
    ]
    with log_file.open("ab") as output:
        process = await anyio.open_process(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            env=env or subprocess_env(),
        )
    try:
        yield AgentProcess(process, log_file, agent_id or "agent")
    finally:
        if process.returncode is None:
            process.kill()  # SIGKILL ends a stopped (SIGSTOP) process too
        await process.wait()


# -- the queue API, as an agent speaks it -----------------------------------------------


async def agent_client(server: EmbeddedServer, queues: Sequence[str]) -> LaunchplaneClient:
    """A client with an agent token for ``queues``; no retries, so tests see every answer."""
    token = await server.create_token("agent", queues=list(queues))
    return LaunchplaneClient(server.url, token, retries=0)


async def claim_now(
    agent: LaunchplaneClient, queue: str = QUEUE, agent_id: str = "agent-1"
) -> Lease:
    """The lease of a job that is already queued (fails if none comes within 5 s)."""
    lease = await agent.claim(queue, agent_id, wait=5)
    assert lease is not None, "expected a job to claim"
    return lease


async def assert_fenced(agent: LaunchplaneClient, lease_id: str) -> None:
    """Everything an agent may do under a lease is refused (409) once the lease is stale."""
    for call in (
        agent.post_event(lease_id, "running"),
        agent.append_logs(lease_id, ["late"]),
        agent.complete(lease_id, "succeeded", exit_code=0),
        agent.release(lease_id),
    ):
        with pytest.raises(StaleLease) as caught:
            await call
        assert caught.value.status == 409


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's AWS server (``moto[server]``) as a real process on a free loopback port: its URL.

    Real boto3 clients talk to it over HTTP with ``endpoint_url`` (or
    ``AWS_ENDPOINT_URL``): S3, ECR, Secrets Manager, IAM, CloudWatch Logs and
    SageMaker. Skips (fails in CI) when moto is not installed.
    """
    try:
        import moto.server  # noqa: F401
    except ImportError:
        require_service("moto's AWS server", False, "pip install 'moto[server]'")
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with _serving(argv, f"http://127.0.0.1:{port}", "/moto-api/", "moto server", 60) as url:
        yield url


AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
"""Credentials moto accepts; set with ``AWS_ENDPOINT_URL`` so nothing can reach a real account."""


def plan(*args: str | Path) -> Result:
    """``launchplane plan ARGS`` in this process (click's runner), exceptions raised."""
    return CliRunner().invoke(cli, ["plan", *map(str, args)], catch_exceptions=False)


def planned(*args: str | Path) -> dict[str, Any]:
    """What ``launchplane plan ARGS`` prints, parsed; the plan must succeed."""
    result = plan(*args)
    assert result.exit_code == 0, result.stderr
    return load_document(result.stdout, source="plan output")

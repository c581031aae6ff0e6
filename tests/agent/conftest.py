"""Fixtures for agent tests: a real queue server on a loopback port and in-process agents."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from launchplane.core.agent import Agent, AgentSettings
from launchplane.core.client import FINAL_STATES, LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

QUEUE = "local"
FAST_QUEUE: dict[str, Any] = {"resource": "local-process", "lease_ttl_seconds": 3}
"""A queue whose leases are heartbeated every second, so cancels arrive quickly."""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        await srv.ensure_queue(QUEUE, FAST_QUEUE)
        yield srv


@pytest.fixture
async def client(server: EmbeddedServer) -> AsyncIterator[LaunchplaneClient]:
    async with LaunchplaneClient(server.url, server.admin_token) as c:
        yield c


@asynccontextmanager
async def running_agent(
    server: EmbeddedServer, work_dir: Path, queues: Sequence[str] = (QUEUE,), **options: Any
) -> AsyncIterator[Agent]:
    """An agent in this event loop; on exit it stops and releases whatever still runs."""
    token = await server.create_token("agent", queues=list(queues))
    settings = AgentSettings(
        server=server.url,
        token=token,
        queues=list(queues),
        work_dir=work_dir,
        cancel_grace=options.pop("cancel_grace", 1.0),
        claim_wait=options.pop("claim_wait", 5.0),
        **options,
    )
    agent = Agent(settings)
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(agent.run, handle_signals=False))
        with anyio.fail_after(10):
            await agent.wait_started()
        try:
            yield agent
        finally:
            agent.shutdown()
            agent.shutdown()


async def wait_for_state(
    client: LaunchplaneClient,
    job_id: str,
    states: Sequence[str] = tuple(FINAL_STATES),
    timeout: float = 30,
) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        while True:
            job = await client.get_job(job_id)
            if job["state"] in states:
                return job
            await anyio.sleep(0.05)


async def log_lines(client: LaunchplaneClient, job_id: str) -> list[str]:
    page = await client.read_logs(job_id)
    return [line["line"] for line in page["lines"]]


async def wait_for_line(
    client: LaunchplaneClient, job_id: str, predicate: Any, timeout: float = 20
) -> str:
    with anyio.fail_after(timeout):
        after = 0
        while True:
            page = await client.read_logs(job_id, after=after, wait=1)
            for line in page["lines"]:
                if predicate(line["line"]):
                    return line["line"]
            after = page["next"]


def pid_gone(pid: int) -> bool:
    """True when the process no longer exists (a zombie waiting for init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    with anyio.move_on_after(timeout):
        while not pid_gone(pid):
            await anyio.sleep(0.05)
    return pid_gone(pid)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def git_repo(path: Path) -> tuple[str, str]:
    """A repository with ``train.py`` on ``main`` (two commits); returns (first, second) commits."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(path), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    path.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (path / "train.py").write_text("print('code v1')\n")
    git("add", ".")
    git("commit", "--quiet", "-m", "v1")
    first = git("rev-parse", "HEAD")
    (path / "train.py").write_text("print('code v2')\n")
    git("commit", "--quiet", "-am", "v2")
    return first, git("rev-parse", "HEAD")


def agent_command() -> list[str]:
    """``launch-agent`` from this venv (the console script next to the interpreter)."""
    return [str(Path(sys.executable).with_name("launch-agent"))]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHPLANE_")}
    env.update(extra)
    return env


@asynccontextmanager
async def agent_process(
    server: EmbeddedServer,
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    queues: Sequence[str] = (QUEUE,),
) -> AsyncIterator[tuple[anyio.abc.Process, Path]]:
    """``launch-agent`` as a real subprocess; yields it and the file its stderr goes to."""
    token = await server.create_token("agent", queues=list(queues))
    log_file = tmp_path / "agent.log"
    command = [
        *agent_command(),
        "--server",
        server.url,
        "--token",
        token,
        "--work-dir",
        str(tmp_path / "work"),
        *(item for queue in queues for item in ("--queue", queue)),
        *args,
    ]
    with log_file.open("wb") as stderr:
        process = await anyio.open_process(
            command,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            env=env or subprocess_env(),
        )
        try:
            yield process, log_file
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()

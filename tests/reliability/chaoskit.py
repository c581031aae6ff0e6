"""Helpers for the reliability tests: real agent processes, real signals, bounded waits.

Every wait here polls a condition with a deadline; none sleeps to synchronise.
The helpers live in this module (not in conftest.py) so that test modules can
import them by a name no other test directory uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.abc

from launchplane.core.client import FINAL_STATES, LaunchplaneClient

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
T = TypeVar("T")
SWEEP_SECONDS = 0.1
"""The test servers' sweeper interval: a lost lease is re-queued within TTL + this."""


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


async def wait_for_state(
    client: LaunchplaneClient,
    job_id: str,
    states: Sequence[str] = tuple(FINAL_STATES),
    timeout: float = 30,
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        job = await client.get_job(job_id)
        return job if job["state"] in states else None

    return await eventually(check, timeout, f"job {job_id} to reach {'/'.join(states)}")


async def log_lines(client: LaunchplaneClient, job_id: str) -> list[str]:
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


def pid_gone(pid: int) -> bool:
    """True when the process no longer exists (a zombie waiting for its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def wait_gone(pid: int, timeout: float = 10.0) -> float:
    """Seconds until ``pid`` was gone; fails after ``timeout``."""
    started = anyio.current_time()

    async def check() -> bool:
        return pid_gone(pid)

    await eventually(check, timeout, f"process {pid} to end", every=0.02)
    return anyio.current_time() - started


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test's environment without LAUNCHPLANE_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHPLANE_")}
    env.update(extra)
    return env


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

    async def wait_log(self, text: str, timeout: float = 20) -> None:
        async def check() -> bool:
            return text in self.log()

        await eventually(check, timeout, f"'{text}' in the log of agent {self.agent_id}")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

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
    agent_id: str,
    queues: Sequence[str],
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    log_name: str | None = None,
) -> AsyncIterator[AgentProcess]:
    """Start ``launch-agent``; wait until it serves; kill it on exit if still running."""
    log_file = work_dir.parent / (log_name or f"{agent_id}.log")
    command = [
        str(BIN / "launch-agent"),
        "--server",
        server_url,
        "--token",
        token,
        "--work-dir",
        str(work_dir),
        "--agent-id",
        agent_id,
        "--cancel-grace",
        "1",
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
    agent = AgentProcess(process, log_file, agent_id)
    try:
        await agent.wait_log("serving queue")
        yield agent
    finally:
        if process.returncode is None:
            process.kill()  # SIGKILL ends a stopped (SIGSTOP) process too
        await process.wait()


async def agent_token(client: LaunchplaneClient, queues: Sequence[str]) -> str:
    return (await client.create_token("agent", list(queues)))["token"]


def attempts_of(job: dict[str, Any], state: str) -> list[int]:
    """The attempts during which the job took ``state`` (from its events)."""
    return [event["attempt"] for event in job["events"] if event["state"] == state]


def agents_of(job: dict[str, Any]) -> list[str]:
    """The agent of each claim, in order."""
    return [
        (event.get("details") or {}).get("agent_id", "?")
        for event in job["events"]
        if event["state"] == "claimed"
    ]

"""Helpers for the reliability tests: real agent processes, real signals, bounded waits.

What the reliability tests share with other test directories (the bounded
waits, ``AgentProcess``, ``subprocess_env``) is defined in tests/kit.py and
re-exported here (``__all__``), so that every reliability test imports all of
its helpers from this one module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import kit
from kit import (
    BIN,
    DOCKER_BASE_IMAGE,
    AgentProcess,
    eventually,
    find_process,
    log_lines,
    pid_gone,
    pythonpath,
    require_docker,
    subprocess_env,
    unique_seconds,
    wait_for_line,
    wait_for_state,
    wait_gone,
)

from launchplane.core.client import LaunchplaneClient

__all__ = [
    "BIN",
    "DOCKER_BASE_IMAGE",
    "HERE",
    "SWEEP_SECONDS",
    "AgentProcess",
    "agent_process",
    "agent_token",
    "agents_of",
    "attempts_of",
    "eventually",
    "find_process",
    "log_lines",
    "pid_gone",
    "pythonpath",
    "require_docker",
    "subprocess_env",
    "unique_seconds",
    "wait_for_line",
    "wait_for_state",
    "wait_gone",
]

HERE = Path(__file__).parent
SWEEP_SECONDS = 0.1
"""The test servers' sweeper interval: a lost lease is re-queued within TTL + this."""


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
    """Start ``launch-agent`` (cancel grace 1 s); wait until it serves; kill it on exit."""
    async with kit.agent_process(
        server_url,
        token,
        work_dir,
        queues=queues,
        agent_id=agent_id,
        args=["--cancel-grace", "1", *args],
        env=env,
        log_name=log_name,
    ) as agent:
        await agent.wait_log("serving queue")
        yield agent


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

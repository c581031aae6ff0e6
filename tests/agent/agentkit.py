"""Helpers of the agent tests (fixtures live in conftest.py; shared helpers in tests/kit.py)."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import kit
from kit import AgentProcess

from launchplane.server.embedded import EmbeddedServer

QUEUE = "local"
FAST_QUEUE: dict[str, Any] = {"resource": "local-process", "lease_ttl_seconds": 3}
"""A queue whose leases are heartbeated every second, so cancels arrive quickly."""


@asynccontextmanager
async def agent_process(
    server: EmbeddedServer, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[AgentProcess]:
    """``launch-agent`` on QUEUE with a token of its own (``args`` are its other options).

    It works in ``tmp_path/work`` and logs to ``tmp_path/agent.log``; it is
    yielded at once, before it serves.
    """
    token = await server.create_token("agent", queues=[QUEUE])
    async with kit.agent_process(
        server.url,
        token,
        tmp_path / "work",
        queues=[QUEUE],
        args=args,
        env=env,
        log_name="agent.log",
    ) as agent:
        yield agent


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

"""A container whose agent came back too late: stopped, and its output shipped as late lines.

A real engine, server and agent process. The agent is SIGKILLed while its
container prints; it comes back (same id and work directory) only after the
lease expired, so the job is queued again. At start the agent stops the
container (its lease is over: left running, it would overlap the next
attempt) and ships what it printed meanwhile as attempt 1's late lines; then
it runs attempt 2.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dockerkit import BASE_IMAGE, NONCE, eventually
from kit import agent_process, agent_token, log_lines, wait_for_line, wait_for_state

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

QUEUE = "docker-late"
TTL = 2.0
TICKS = (
    'if [ "$LAUNCHPLANE_ATTEMPT" = 1 ]; then i=0; '
    "while :; do echo tick $i; i=$((i+1)); sleep 0.02; done; fi; echo second"
)


@pytest.fixture
async def server(tmp_path: Path, docker: Any) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        await srv.ensure_queue(
            QUEUE, {"resource": "docker", "lease_ttl_seconds": TTL, "max_attempts": 2}
        )
        yield srv


async def test_a_container_outliving_its_lease_is_stopped_and_its_lines_shipped(
    server: EmbeddedServer, client: LaunchplaneClient, docker: Any, tmp_path: Path
) -> None:
    agent_id = f"lptest-late-{NONCE[:8]}"
    work = tmp_path / "work"
    token = await agent_token(server, [QUEUE], agent_id)
    options = {"queues": [QUEUE], "agent_id": agent_id}
    job = await client.submit_job(
        QUEUE, {"docker": {"image": BASE_IMAGE}, "command": ["sh", "-c", TICKS]}
    )
    container = f"lp-{job['id']}-1"
    async with agent_process(server.url, token, work, **options, log_name="a.log") as first:
        await wait_for_line(client, job["id"], lambda line: line == "tick 5", timeout=60)
        await first.kill()
    assert docker.containers.get(container).status == "running"
    await wait_for_state(client, job["id"], ("queued",), timeout=30)

    async with agent_process(server.url, token, work, **options, log_name="b.log") as second:
        done = await wait_for_state(client, job["id"], timeout=60)
        await eventually(lambda: "outlived its lease" in second.log())
    lines = await log_lines(client, job["id"])
    assert (done["state"], done["attempt"]) == ("succeeded", 2), lines
    ticks = [line for line in lines if line.startswith("tick ")]
    assert ticks == [f"tick {i}" for i in range(len(ticks))], "each once, in order"
    assert len(ticks) > 30, "what it printed while its agent was down is shipped"
    assert lines[-1] == "second"
    assert not [c for c in docker.containers.list(all=True) if c.name == container]

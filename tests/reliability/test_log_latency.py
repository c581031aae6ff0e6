"""How soon a job's first output line can be read through the API (printed, loosely bounded).

The agent is a real ``launch-agent`` process; the figure is submit -> the
first line returned by a log long-poll, the path a user's ``launchplane logs
-f`` takes.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
from chaoskit import agent_process, agent_token, wait_for_state

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

QUEUE = "latency"
RUNS = int(os.environ.get("LATENCY_RUNS", "15"))


async def test_first_log_line_is_readable_soon_after_submit(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    await server.ensure_queue(QUEUE, {"resource": "local-process", "lease_ttl_seconds": 30})
    token = await agent_token(client, [QUEUE])
    figures: list[float] = []
    async with agent_process(
        server.url, token, tmp_path / "work", agent_id="latency", queues=[QUEUE]
    ):
        for n in range(RUNS + 1):
            started = time.perf_counter()
            job = await client.submit_job(QUEUE, {"command": ["echo", f"line {n}"]})
            page = await client.read_logs(job["id"], wait=10)
            elapsed = time.perf_counter() - started
            assert [line["line"] for line in page["lines"]][:1] == [f"line {n}"]
            await wait_for_state(client, job["id"])
            if n:  # the first run warms up the agent's plugins and connections
                figures.append(elapsed * 1000)
    figures.sort()
    median = statistics.median(figures)
    print(
        f"\nsubmit -> first log line readable: median {median:.1f} ms, "
        f"p90 {figures[int(len(figures) * 0.9)]:.1f} ms, min {figures[0]:.1f} ms ({RUNS} runs)"
    )
    assert median < 1000

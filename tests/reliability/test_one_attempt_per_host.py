"""Two attempts of one job never run at once on one host, even when a workload outlives its agent.

The ``detached-process`` test runner stands in for a container engine (its
workloads outlive their agent and ``attach`` finds them by run id; real
processes). An agent is SIGKILLed during attempt 1, which keeps running; it
comes back only after the lease expired, so the server re-queues the job and
the same agent claims attempt 2. Attempt 1's workload must be gone before
attempt 2's starts (attempt 2 itself looks for attempt 1's process):

* with its lease kept, the restarted agent stops it at start, and what it
  printed after its agent died is in the job's log once, in order, as
  attempt 1's late lines;
* without (an agent that kept none), the agent claiming attempt 2 stops it
  before launching, and says so in the job's log.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest
from chaoskit import (
    HERE,
    agent_process,
    agent_token,
    log_lines,
    pid_gone,
    pythonpath,
    subprocess_env,
    wait_for_line,
    wait_for_state,
)

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

TTL = 1.5


@pytest.mark.parametrize("kept_lease", [True, False], ids=["lease-kept", "no-lease"])
async def test_a_lost_agents_workload_is_stopped_before_the_next_attempt_starts_here(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path, kept_lease: bool
) -> None:
    queue = "detached-late"
    await server.ensure_queue(
        queue, {"resource": "detached-process", "lease_ttl_seconds": TTL, "max_attempts": 2}
    )
    token = await agent_token(client, [queue])
    runs = tmp_path / "runs"
    env = subprocess_env(PYTHONPATH=pythonpath(HERE), DETACHED_RUNNER_DIR=str(runs))
    options = {"agent_id": "box-9", "queues": [queue], "args": ["--plugins", "detached_runner"]}
    first_pid = f"{runs}/$LAUNCHPLANE_JOB_ID-1/pid"
    script = (
        'if [ "$LAUNCHPLANE_ATTEMPT" = 1 ]; then i=0; '
        "while :; do echo tick $i; i=$((i+1)); sleep 0.02; done; fi; "
        f'p=$(cat "{first_pid}"); '
        "if [ -d /proc/$p ] && ! grep -q '^State:.*Z' /proc/$p/status; "
        "then echo overlap; else echo alone; fi"
    )
    work = tmp_path / "work"

    async with agent_process(server.url, token, work, **options, env=env, log_name="a.log") as a:
        job = await client.submit_job(queue, {"command": ["sh", "-c", script]})
        await wait_for_line(client, job["id"], lambda line: line == "tick 5")
        await a.kill()
    workload = int((runs / f"{job['id']}-1" / "pid").read_text())
    try:
        assert not pid_gone(workload), "the detached workload outlives its agent"
        requeued = await wait_for_state(client, job["id"], ("queued",), timeout=20)
        assert requeued["attempt"] == 1
        if not kept_lease:
            (work / ".leases" / f"{job['id']}-1.json").unlink()

        async with agent_process(
            server.url, token, work, **options, env=env, log_name="b.log"
        ) as b:
            done = await wait_for_state(client, job["id"], timeout=60)
        lines = await log_lines(client, job["id"])
        assert (done["state"], done["attempt"]) == ("succeeded", 2), lines
        assert "alone" in lines and "overlap" not in lines, lines
        ticks = [line for line in lines if line.startswith("tick ")]
        assert ticks == [f"tick {i}" for i in range(len(ticks))], "each once, in order"
        assert lines.index(ticks[-1]) < lines.index("alone"), "attempt 1's lines come first"
        if kept_lease:
            assert len(ticks) > 20, "the lines printed while the agent was down are shipped"
            assert "attempt 1's detached-process workload outlived its lease" in b.log()
        else:
            assert "attempt 1's detached-process workload still runs" in b.log()
            said = "attempt 1's workload still ran on this host (its agent was lost); stopped it"
            assert any(line.startswith(said) for line in lines), lines
        assert pid_gone(workload)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(workload, signal.SIGKILL)

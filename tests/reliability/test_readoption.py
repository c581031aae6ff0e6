"""An agent killed with SIGKILL and started again with the same id takes back what it held.

* a run its runner can re-adopt (``Runner.attach``; here the ``detached-process``
  test runner, real processes found by run id) is watched to its end and
  completed under the same lease: attempt 1 succeeds, no line is logged twice;
* a run it cannot re-adopt (``local-process``) has its lease released at once,
  so the job runs again (attempt 2) without waiting for the lease to expire.

And a workload that vanishes under a living agent (killed from outside, as a
container on a lost node) is reported as an infrastructure failure, which the
queue's retry policy runs again.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from chaoskit import (
    HERE,
    agent_process,
    agent_token,
    agents_of,
    eventually,
    find_process,
    log_lines,
    pid_gone,
    pythonpath,
    subprocess_env,
    unique_seconds,
    wait_for_line,
    wait_for_state,
    wait_gone,
)

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

LONG_TTL = 30.0
"""Far longer than either test takes: nothing here may wait for a lease to expire."""


async def test_killed_agent_readopts_an_attachable_run_and_completes_it(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    queue = "detached"
    await server.ensure_queue(
        queue, {"resource": "detached-process", "lease_ttl_seconds": LONG_TTL}
    )
    token = await agent_token(client, [queue])
    runs = tmp_path / "runs"
    go = tmp_path / "go"
    env = subprocess_env(PYTHONPATH=pythonpath(HERE), DETACHED_RUNNER_DIR=str(runs))
    options = {
        "agent_id": "box-1",
        "queues": [queue],
        "args": ["--plugins", "detached_runner"],
        "env": env,
    }
    script = f"echo start; while [ ! -e {go} ]; do sleep 0.05; done; echo done"
    work = tmp_path / "work"

    async with agent_process(server.url, token, work, **options, log_name="first.log") as first:
        job = await client.submit_job(queue, {"command": ["sh", "-c", script]})
        run_id = f"{job['id']}-1"
        await wait_for_line(client, job["id"], lambda line: line == "start")

        async def start_recorded() -> bool:  # the agent noted that the server has "start"
            return (work / run_id / "logged-lines").exists()

        await eventually(start_recorded, 10, "the logged-lines count")
        await first.kill()
    workload = int((runs / run_id / "pid").read_text())
    assert not pid_gone(workload), "the detached workload outlives its agent"
    assert (await client.get_job(job["id"]))["state"] in ("resolving", "building", "running")

    async with agent_process(server.url, token, work, **options, log_name="second.log") as second:
        await second.wait_log(f"job {job['id']}: re-adopted")
        go.touch()
        done = await wait_for_state(client, job["id"], timeout=20)
        assert "releasing" not in second.log()

    assert (done["state"], done["attempt"], done["exit_code"]) == ("succeeded", 1, 0)
    assert agents_of(done) == ["box-1"], "claimed once, never re-queued"
    assert "queued" not in [event["state"] for event in done["events"][1:]]
    assert await log_lines(client, job["id"]) == ["start", "done"]
    record = await client.get_record(job["id"])
    assert (record["attempt"], record["result"]["state"]) == (1, "succeeded")
    assert await wait_gone(workload) >= 0


async def test_restarted_agent_releases_a_local_run_at_once(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    queue = "local"
    await server.ensure_queue(queue, {"resource": "local-process", "lease_ttl_seconds": LONG_TTL})
    token = await agent_token(client, [queue])
    # Attempt 1 prints until its agent is gone (then dies of SIGPIPE); attempt 2 finishes.
    script = (
        "echo attempt=$LAUNCHPLANE_ATTEMPT; "
        'if [ "$LAUNCHPLANE_ATTEMPT" = 1 ]; then while true; do echo tick; sleep 0.1; done; fi; '
        "echo done"
    )
    work = tmp_path / "work"
    options = {"agent_id": "box-2", "queues": [queue]}

    async with agent_process(server.url, token, work, **options, log_name="first.log") as first:
        # The shell's $0 finds its host pid ($$ would be a pid of its sandbox).
        marker = f"job-{unique_seconds(0)}"
        job = await client.submit_job(queue, {"command": ["sh", "-c", script, marker]})
        await wait_for_line(client, job["id"], lambda text: text.startswith("attempt=1"))
        first_pid = await find_process(marker, "sh")
        await first.kill()
    killed_at = time.monotonic()

    async with agent_process(server.url, token, work, **options, log_name="second.log") as second:
        await wait_for_line(client, job["id"], lambda text: text.startswith("attempt=2"))
        rerun_after = time.monotonic() - killed_at
        done = await wait_for_state(client, job["id"])
        assert "cannot be re-adopted, releasing it" in second.log()

    print(f"\nlocal run of a killed agent re-run {rerun_after:.2f} s after the kill (TTL 30 s)")
    assert rerun_after < LONG_TTL / 2, "released at once, not left to expire"
    assert (done["state"], done["attempt"]) == ("succeeded", 2)
    requeue = [e for e in done["events"] if e["state"] == "queued" and e["attempt"] == 1]
    assert requeue and "released by agent" in requeue[0]["reason"]
    assert await wait_gone(first_pid, timeout=5) >= 0, "attempt 1 dies at its next write"


async def test_a_vanished_workload_is_an_infrastructure_failure_and_is_retried(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    """A workload killed from outside (its node went away) is retried by the queue's policy."""
    queue = "detached-retry"
    config = {"resource": "detached-process", "lease_ttl_seconds": LONG_TTL}
    await server.ensure_queue(queue, {**config, "retry": {"max_attempts": 2}})
    token = await agent_token(client, [queue])
    runs = tmp_path / "runs"
    env = subprocess_env(PYTHONPATH=pythonpath(HERE), DETACHED_RUNNER_DIR=str(runs))
    script = 'echo attempt=$LAUNCHPLANE_ATTEMPT; [ "$LAUNCHPLANE_ATTEMPT" = 1 ] && exec sleep 60'
    async with agent_process(
        server.url,
        token,
        tmp_path / "work",
        agent_id="box-3",
        queues=[queue],
        args=["--plugins", "detached_runner"],
        env=env,
    ):
        job = await client.submit_job(queue, {"command": ["sh", "-c", script + "; echo ok"]})
        await wait_for_line(client, job["id"], lambda line: line == "attempt=1")
        os.killpg(int((runs / f"{job['id']}-1" / "pid").read_text()), signal.SIGKILL)
        done = await wait_for_state(client, job["id"], timeout=20)

    assert (done["state"], done["attempt"]) == ("succeeded", 2)
    failed = [e for e in done["events"] if e["attempt"] == 1 and e["state"] == "failed"]
    assert failed and (failed[0]["details"] or {}).get("infrastructure_failure") is True
    assert (await log_lines(client, job["id"]))[-1] == "ok"

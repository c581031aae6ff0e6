"""An agent that lacks a queue's runner or builder leaves the queue's jobs to one that has it."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from agentkit import QUEUE, agent_process
from kit import BIN, log_lines, running_agent, subprocess_env, wait_for_state

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

BLOCKED = (
    "not serving queue 'local': runner 'local-process' comes from plugin 'local-process', "
    "which is blocked (--plugins=no:local-process) "
    "(its jobs stay queued for an agent that can run them)"
)


async def test_a_blocked_runner_leaves_the_queue_to_an_agent_that_has_it(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await server.ensure_queue("containers", {"resource": "fake-container"})
    caplog.set_level(logging.INFO, logger="launchplane.agent")
    job = await client.submit_job(QUEUE, {"command": [sys.executable, "-c", "print('ran')"]})
    async with running_agent(
        server,
        tmp_path / "lacking",
        [QUEUE, "containers"],
        plugins=["no:local-process", "fake_container_plugin"],
    ):
        # It serves its other queue: that job is claimed (and fails there: it has no image).
        other = await client.submit_job("containers", {"entry_point": "train.py"})
        assert (await wait_for_state(client, other["id"]))["failure_stage"] == "build"
        assert (await client.get_job(job["id"]))["state"] == "queued"

    messages = [record.getMessage() for record in caplog.records]
    assert [m for m in messages if "not serving" in m] == [BLOCKED]
    assert any("serving queue(s) containers on" in m for m in messages)
    assert (await client.get_job(job["id"]))["state"] == "queued"

    async with running_agent(server, tmp_path / "able", [QUEUE]):
        done = await wait_for_state(client, job["id"])
    assert done["state"] == "succeeded"
    assert await log_lines(client, job["id"]) == ["ran"]


async def test_an_agent_with_no_servable_queue_exits_2_saying_why(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    await server.ensure_queue(QUEUE, {"resource": "slurm"})
    job = await client.submit_job(QUEUE, {"command": ["true"]})
    async with agent_process(server, tmp_path) as agent:
        with anyio.fail_after(20):
            code = await agent.wait()

    assert code == 2
    errors = [line for line in agent.log().splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: not serving queue 'local': unknown runner 'slurm'; available: docker, kubernetes, "
        "local-process, sagemaker (its jobs stay queued for an agent that can run them); "
        "no queue left to serve"
    ]
    assert (await client.get_job(job["id"]))["state"] == "queued"


def test_launchplane_run_still_fails_its_one_job_saying_why(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("command: [echo, hi]\n")
    (tmp_path / "queue.yaml").write_text("resource: slurm\n")
    done = subprocess.run(
        [str(BIN / "launchplane"), "run", "job.yaml", "--queue-config", "queue.yaml",
         "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path, env=subprocess_env(LAUNCHPLANE_HOME=str(tmp_path / "home")),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "failed: " in done.stderr and "unknown runner 'slurm'" in done.stderr
    assert "Traceback" not in done.stderr

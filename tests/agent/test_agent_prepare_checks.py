"""What the agent checks in ``prepare`` that only it can: the checked-out code, its plugins.

A real server and agent on loopback; git code from a local repository.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from agentkit import QUEUE, git_repo
from kit import log_lines, running_agent, wait_for_state

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio


async def test_unpinned_lines_of_the_checked_out_requirements_txt_are_warned_in_the_log(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    git_repo(repo)
    (repo / "requirements.txt").write_text("numpy==1.26.4\ntorch>=2\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "reqs"], check=True)
    await server.ensure_queue(QUEUE, {"resource": "local-process", "lease_ttl_seconds": 3})
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(
            QUEUE, {"git": {"repository": f"file://{repo}"}, "entry_point": "train.py"}
        )
        done = await wait_for_state(client, job["id"])
    assert done["state"] == "succeeded"
    lines = await log_lines(client, job["id"])
    warned = [line for line in lines if line.startswith("warning: requirements.txt")]
    assert len(warned) == 1 and warned[0].startswith("warning: requirements.txt:2: ")
    assert "torch>=2" in warned[0]


async def test_an_integration_no_loaded_plugin_implements_fails_the_job_in_prepare(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    await server.ensure_queue(
        QUEUE,
        {
            "resource": "local-process",
            "lease_ttl_seconds": 3,
            "integrations": {"wandb": {"mode": "offline"}},
        },
    )
    async with running_agent(server, tmp_path / "work", [QUEUE], plugins=["no:wandb-integration"]):
        job = await client.submit_job(QUEUE, {"command": ["echo", "ran without W&B"]})
        done = await wait_for_state(client, job["id"])
        record = await client.get_record(job["id"])
    assert done["state"] == "failed"
    assert record["result"]["failure_stage"] == "prepare"
    assert record["result"]["reason"].startswith("integrations.wandb: queue ")
    assert "ran without W&B" not in await log_lines(client, job["id"])

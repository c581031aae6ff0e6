"""Macros at launch, W&B's names included, in every runner's ``resource_args`` (issue 11).

A real server and an in-process agent whose runner (tests/agent/recording_runner_plugin.py)
is the local-process runner keeping the ``resource_args`` its ``submit`` received.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from kit import log_lines, running_agent, wait_for_state
from recording_runner_plugin import SUBMITTED

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

RECORDING = "recording"
PRINT_A = "import os; print(os.environ['A'])"


async def test_resource_args_expand_wandb_macros_and_the_queues_agent_references(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LP_TEST_AGENT_VALUE", "from-the-agent")
    monkeypatch.delenv("LP_TEST_NOT_IN_AGENT", raising=False)
    await server.ensure_queue(
        RECORDING,
        {
            "resource": "recording-local",
            "env": {"A": "{{a}}{{b}}"},
            "template_variables": {"a": {"default": "x"}, "b": {"default": "y"}},
            "resource_args": {
                "recording-local": {"timeout_seconds": 60},
                "kubernetes": {
                    "metadata": {
                        "name": "${project_name}-${run_name}",
                        "annotations": {
                            "author": "${author}",
                            "entity": "${entity_name}",
                            "run": "${run_id}",
                            "job": "${job_id}",
                            "image": "[${image_uri}]",
                            "agent": "${LP_TEST_AGENT_VALUE}",
                            "shell": "echo ${LP_TEST_NOT_IN_AGENT}",
                            "escaped": "$${LP_TEST_AGENT_VALUE}",
                        },
                    }
                },
            },
        },
    )
    # A W&B launch spec, as launch_add(config=...) sends it.
    spec = {
        "entity": "ent",
        "project": "proj",
        "name": "my-run",
        "author": "alice",
        "resource": None,
        "overrides": {"entry_point": [sys.executable, "-c", PRINT_A]},
        "resource_args": {"kubernetes": {"metadata": {"labels": {"who": "${author}"}}}},
    }
    async with running_agent(
        server, tmp_path / "work", [RECORDING], plugins=["recording_runner_plugin"]
    ):
        job = await client.submit_job(
            RECORDING, spec, template_variables={"a": "$", "b": "{LP_TEST_AGENT_VALUE}"}
        )
        done = await wait_for_state(client, job["id"])

    assert done["state"] == "succeeded", done["reason"]
    run_id = f"{job['id']}-1"
    submitted = json.loads((tmp_path / "work" / run_id / SUBMITTED).read_text())
    assert submitted["recording-local"] == {"timeout_seconds": 60}
    assert submitted["kubernetes"]["metadata"] == {
        "name": "proj-my-run",
        "labels": {"who": "alice"},
        "annotations": {
            "author": "alice",
            "entity": "ent",
            "run": run_id,
            "job": job["id"],
            "image": "[]",  # no image on a local-process runner
            "agent": "from-the-agent",  # the admin's reference: the queue config may
            "shell": "echo ${LP_TEST_NOT_IN_AGENT}",  # not the agent's: left for the container
            "escaped": "${LP_TEST_AGENT_VALUE}",
        },
    }
    # Two template values that spell an agent reference together reach the job as text.
    assert await log_lines(client, job["id"]) == ["${LP_TEST_AGENT_VALUE}"]


async def test_macros_a_job_lacks_expand_to_nothing(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    await server.ensure_queue(
        RECORDING,
        {
            "resource": "recording-local",
            "resource_args": {"sagemaker": {"TrainingJobName": "${project_name}${author}-x"}},
        },
    )
    async with running_agent(
        server, tmp_path / "work", [RECORDING], plugins=["recording_runner_plugin"]
    ):
        job = await client.submit_job(RECORDING, {"command": [sys.executable, "-c", "pass"]})
        done = await wait_for_state(client, job["id"])

    assert done["state"] == "succeeded", done["reason"]
    submitted = json.loads((tmp_path / "work" / f"{job['id']}-1" / SUBMITTED).read_text())
    assert submitted["sagemaker"] == {"TrainingJobName": "-x"}

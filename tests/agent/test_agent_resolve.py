"""The agent's resolve stage: the server's resolved job, checked with the agent's runner model.

The server resolves a job once, at submit, and checks ``resource_args`` with
the runner's model only when it has that runner installed. The agent, which
runs the job, checks them with its runner's model, with the same paths and
hints a submitter gets at submit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from agentkit import QUEUE
from kit import running_agent, wait_for_state

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

STRICT = "strict"


async def test_the_agent_checks_resource_args_with_its_runners_model(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    await server.ensure_queue(STRICT, {"resource": "strict-runner"})
    typo = await client.submit_job(STRICT, {"resource_args": {"strict-runner": {"gpuz": 2}}})
    fine = await client.submit_job(STRICT, {"resource_args": {"strict-runner": {"gpus": 2}}})
    async with running_agent(server, tmp_path / "work", [STRICT], plugins=["strict_runner_plugin"]):
        refused = await wait_for_state(client, typo["id"])
        ran = await wait_for_state(client, fine["id"])

    assert (refused["state"], refused["failure_stage"]) == ("failed", "resolve")
    assert refused["reason"] == (
        f"the job does not resolve against queue '{STRICT}' (version 1): "
        "resource_args.strict-runner.gpuz: unknown key (did you mean 'gpus'?)"
    )
    # A job the model accepts goes on to the runner, with the resolved job as stored.
    assert ran["failure_stage"] == "run", ran["reason"]
    assert "submitted with {'gpus': 2}" in ran["reason"]


async def test_a_lease_this_agent_cannot_read_fails_its_job_instead_of_holding_it(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    # As a newer server might store it: a field this agent's ResolvedJob does not know.
    queue = await server.state.store.get_queue(QUEUE)
    job, _ = await server.state.store.submit_job(
        queue=QUEUE,
        queue_version=queue.version,
        spec={},
        overrides=[],
        template_variables={},
        resolved={"command": ["true"], "gang_schedule": {"size": 4}},
    )
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        failed = await wait_for_state(client, job.id)
    assert (failed["state"], failed["failure_stage"]) == ("failed", "resolve")
    assert failed["reason"].startswith(
        "this agent cannot read the lease the server sent: "
        "resolved.gang_schedule: unknown key (the agent runs launchplane "
    )

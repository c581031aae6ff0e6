"""A job is resolved once, at submit: the agent launches exactly what the server stored.

On both backends, with a real server and a real (in-process) agent. The
lease carries the stored resolved job and the queue version it was resolved
with; the run record's ``spec`` is the job the agent launched.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from kit import QUEUE, claim_now, log_lines, running_agent, wait_for_state

from launchplane.core.client import LaunchplaneClient
from launchplane.core.lease import Lease
from launchplane.plugins.artifacts.file import FileArtifactStore, FileStoreOptions
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-resolved-once-value"
PRINT_STAGE = "import os; print('stage=' + os.environ['STAGE'])"


def digest(document: Any) -> str:
    """sha256 of the canonical JSON of ``document``."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def test_the_agent_launches_the_resolved_job_byte_for_byte(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    agent: LaunchplaneClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LP_RESOLVED_ONCE_TOKEN", SECRET)
    store = tmp_path / "artifacts"  # the job's input artifact is real: the agent fetches it
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "rows.csv").write_text("a,b\n1,2\n")
    await FileArtifactStore(FileStoreOptions(root=store)).upload(tmp_path / "dataset", "dataset")
    await server.ensure_queue(
        QUEUE,
        {
            "resource": "local-process",
            "lease_ttl_seconds": 5,
            "env": {"FROM_QUEUE": "queue", "RUN_LABEL": "r-${run_id}", "INHERITED": None},
            "secrets": {"TOKEN": "env:LP_RESOLVED_ONCE_TOKEN"},
            "hyperparameters": {"lr": "{{lr}}", "schedule": {"warmup": 100}},
            "template_variables": {"lr": {"type": "float", "min": 0, "max": 1, "default": 0.1}},
            "resource_args": {"local-process": {"timeout_seconds": 120}},
            "artifact_store": {"type": "file", "options": {"root": str(store)}},
        },
    )
    submitted = await client.submit_job(
        QUEUE,
        {
            "name": "bytes",
            "command": [sys.executable, "-c", "print('ran')"],
            "hyperparameters": {"epochs": 2, "ratio": 1 / 3, "schedule": {"decay": 0.5}},
            "input_artifacts": ["dataset:latest"],
            "env": {"FROM_JOB": "ünïcode ✓"},
        },
        overrides=[{"env": {"FROM_OVERRIDE": "1"}, "hyperparameters": {"epochs": 3}}],
        template_variables={"lr": 0.25},
    )
    stored = (await client.get_job(submitted["id"]))["resolved"]  # admin: secret refs shown
    assert stored["hyperparameters"] == {
        "lr": 0.25,
        "schedule": {"warmup": 100, "decay": 0.5},
        "epochs": 3,
        "ratio": 1 / 3,
    }
    assert stored["secrets"] == {"TOKEN": "env:LP_RESOLVED_ONCE_TOKEN"}

    # The claim answer, as sent, and as the agent's typed Lease reads it.
    async with httpx.AsyncClient(base_url=server.url + "/api/v1") as http:
        answer = (
            await http.post(
                f"/queues/{QUEUE}/claim",
                params={"wait": 5},
                json={"agent_id": "byte-checker"},
                headers={"Authorization": f"Bearer {agent.token}"},
            )
        ).json()
    assert answer["job_id"] == submitted["id"]
    assert digest(answer["resolved"]) == digest(stored)
    lease = Lease.model_validate(answer)
    assert digest(lease.resolved.model_dump(mode="json")) == digest(stored)
    await agent.release(lease.lease_id, "handing it to the real agent")

    async with running_agent(server, tmp_path / "work", [QUEUE]):
        done = await wait_for_state(client, submitted["id"])
    assert (done["state"], done["attempt"]) == ("succeeded", 2), done["events"]
    record = await client.get_record(submitted["id"])
    assert digest(record["spec"]) == digest(stored)
    assert record["queue"] == {"name": QUEUE, "version": submitted["queue_version"]}
    assert SECRET not in json.dumps(record)
    assert record["artifacts"]["inputs"][0]["version"] == "v0"


async def test_a_queued_job_keeps_the_queue_version_it_was_resolved_with(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    agent: LaunchplaneClient,
    tmp_path: Path,
) -> None:
    command = {"command": [sys.executable, "-c", PRINT_STAGE]}
    before = await server.ensure_queue(
        QUEUE, {"resource": "local-process", "lease_ttl_seconds": 5, "env": {"STAGE": "v1"}}
    )
    old = await client.submit_job(QUEUE, command)
    after = await server.ensure_queue(
        QUEUE, {"resource": "local-process", "lease_ttl_seconds": 5, "env": {"STAGE": "v2"}}
    )
    new = await client.submit_job(QUEUE, command)
    assert (old["queue_version"], new["queue_version"]) == (before.version, after.version)
    assert before.version < after.version

    lease = await claim_now(agent)
    assert (lease.job_id, lease.queue_version) == (old["id"], before.version)
    assert lease.resolved.env == {"STAGE": "v1"}
    # A re-queued attempt keeps its version too.
    await agent.release(lease.lease_id, "re-queue it across the update")

    async with running_agent(server, tmp_path / "work", [QUEUE]):
        old_done = await wait_for_state(client, old["id"])
        new_done = await wait_for_state(client, new["id"])
    assert (old_done["state"], old_done["attempt"]) == ("succeeded", 2), old_done["events"]
    assert new_done["state"] == "succeeded", new_done["events"]

    old_record = await client.get_record(old["id"])
    assert old_record["queue"] == {"name": QUEUE, "version": before.version}
    assert old_record["spec"]["env"] == {"STAGE": "v1"}
    assert await log_lines(client, old["id"]) == ["stage=v1"]
    new_record = await client.get_record(new["id"])
    assert new_record["queue"] == {"name": QUEUE, "version": after.version}
    assert new_record["spec"]["env"] == {"STAGE": "v2"}
    assert await log_lines(client, new["id"]) == ["stage=v2"]

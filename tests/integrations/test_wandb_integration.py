"""The W&B integration end to end: a real server, a real agent, the real wandb SDK offline.

A job on a queue with ``integrations.wandb`` runs an unmodified ``wandb.init()``
in the local-process runner's sandbox and sees the hyperparameters as its
config, launchplane's run id as its id, and the queue's project and entity;
the record lists the offline run directory. wandb starts slowly (seconds), so
one job runs wandb; the others only print their environment.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from kit import log_lines, running_agent, wait_for_state

from launchplane.core.client import LaunchplaneClient, ValidationFailed
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

QUEUE = "wandb"
TRAIN = """\
import json, wandb
run = wandb.init()
print("RESULT " + json.dumps({
    "config": dict(run.config), "id": run.id, "project": run.project, "entity": run.entity,
}))
run.finish()
"""
PRINT_WANDB_ENV = (
    "import json, os; print('RESULT ' + json.dumps("
    "{k: v for k, v in os.environ.items() if k.startswith('WANDB_')}))"
)
HYPERPARAMETERS = {"lr": 0.01, "layers": [64, 32], "optimizer": {"name": "adam", "beta": 0.9}}
WANDB_OPTIONS = {"project": "lp-mnist", "entity": "lp-team", "mode": "offline"}


async def run_job(
    server: EmbeddedServer, tmp_path: Path, queue: dict[str, Any], job: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Run ``job`` on a fresh queue: (the finished job, its record, its RESULT line)."""
    await server.ensure_queue(QUEUE, {"resource": "local-process", "lease_ttl_seconds": 3, **queue})
    async with (
        LaunchplaneClient(server.url, server.admin_token) as client,
        running_agent(server, tmp_path / "work", [QUEUE]),
    ):
        submitted = await client.submit_job(QUEUE, job)
        done = await wait_for_state(client, submitted["id"], timeout=120)
        record = await client.get_record(submitted["id"])
        lines = await log_lines(client, submitted["id"])
    results = [line.removeprefix("RESULT ") for line in lines if line.startswith("RESULT ")]
    assert done["state"] == "succeeded", lines
    assert len(results) == 1, lines
    return done, record, json.loads(results[0])


async def test_wandb_init_sees_the_jobs_config_run_id_and_project_offline(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    job, record, seen = await run_job(
        server,
        tmp_path,
        {"integrations": {"wandb": WANDB_OPTIONS}},
        {"command": [sys.executable, "-c", TRAIN], "hyperparameters": HYPERPARAMETERS},
    )

    run_id = f"{job['id']}-1"
    assert seen == {
        "config": HYPERPARAMETERS,
        "id": run_id,
        "project": "lp-mnist",
        "entity": "lp-team",
    }
    facts = record["integrations"]["wandb"]
    assert facts["run_id"] == run_id
    assert (facts["project"], facts["entity"], facts["mode"]) == ("lp-mnist", "lp-team", "offline")
    [offline] = facts["offline_run_dirs"]
    assert offline.startswith("output/wandb/offline-run-") and offline.endswith(f"-{run_id}")
    run_dir = tmp_path / "work" / run_id
    assert (run_dir / offline).is_dir()
    assert list((run_dir / offline).glob("run-*.wandb")), "no W&B run file offline"


async def test_the_jobs_fields_win_over_the_options_and_reach_wandb_as_wandb_sets_them(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    big = {"blob": "x" * 40_000}  # over W&B's 32670: split into WANDB_CONFIG_0..n
    job, _, env = await run_job(
        server,
        tmp_path,
        {"integrations": {"wandb": WANDB_OPTIONS}},
        {
            "command": [sys.executable, "-c", PRINT_WANDB_ENV],
            "hyperparameters": big,
            "project": "own-project",
            "name": "first-try",
            "author": "ada",
            "env": {
                "WANDB_RUN_ID": "not-this",
                "WANDB_BASE_URL": "https://collector.example.com",
                "WANDB_TAGS": "kept",
            },
            "input_artifacts": [
                {"name": "wandb-artifact://acme/data/images:v3", "slot": "train-images"},
            ],
        },
    )

    assert env["WANDB_PROJECT"] == "own-project"
    assert env["WANDB_ENTITY"] == "lp-team"
    assert env["WANDB_RUN_ID"] == f"{job['id']}-1"  # the integration's value wins, as in W&B
    assert env["WANDB_TAGS"] == "kept"
    assert (env["WANDB_NAME"], env["WANDB_USERNAME"]) == ("first-try", "ada")
    assert env["WANDB_LAUNCH"] == "True"
    assert env["WANDB_LAUNCH_QUEUE_NAME"] == QUEUE
    assert "WANDB_BASE_URL" not in env  # the submitter's is removed: the SDK's default
    assert json.loads(env["WANDB_ARTIFACTS"]) == {"train-images": "acme/data/images:v3"}
    assert "WANDB_CONFIG" not in env and "WANDB_API_KEY" not in env
    chunks = [env[f"WANDB_CONFIG_{i}"] for i in range(len(env)) if f"WANDB_CONFIG_{i}" in env]
    assert len(chunks) == 2 and json.loads("".join(chunks)) == big


async def test_a_queue_without_the_integration_gives_no_wandb_variables(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    _, record, env = await run_job(
        server,
        tmp_path,
        {},
        {"command": [sys.executable, "-c", PRINT_WANDB_ENV], "hyperparameters": {"lr": 1}},
    )
    assert env == {}
    assert "wandb" not in record.get("integrations", {})


async def test_an_api_key_in_plain_env_is_refused_before_the_job_runs(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    await server.ensure_queue(
        QUEUE, {"resource": "local-process", "integrations": {"wandb": {"mode": "offline"}}}
    )
    async with (
        LaunchplaneClient(server.url, server.admin_token) as client,
        running_agent(server, tmp_path / "work", [QUEUE]),
    ):
        job = await client.submit_job(
            QUEUE, {"command": ["true"], "env": {"WANDB_API_KEY": "plain-text-key"}}
        )
        done = await wait_for_state(client, job["id"])
    assert done["state"] == "failed"
    assert "WANDB_API_KEY is set in env:" in done["reason"]
    assert "secrets:" in done["reason"] and "plain-text-key" not in done["reason"]


@pytest.mark.parametrize(
    ("integrations", "path", "words"),
    [
        ({"wandb": {"mode": "onlin"}}, "integrations.wandb.mode", "offline"),
        ({"wandb": {"projct": "x"}}, "integrations.wandb.projct", "project"),
        ({"wandb": {"base_url": "api.wandb.ai"}}, "integrations.wandb.base_url", "https://"),
        ({"wandbb": {}}, "integrations.wandbb", "did you mean 'wandb'"),
    ],
)
async def test_bad_integration_options_are_refused_when_the_queue_is_created(
    server: EmbeddedServer, integrations: dict[str, Any], path: str, words: str
) -> None:
    async with LaunchplaneClient(server.url, server.admin_token) as admin:
        with pytest.raises(ValidationFailed) as caught:
            await admin.create_queue(
                "bad-wandb", {"resource": "local-process", "integrations": integrations}
            )
    errors = caught.value.errors
    assert any(e["path"] == path and words in e["message"] for e in errors), errors

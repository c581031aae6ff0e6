"""The W&B integration's hook on its own: the variables for each kind of job, and its refusals.

The hook is called as the agent calls it, with a real ``ResolvedJob`` and
``JobContext``; chunked configs are read back with the wandb SDK's own reader.
The end-to-end runs (a real agent, ``wandb.init()`` in the sandbox) are in
test_wandb_integration.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from launchplane.core.interfaces import JobContext, PluginError
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.integrations import wandb as integration


def prepare(
    tmp_path: Path, job: dict[str, Any], *, attempt: int = 1, **ctx_fields: Any
) -> JobContext:
    resolved = ResolvedJob.model_validate({"command": ["true"], **job})
    output = tmp_path / "output"
    ctx = JobContext(
        job_id="j-0123456789abcdef",
        run_id=f"j-0123456789abcdef-{attempt}",
        attempt=attempt,
        queue="gpu",
        workdir=tmp_path,
        **ctx_fields,
    )
    ctx.env = {"LAUNCHPLANE_OUTPUT_DIR": str(output), **ctx.env}
    integration.launchplane_prepare_job(job=resolved, ctx=ctx)
    return ctx


def test_sagemaker_jobs_get_w_and_bs_512_character_chunks_that_the_sdk_reads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = pytest.importorskip("wandb.sdk.launch.utils")
    hyperparameters = {"layers": list(range(300)), "name": "résumé"}
    ctx = prepare(
        tmp_path,
        {
            "resource": "sagemaker",
            "hyperparameters": hyperparameters,
            "integrations": {"wandb": {}},
        },
    )
    chunks = sorted(name for name in ctx.env if name.startswith("WANDB_CONFIG_"))
    assert "WANDB_CONFIG" not in ctx.env and len(chunks) > 1
    assert all(len(ctx.env[name]) <= 512 for name in chunks)
    for name in chunks:
        monkeypatch.setenv(name, ctx.env[name])
    monkeypatch.delenv("WANDB_CONFIG", raising=False)
    assert dict(sdk.load_wandb_config()) == hyperparameters
    assert "WANDB_DIR" not in ctx.env  # only the local-process job sees the host's paths


def test_a_pinned_wandb_run_id_resumes_from_the_second_attempt(tmp_path: Path) -> None:
    job = {"wandb_run_id": "abc123", "integrations": {"wandb": {}}}
    first = prepare(tmp_path, job)
    again = prepare(tmp_path, job, attempt=2)
    assert first.env["WANDB_RUN_ID"] == again.env["WANDB_RUN_ID"] == "abc123"
    assert "WANDB_RESUME" not in first.env and again.env["WANDB_RESUME"] == "allow"
    unpinned = prepare(tmp_path, {"integrations": {"wandb": {}}}, attempt=2)
    assert unpinned.env["WANDB_RUN_ID"] == "j-0123456789abcdef-2"
    assert "WANDB_RESUME" not in unpinned.env


def test_the_declared_image_and_wandb_artifacts_by_slot_or_name(tmp_path: Path) -> None:
    ctx = prepare(
        tmp_path,
        {
            "resource": "docker",
            "docker": {"image": "acme/train:1"},
            "input_artifacts": [
                "wandb-artifact://acme/mnist/images:v1",
                {"name": "wandb-artifact://acme/mnist/labels", "slot": "y"},
                {"name": "acme/mnist/masks:v4", "slot": "masks"},  # overrides.artifacts
                "local-data:latest",
            ],
            "integrations": {"wandb": {"base_url": "https://wandb.example.com/"}},
        },
    )
    assert ctx.env["WANDB_DOCKER"] == "acme/train:1"
    assert json.loads(ctx.env["WANDB_ARTIFACTS"]) == {
        "images": "acme/mnist/images:v1",
        "y": "acme/mnist/labels:latest",
        "masks": "acme/mnist/masks:v4",
    }
    assert ctx.env["WANDB_BASE_URL"] == "https://wandb.example.com"
    assert ctx.env["WANDB_CONFIG"] == "{}" and ctx.env["WANDB_LAUNCH"] == "True"


def test_an_env_config_is_replaced_by_the_hyperparameters(tmp_path: Path) -> None:
    ctx = prepare(
        tmp_path,
        {"hyperparameters": {"lr": 1}, "integrations": {"wandb": {}}},
        env={"WANDB_CONFIG_0": '{"lr":', "WANDB_CONFIG_1": " 2}", "WANDB_TAGS": "a,b"},
    )
    assert ctx.env["WANDB_CONFIG"] == '{"lr": 1}'
    assert "WANDB_CONFIG_0" not in ctx.env and "WANDB_CONFIG_1" not in ctx.env
    assert ctx.env["WANDB_TAGS"] == "a,b"


def test_online_mode_needs_the_key_as_a_secret(tmp_path: Path) -> None:
    online = {"integrations": {"wandb": {"mode": "online"}}}
    with pytest.raises(PluginError, match=r"mode: online needs WANDB_API_KEY; give it as a queue"):
        prepare(tmp_path, online)
    ctx = prepare(
        tmp_path, online, env={"WANDB_API_KEY": "k" * 40}, secret_names=frozenset({"WANDB_API_KEY"})
    )
    assert ctx.env["WANDB_API_KEY"] == "k" * 40 and ctx.env["WANDB_MODE"] == "online"
    native = prepare(tmp_path, online, native_secrets={"WANDB_API_KEY": {"secretKeyRef": {}}})
    assert "WANDB_API_KEY" not in native.env


def test_options_the_queue_check_never_saw_fail_the_job_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"integrations\.wandb\.mode"):
        prepare(tmp_path, {"integrations": {"wandb": {"mode": "loud"}}})


def test_a_run_that_wrote_no_wandb_files_has_an_empty_list(tmp_path: Path) -> None:
    ctx = prepare(tmp_path, {"project": "p", "integrations": {"wandb": {}}})
    facts = ctx.record_facts["wandb"]()
    assert facts == {
        "run_id": "j-0123456789abcdef-1",
        "project": "p",
        "entity": None,
        "mode": None,
        "base_url": None,
        "offline_run_dirs": [],
    }


def test_a_job_of_a_queue_without_the_integration_is_left_alone(tmp_path: Path) -> None:
    ctx = prepare(tmp_path, {"project": "p", "hyperparameters": {"lr": 1}})
    assert not [name for name in ctx.env if name.startswith("WANDB_")]
    assert ctx.record_facts == {}

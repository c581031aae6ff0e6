"""A downloaded W&B job (wandb-job.json, requirements.frozen.txt, diff.patch) as a job layer.

The job documents are W&B's own shapes: the ``wandb-job.json`` its job builder
writes (wandb core/pkg/launch/job_builder.go: ``_version``, ``source_type``,
``source.{git,artifact,image,entrypoint,notebook}``, ``input_types``,
``output_types``, ``runtime``), and those of W&B's tests
(tests/unit_tests/test_launch/test_job.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from launchplane.core.config import load_job_file, resolve_job, resolve_local_workdir
from launchplane.core.config.wandb_job import (
    is_job_path,
    is_wandb_job_name,
    job_layer,
    load_wandb_job,
    read_wandb_job,
    with_wandb_job,
)
from launchplane.core.errors import ConfigError
from launchplane.core.spec import JobSpec

COMMIT = "5d1e6a8f0c3b2a9e4f7d6c5b4a3928170e6f5d4c"
PATCH = """diff --git a/train.py b/train.py
index 1111111..2222222 100644
--- a/train.py
+++ b/train.py
@@ -1 +1 @@
-print('v1')
+print('patched')
"""
FROZEN = "# pip freeze\nnumpy==1.26.4\n\nwandb==0.17.0\n"
INPUT_TYPES = {
    "wb_type": "typedDict",
    "params": {
        "type_map": {
            "lr": {"wb_type": "number"},
            "epochs": {"wb_type": "number"},
            "optimizer": {"wb_type": "string"},
            "schedule": {
                "wb_type": "typedDict",
                "params": {"type_map": {"warmup": {"wb_type": "boolean"}}},
            },
            "seed": {
                "wb_type": "union",
                "params": {"allowed_types": [{"wb_type": "number"}, {"wb_type": "none"}]},
            },
        }
    },
}


def repo_job(**source: Any) -> dict[str, Any]:
    """A repo job as W&B's job builder writes it for a run of ``python train.py``."""
    return {
        "_version": "v0",
        "source_type": "repo",
        "source": {
            "git": {"remote": "https://github.com/acme/train.git", "commit": COMMIT},
            "entrypoint": ["python3.10", "train.py"],
            "notebook": False,
            **source,
        },
        "input_types": INPUT_TYPES,
        "output_types": {"wb_type": "typedDict", "params": {"type_map": {}}},
        "runtime": "3.10.12",
    }


def write_job(
    directory: Path,
    info: dict[str, Any],
    *,
    requirements: str | None = FROZEN,
    patch: str | None = PATCH,
) -> Path:
    """A job directory in the layout ``wandb artifact get`` downloads."""
    directory.mkdir(parents=True)
    (directory / "wandb-job.json").write_text(json.dumps(info))
    if requirements is not None:
        (directory / "requirements.frozen.txt").write_text(requirements)
    if patch is not None:
        (directory / "diff.patch").write_text(patch)
    return directory


def test_repo_job_clones_the_commit_applies_the_patch_and_pins_requirements(
    tmp_path: Path,
) -> None:
    layer = load_wandb_job(write_job(tmp_path / "job-acme-train:v3", repo_job()))

    assert layer == {
        "job": "job-acme-train:v3",
        "git": {
            "repository": "https://github.com/acme/train.git",
            "commit": COMMIT,
            "patch": PATCH,
        },
        "entry_point": ["train.py"],  # run with the runner's Python, not python3.10
        "requirements": ["numpy==1.26.4", "wandb==0.17.0"],
    }
    JobSpec.model_validate(layer)  # launchplane's own spelling, valid as a job


def test_the_job_file_itself_may_be_given(tmp_path: Path) -> None:
    directory = write_job(tmp_path / "my-job", repo_job(), patch=None)
    layer = load_wandb_job(directory / "wandb-job.json")
    assert layer["job"] == "my-job"
    assert "patch" not in layer["git"]


def test_an_empty_patch_is_no_patch(tmp_path: Path) -> None:
    # W&B writes diff.patch for a clean work tree too; git apply refuses an empty one.
    layer = load_wandb_job(write_job(tmp_path / "j", repo_job(), patch="\n"))
    assert "patch" not in layer["git"]


def test_image_job_runs_the_image(tmp_path: Path) -> None:
    info = {
        "_version": "v0",
        "source_type": "image",
        "source": {"image": "ghcr.io/acme/train:1.2"},
        "input_types": INPUT_TYPES,
        "output_types": {},
    }
    layer = load_wandb_job(write_job(tmp_path / "img", info, patch=None))
    assert layer == {"job": "img", "docker": {"image": "ghcr.io/acme/train:1.2"}}


def test_job_made_with_dockerfile_build_context_and_base_image(tmp_path: Path) -> None:
    info = repo_job(
        entrypoint=["python", "src/train.py", "--fast"],
        dockerfile="Dockerfile.train",
        build_context="ml/",
        base_image="nvcr.io/nvidia/pytorch:24.01-py3",
    )
    layer = job_layer(info, source="x")
    assert layer.layer["entry_point"] == ["src/train.py", "--fast"]
    assert layer.layer["docker"] == {"dockerfile": "Dockerfile.train"}
    assert layer.layer["workdir"] == "ml/"
    assert layer.layer["builder"] == {"base_image": "nvcr.io/nvidia/pytorch:24.01-py3"}


@pytest.mark.parametrize(
    ("entrypoint", "expected"),
    [
        (["python3.10", "train.py"], ["train.py"]),
        (["python", "train.py", "--lr", "1"], ["train.py", "--lr", "1"]),
        (["/usr/bin/python3", "a/b.py"], ["a/b.py"]),
        (["bash", "run.sh"], ["bash", "run.sh"]),
        (["python", "-m", "pkg.train"], ["python", "-m", "pkg.train"]),
        ("python train.py", ["train.py"]),  # wandb job create's --entry-point string
    ],
)
def test_entry_points(entrypoint: Any, expected: list[str]) -> None:
    assert job_layer(repo_job(entrypoint=entrypoint), source="x").layer["entry_point"] == expected


def test_artifact_job_needs_its_code_given(tmp_path: Path) -> None:
    info = {
        "_version": "v0",
        "source_type": "artifact",
        "source": {
            "artifact": "wandb-artifact://_id/QXJ0aWZhY3Q6MQ==",
            "entrypoint": ["python3", "train.py"],
        },
        "input_types": INPUT_TYPES,
        "output_types": {},
    }
    directory = write_job(tmp_path / "jobs" / "code-job", info, patch=None)
    with pytest.raises(ConfigError) as refused:
        load_wandb_job(directory)
    message = str(refused.value)
    assert "source.artifact" in message and "wandb-artifact://_id/QXJ0aWZhY3Q6MQ==" in message
    assert "workdir:" in message

    job_file = tmp_path / "job.yaml"
    job_file.write_text("job: ./jobs/code-job/\n")
    with pytest.raises(ConfigError) as refused:
        load_job_file(job_file)
    assert refused.value.source == str(job_file) and refused.value.errors[0].path == "job"
    assert "source.artifact: " in str(refused.value) and "workdir:" in str(refused.value)

    code = tmp_path / "code"
    code.mkdir()
    job_file.write_text("job: ./jobs/code-job/\nworkdir: ./code\n")
    layer = resolve_local_workdir(load_job_file(job_file), job_file)
    assert layer["workdir"] == str(code)
    assert layer["entry_point"] == ["train.py"]
    assert layer["requirements"] == ["numpy==1.26.4", "wandb==0.17.0"]
    assert layer["artifact"] == "wandb-artifact://_id/QXJ0aWZhY3Q6MQ=="


def test_notebook_job_is_refused_with_the_fix() -> None:
    info = repo_job(notebook=True, entrypoint=["python3.10", "explore.ipynb"])
    with pytest.raises(ConfigError) as refused:
        job_layer(info, source="nb")
    assert "source.notebook" in str(refused.value) and "nbconvert" in str(refused.value)


def test_malformed_jobs_name_the_wandb_key() -> None:
    with pytest.raises(ConfigError) as refused:
        job_layer({"source_type": "repo", "source": {"git": {"remote": "x"}}}, source="j")
    assert "source.git.commit" in str(refused.value)
    with pytest.raises(ConfigError) as refused:
        job_layer({"source_type": "Image", "source": {}}, source="j")
    assert "source_type" in str(refused.value) and "'image'" in str(refused.value)
    with pytest.raises(ConfigError) as refused:
        job_layer({"source_type": "image", "source": {}}, source="j")
    assert "source.image" in str(refused.value)


def test_not_a_job_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no wandb-job\.json"):
        load_wandb_job(tmp_path)
    with pytest.raises(ConfigError, match="no such directory"):
        load_wandb_job(tmp_path / "missing")
    (tmp_path / "wandb-job.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        load_wandb_job(tmp_path)


def test_job_file_names_a_job_directory_relative_to_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_job(tmp_path / "project" / "artifacts" / "train-job", repo_job())
    job_file = tmp_path / "project" / "launch" / "job.yaml"
    job_file.parent.mkdir()
    job_file.write_text(
        "job: ../artifacts/train-job/\n"
        "entry_point: [train.py, --fast]\n"
        "hyperparameters: {lr: 0.01, schedule: {warmup: true}}\n"
    )
    monkeypatch.chdir(tmp_path)  # not the file's directory

    layer = load_job_file(job_file)

    assert layer["job"] == "train-job"
    assert layer["git"]["commit"] == COMMIT and layer["git"]["patch"] == PATCH
    assert layer["entry_point"] == ["train.py", "--fast"]  # the file's own keys win
    assert layer["hyperparameters"] == {"lr": 0.01, "schedule": {"warmup": True}}
    resolved = resolve_job({"resource": "local-process"}, layer, queue_name="q")
    assert resolved.git is not None and resolved.git.patch == PATCH
    assert resolved.requirements == ["numpy==1.26.4", "wandb==0.17.0"]


def test_a_base_config_names_the_job_relative_to_the_base(tmp_path: Path) -> None:
    write_job(tmp_path / "base" / "job", repo_job())
    (tmp_path / "base" / "base.yaml").write_text("job: ./job/\n")
    child = tmp_path / "child.yaml"
    child.write_text("base_config: base/base.yaml\nargs: [--epochs, '3']\n")
    layer = load_job_file(child)
    assert layer["job"] == "job" and layer["args"] == ["--epochs", "3"]
    assert layer["git"]["repository"] == "https://github.com/acme/train.git"


def test_hyperparameters_are_checked_against_input_types(tmp_path: Path) -> None:
    write_job(tmp_path / "j", repo_job())
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        "job: ./j/\nhyperparameters: {lr: '3e-4', optimiser: adam, seed: x,"
        " schedule: {warmup: 1}}\n"
    )
    with pytest.raises(ConfigError) as refused:
        load_job_file(job_file)
    message = str(refused.value)
    assert "hyperparameters.lr" in message and "declares a number" in message
    assert "hyperparameters.optimiser" in message and "did you mean 'optimizer'" in message
    assert "hyperparameters.seed" in message and "a number or null" in message
    assert "hyperparameters.schedule.warmup" in message and "a boolean" in message

    job_file.write_text("job: ./j/\nhyperparameters: {lr: 1, seed: null}\n")  # inputs left out
    assert load_job_file(job_file)["hyperparameters"] == {"lr": 1, "seed": None}


def test_partial_jobs_are_not_type_checked(tmp_path: Path) -> None:
    # wandb job create makes "partial" jobs: W&B cannot verify their types either.
    write_job(tmp_path / "j", {**repo_job(), "_partial": "v0"})
    job_file = tmp_path / "job.yaml"
    job_file.write_text("job: ./j/\nhyperparameters: {anything: [1, 2]}\n")
    assert load_job_file(job_file)["hyperparameters"] == {"anything": [1, 2]}


def test_a_bad_job_directory_is_said_in_the_job_file(tmp_path: Path) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text("job: ./nowhere/\n")
    with pytest.raises(ConfigError) as refused:
        load_job_file(job_file)
    assert refused.value.source == str(job_file)
    assert refused.value.errors[0].path == "job"
    assert "no such directory" in str(refused.value)


def test_a_layer_built_from_flags_names_the_job_relative_to_a_directory(
    tmp_path: Path,
) -> None:
    # What `launchplane submit -j ./my-job/ -E "python train.py --x"` does, from the cwd.
    write_job(tmp_path / "my-job", repo_job())
    layer = with_wandb_job({"job": "./my-job/", "entry_point": ["train.py", "--x"]}, tmp_path)
    assert layer["entry_point"] == ["train.py", "--x"] and layer["git"]["commit"] == COMMIT
    assert with_wandb_job({"job": "plain-name"}, tmp_path) == {"job": "plain-name"}


def test_plain_job_names_stay_names(tmp_path: Path) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text("job: llm-training:v1\n")
    assert load_job_file(job_file) == {"job": "llm-training:v1"}


@pytest.mark.parametrize(
    ("value", "path", "wandb"),
    [
        ("./my-job/", True, False),
        ("../jobs/x", True, False),
        ("/data/jobs/x", True, False),
        ("artifacts/x/wandb-job.json", True, False),
        ("acme/train/job-train:latest", False, True),
        ("acme/train/job-train", False, True),
        ("llm-training:v1", False, False),
        ("train-model", False, False),
        ("https://github.com/acme/train", False, False),
    ],
)
def test_which_job_strings_name_a_wandb_job(value: str, path: bool, wandb: bool) -> None:
    assert is_job_path(value) is path
    assert is_wandb_job_name(value) is wandb


def test_fetching_a_wandb_job_without_the_wandb_package_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test extra installs wandb; None in sys.modules makes `import wandb` fail as a
    # missing package does.
    monkeypatch.setitem(sys.modules, "wandb", None)
    job_file = tmp_path / "job.yaml"
    job_file.write_text("job: acme/train/job-train:latest\n")
    with pytest.raises(ConfigError) as refused:
        load_job_file(job_file)
    message = str(refused.value)
    assert "launchplane[wandb]" in message
    assert "wandb artifact get acme/train/job-train:latest" in message


def test_read_wandb_job_keeps_what_checks_need(tmp_path: Path) -> None:
    job = read_wandb_job(write_job(tmp_path / "j", repo_job()))
    assert job.input_types == INPUT_TYPES and not job.partial and job.needs_code is None

"""A downloaded W&B job runs like W&B runs it: clone at the commit, apply diff.patch, pin deps.

The job directory is made here in W&B's layout (``wandb-job.json``,
``requirements.frozen.txt``, ``diff.patch`` as ``git diff HEAD`` writes it),
with a local git repository as its remote; a real server and an in-process
agent run it on the local-process runner.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from agentkit import QUEUE
from kit import DOCKER_BASE_IMAGE, log_lines, require_docker, running_agent, wait_for_state

from launchplane.agent.gitcode import PatchError, checkout
from launchplane.core.client import LaunchplaneClient
from launchplane.core.config import load_job_file
from launchplane.core.config.wandb_job import load_wandb_job
from launchplane.plugins.builders.dockerfile import detect_dependencies, generate_dockerfile
from launchplane.plugins.runners.local import requirement_differences
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

TRAIN_V1 = "print('code v1')\n"
TRAIN_PATCHED = """\
import json, os
from helper import greeting
params = json.loads(os.environ['LAUNCHPLANE_HYPERPARAMETERS'])
print(f"patched lr={params['lr']} {greeting()}")
print('frozen: ' + open('requirements.frozen.txt').read().splitlines()[0])
"""
ANYIO = importlib.metadata.version("anyio")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def origin_and_patch(path: Path) -> tuple[str, str]:
    """A repository at ``train.py`` v1, and the diff a W&B run made of its uncommitted work.

    W&B saves ``git diff HEAD`` of the run's tree: here a changed ``train.py``
    and a new (staged) ``helper.py``. The origin itself keeps only the commit.
    """
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    (path / "train.py").write_text(TRAIN_V1)
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "v1")
    commit = git(path, "rev-parse", "HEAD").strip()
    (path / "train.py").write_text(TRAIN_PATCHED)
    (path / "helper.py").write_text("def greeting():\n    return 'helper ok'\n")
    git(path, "add", "-A")
    patch = git(path, "diff", "--submodule=diff", "HEAD")
    git(path, "reset", "--quiet", "--hard")
    return commit, patch


def wandb_job_dir(
    path: Path, remote: Path, commit: str, patch: str, frozen: str | None = None
) -> Path:
    """A job directory as ``wandb artifact get`` downloads a repo job."""
    path.mkdir(parents=True)
    info = {
        "_version": "v0",
        "source_type": "repo",
        "source": {
            "git": {"remote": str(remote), "commit": commit},
            "entrypoint": ["python3.10", "train.py"],
            "notebook": False,
        },
        "input_types": {
            "wb_type": "typedDict",
            "params": {"type_map": {"lr": {"wb_type": "number"}}},
        },
        "output_types": {"wb_type": "typedDict", "params": {"type_map": {}}},
        "runtime": "3.10",
    }
    (path / "wandb-job.json").write_text(json.dumps(info))
    (path / "requirements.frozen.txt").write_text(
        frozen or f"anyio=={ANYIO}\npydantic==0.0.1\nlaunchplane-no-such-package==1.0\n"
    )
    (path / "diff.patch").write_text(patch)
    return path


async def test_wandb_job_directory_runs_with_its_diff_applied(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    commit, patch = origin_and_patch(tmp_path / "origin")
    wandb_job_dir(tmp_path / "jobs" / "job-train:v0", tmp_path / "origin", commit, patch)
    job_file = tmp_path / "job.yaml"
    job_file.write_text("job: ./jobs/job-train:v0/\nhyperparameters: {lr: 0.5}\n")

    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(QUEUE, load_job_file(job_file))
        done = await wait_for_state(client, job["id"])
        record = await client.get_record(job["id"])

    lines = await log_lines(client, job["id"])
    assert done["state"] == "succeeded", (done["reason"], lines)
    assert lines[-2:] == ["patched lr=0.5 helper ok", f"frozen: anyio=={ANYIO}"]
    (warning,) = [line for line in lines if "pinned requirements" in line]
    pydantic = importlib.metadata.version("pydantic")
    assert "2 of the job's 3 pinned requirements" in warning
    assert "launchplane-no-such-package==1.0: not installed" in warning
    assert f"pydantic==0.0.1: {pydantic} installed" in warning
    assert "anyio" not in warning
    assert record["code"]["commit"] == commit
    assert record["code"]["dirty"] is True  # the commit alone does not hold the code that ran
    assert record["spec"]["job"] == "job-train:v0"
    assert record["spec"]["entry_point"] == ["train.py"]
    run_dir = tmp_path / "work" / f"{job['id']}-1"
    assert not list(run_dir.glob("*.patch"))  # the patch file is not left behind
    assert not (run_dir / "code" / "diff.patch").exists()


@pytest.mark.docker
async def test_wandb_job_builds_with_its_frozen_requirements_and_runs_in_docker(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    engine = require_docker()
    commit, patch = origin_and_patch(tmp_path / "origin")
    # pip is in every new venv: the pin is met without a network. The nonce makes the
    # requirements layer new, so the build really runs pip instead of using its cache.
    frozen = f"pip  # {uuid.uuid4().hex}\n"
    wandb_job_dir(tmp_path / "job", tmp_path / "origin", commit, patch, frozen)
    job_file = tmp_path / "job.yaml"
    job_file.write_text("job: ./job/\nname: lptest-wandb-job\nhyperparameters: {lr: 0.25}\n")
    await server.ensure_queue(
        "wandb-docker",
        {
            "resource": "docker",
            "builder": {"type": "docker", "base_image": DOCKER_BASE_IMAGE},
            "lease_ttl_seconds": 30,
        },
    )
    try:
        async with running_agent(server, tmp_path / "work", ["wandb-docker"]):
            job = await client.submit_job("wandb-docker", load_job_file(job_file))
            done = await wait_for_state(client, job["id"], timeout=120)
        lines = await log_lines(client, job["id"])
    finally:
        for image in engine.images.list(name="launchplane/lptest-wandb-job"):
            engine.images.remove(image.id, force=True)

    assert done["state"] == "succeeded", (done["reason"], lines)
    assert "RUN pip install --no-deps -r /app/requirements.frozen.txt" in "\n".join(lines)
    assert any("Requirement already satisfied: pip" in line for line in lines)
    assert lines[-2:] == ["patched lr=0.25 helper ok", f"frozen: {frozen.strip()}"]


async def test_a_patch_that_does_not_apply_fails_the_job_naming_it(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    commit, patch = origin_and_patch(tmp_path / "origin")
    (tmp_path / "origin" / "train.py").write_text("print('moved on')\n")
    git(tmp_path / "origin", "commit", "--quiet", "-am", "v2")
    newer = git(tmp_path / "origin", "rev-parse", "HEAD").strip()
    directory = wandb_job_dir(tmp_path / "my-job", tmp_path / "origin", newer, patch)

    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(QUEUE, load_wandb_job(directory))  # --job-dir
        done = await wait_for_state(client, job["id"])

    assert done["state"] == "failed" and done["failure_stage"] == "prepare"
    reason = done["reason"]
    assert f"job my-job's git.patch does not apply to commit {newer}" in reason
    assert "train.py" in reason  # git's own words say which file
    assert "diff.patch" in reason and "git.commit" in reason  # and what to do
    assert commit != newer


async def test_checkout_applies_a_patch_and_says_so(tmp_path: Path) -> None:
    commit, patch = origin_and_patch(tmp_path / "origin")
    plain = await checkout(str(tmp_path / "origin"), tmp_path / "a" / "code", commit=commit)
    patched = await checkout(
        str(tmp_path / "origin"), tmp_path / "b" / "code", commit=commit, patch=patch
    )
    assert not plain.patched and (plain.path / "train.py").read_text() == TRAIN_V1
    assert patched.patched and patched.commit == commit
    assert (patched.path / "train.py").read_text() == TRAIN_PATCHED
    assert (patched.path / "helper.py").is_file()
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["code"]


async def test_a_failed_patch_is_a_patch_error_and_is_scrubbed(tmp_path: Path) -> None:
    commit, _ = origin_and_patch(tmp_path / "origin")
    bad = "--- a/missing-s3cr3t.py\n+++ b/missing-s3cr3t.py\n@@ -1 +1 @@\n-a\n+b\n"
    with pytest.raises(PatchError) as failed:
        await checkout(
            str(tmp_path / "origin"),
            tmp_path / "code",
            commit=commit,
            patch=bad,
            label="job j-1",
            scrub=lambda text: text.replace("s3cr3t", "***"),
        )
    assert str(failed.value).startswith(f"job j-1's git.patch does not apply to commit {commit}")
    assert "s3cr3t" not in str(failed.value)


def test_requirement_differences() -> None:
    installed = {"numpy": "1.26.4", "torch": "2.1.0", "my-pkg": "0.1"}
    assert requirement_differences(
        [
            "numpy==1.26.4",
            "NumPy==1.26.4",  # names compare as PEP 503 says
            "My_Pkg==0.1",
            "torch==2.2.0",
            "scipy==1.11.0",
            "wandb>=0.16",
            "requests @ https://example.com/requests.whl",
            "git+https://github.com/acme/lib.git#egg=lib",
            "-e .",
            "--index-url https://pypi.org/simple",
            "# a comment",
        ],
        installed,
    ) == [
        "torch==2.2.0: 2.1.0 installed",
        "scipy==1.11.0: not installed",
        "wandb>=0.16: not installed",
        "requests @ https://example.com/requests.whl: not installed",
    ]


def test_dockerfile_installs_frozen_requirements_like_wandb(tmp_path: Path) -> None:
    (tmp_path / "requirements.frozen.txt").write_text("numpy==1.26.4\n")
    deps = detect_dependencies(tmp_path)
    assert (deps.kind, deps.file) == ("frozen", "requirements.frozen.txt")
    text = generate_dockerfile("python:3.11-slim", deps, ["python", "train.py"])
    assert "COPY requirements.frozen.txt /app/requirements.frozen.txt" in text
    assert "RUN pip install --no-deps -r /app/requirements.frozen.txt" in text
    # W&B's order: the repository's own requirements.txt, then pyproject.toml, win.
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '1'\n")
    assert detect_dependencies(tmp_path).kind == "pyproject"
    (tmp_path / "requirements.txt").write_text("numpy\n")
    assert detect_dependencies(tmp_path).kind == "requirements"

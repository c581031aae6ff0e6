"""``launchplane reproduce`` and ``plan --strict-pins``, against a real server and agent.

A real server and a real agent (local-process runner) in this loop run git code
from a local repository; ``launchplane reproduce`` runs as a real process. The
queue locks fields and fills others from template variables, so the record's
spec (the resolved job, queue fields merged) cannot simply be sent back: only
its job-level part can.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from kit import LAUNCHPLANE, log_lines, plan, running_agent, subprocess_env, wait_for_state

from launchplane.core.client import LaunchplaneClient
from launchplane.core.pins import record_spec_hash
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

TRAIN = """\
import json, os, sys
print("code", open("version.txt").read().strip(), "argv", sys.argv[1:])
print("hp", json.dumps(json.loads(os.environ["LAUNCHPLANE_HYPERPARAMETERS"]), sort_keys=True))
print("stage", os.environ["STAGE"])
"""
QUEUE: dict[str, Any] = {
    "resource": "local-process",
    "command": [sys.executable, "train.py", "--lr={{lr}}"],
    "env": {"STAGE": "prod"},
    "hyperparameters": {"seed": 7},
    "locked": ["env.STAGE", "hyperparameters.seed"],
    "template_variables": {"lr": {"type": "float", "default": 0.1}},
    "guardrails": {"git_local_remotes": True},
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def commit_version(repo: Path, version: str) -> str:
    (repo / "version.txt").write_text(version + "\n")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", version)
    return git(repo, "rev-parse", "HEAD")


def make_repo(path: Path) -> str:
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    (path / "train.py").write_text(TRAIN)
    return commit_version(path, "v1")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        await srv.ensure_queue("repro", QUEUE)
        await srv.ensure_queue("other", {**QUEUE, "hyperparameters": {"seed": 8}})
        await srv.ensure_queue(
            "wd", {"resource": "local-process", "command": [sys.executable, "-c", "print('hi')"]}
        )
        yield srv


async def reproduce(
    server: EmbeddedServer, token: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``launchplane reproduce ARGS`` as a real process."""
    argv = [LAUNCHPLANE, "reproduce", *args, "--server", server.url, "--token", token]
    done = await anyio.run_process(argv, env=subprocess_env(), check=False)
    return subprocess.CompletedProcess(
        argv, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


async def finished(client: LaunchplaneClient, job_id: str) -> tuple[dict[str, Any], list[str]]:
    job = await wait_for_state(client, job_id, timeout=60)
    assert job["state"] == "succeeded", job
    return await client.get_record(job_id), await log_lines(client, job_id)


async def test_reproduce_runs_the_recorded_commit_with_the_same_spec_hash(
    server: EmbeddedServer, submitter: LaunchplaneClient, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo)
    recorded = commit_version(repo, "v2")
    job = {"git": {"repository": str(repo), "branch": "main"}, "hyperparameters": {"epochs": 3}}
    token = await server.create_token("submitter")
    async with running_agent(server, tmp_path / "work", ["repro"]):
        first = await submitter.submit_job("repro", job, template_variables={"lr": 0.5})
        assert [w.split(":")[0] for w in first["warnings"]] == ["git.branch"]
        record, log = await finished(submitter, first["id"])
        assert record["code"]["commit"] == recorded
        assert record["spec_hash"] == record_spec_hash(record)
        assert any("code v2 argv ['--lr=0.5']" in line for line in log), log

        moved = commit_version(repo, "v3")  # the branch moves on
        planned = await reproduce(server, token, first["id"], "--plan", "--json")
        assert planned.returncode == 0, planned.stderr
        document = json.loads(planned.stdout)
        # Only the job-level part, pinned: no locked or templated field, no queue setting.
        assert document["job"] == {
            "git": {"repository": str(repo), "branch": "main", "commit": recorded},
            "hyperparameters": {"epochs": 3},
        }
        assert document["template_variables"] == {"lr": 0.5}
        assert document["spec_hash"] == record["spec_hash"] == document["predicted_spec_hash"]
        assert document["unpinned"] == []
        assert (
            await submitter.list_jobs("repro") != []
            and len(await submitter.list_jobs("repro")) == 1
        )

        done = await reproduce(server, token, f"{first['id']}-1", "--strict-pins")
        assert done.returncode == 0, done.stderr
        new_id = done.stdout.split()[1]
        assert f"reproduces {first['id']}-1" in done.stdout
        again, log = await finished(submitter, new_id)

    assert again["spec_hash"] == record["spec_hash"]
    assert again["code"]["commit"] == recorded != moved
    assert any("code v2 argv ['--lr=0.5']" in line for line in log), log
    assert any('hp {"epochs": 3, "seed": 7}' in line for line in log), log
    assert any("stage prod" in line for line in log), log
    assert (await submitter.get_job(new_id))["warnings"] == [], "the new job is pinned"


async def test_reproduce_elsewhere_lists_what_the_other_queue_changes(
    server: EmbeddedServer, submitter: LaunchplaneClient, tmp_path: Path
) -> None:
    """On a queue that locks another value, the field cannot be set: listed, hash differs."""
    repo = tmp_path / "repo"
    make_repo(repo)
    token = await server.create_token("submitter")
    async with running_agent(server, tmp_path / "work", ["repro"]):
        first = await submitter.submit_job("repro", {"git": {"repository": str(repo)}})
        record, _ = await finished(submitter, first["id"])
    planned = await reproduce(server, token, first["id"], "--queue", "other", "--plan", "--json")
    assert planned.returncode == 0, planned.stderr
    document = json.loads(planned.stdout)
    assert document["queue"] == "other"
    assert "hyperparameters" not in document["job"]
    assert document["spec_hash"] == record["spec_hash"] != document["predicted_spec_hash"]
    assert any(line.startswith("hyperparameters.seed: ") for line in document["unpinned"])
    assert "warning: hyperparameters.seed: " in planned.stderr

    strict = await reproduce(server, token, first["id"], "--queue", "other", "--strict-pins")
    assert strict.returncode == 2, strict.stderr
    assert "hyperparameters.seed" in strict.stderr
    assert len(await submitter.list_jobs("other")) == 0


async def test_a_workdir_outside_git_cannot_be_pinned(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    async with running_agent(server, tmp_path / "work", ["wd"]):
        first = await client.submit_job("wd", {"workdir": str(code)})
        record, _ = await finished(client, first["id"])
        assert record["code"]["commit"] is None

        strict = await reproduce(server, server.admin_token, first["id"], "--strict-pins")
        assert strict.returncode == 2, strict.stderr
        assert "workdir: a local directory outside a git work tree" in strict.stderr
        assert len(await client.list_jobs("wd")) == 1, "nothing submitted"

        done = await reproduce(server, server.admin_token, first["id"])
        assert done.returncode == 0, done.stderr
        assert "warning: workdir: " in done.stderr
        again, _ = await finished(client, done.stdout.split()[1])
    assert again["spec_hash"] == record["spec_hash"]


async def test_a_run_id_names_the_last_attempt_of_its_job(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    async with running_agent(server, tmp_path / "work", ["wd"]):
        first = await client.submit_job("wd", {})
        await finished(client, first["id"])
    wrong = await reproduce(server, server.admin_token, f"{first['id']}-2", "--plan")
    assert wrong.returncode == 2
    assert f"reproduce {first['id']} instead" in wrong.stderr
    assert (
        await reproduce(server, server.admin_token, f"{first['id']}-1", "--plan")
    ).returncode == 0


def test_plan_strict_pins_exits_2_listing_each_path(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        "git: {repository: https://example.com/r.git, branch: main}\n"
        "docker: {image: python:3.11}\n"
        "input_artifacts: [dataset:latest]\n"
        "entry_point: train.py\n"
    )
    warned = plan(job)
    assert warned.exit_code == 0, warned.stderr
    for path in ("git.branch", "docker.image", "input_artifacts[0]"):
        assert f"warning: {path}: " in warned.stderr

    strict = plan(job, "--strict-pins")
    assert strict.exit_code == 2
    for path in ("git.branch", "docker.image", "input_artifacts[0]"):
        assert f"  - {path}: " in strict.stderr
    assert strict.stderr.count("(--strict-pins)") == 3


def test_plan_checks_a_local_workdirs_requirements(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("numpy==1.26.4\npandas\n")
    job = tmp_path / "job.yaml"
    job.write_text("workdir: .\nentry_point: main.py\n")
    result = plan(job)
    assert result.exit_code == 0, result.stderr
    assert "warning: requirements.txt:2: 'pandas' is not pinned" in result.stderr

    queue = tmp_path / "queue.yaml"
    queue.write_text("guardrails: {require_pins: true}\n")
    required = plan(job, "--queue-config", queue)
    assert required.exit_code == 2
    assert "requirements.txt:2" in required.stderr and "require_pins" in required.stderr


async def test_submit_prints_the_warnings_and_strict_pins_refuses(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("git: {repository: https://example.com/r.git, branch: main}\n")
    token = await server.create_token("submitter")
    argv = [LAUNCHPLANE, "submit", str(job), "-q", "repro", "--server", server.url]
    argv += ["--token", token]
    warned = await anyio.run_process(argv, env=subprocess_env(), check=False)
    assert warned.returncode == 0, warned.stderr
    assert b"warning: git.branch: branch 'main' without a commit" in warned.stderr
    strict = await anyio.run_process([*argv, "--strict-pins"], env=subprocess_env(), check=False)
    assert strict.returncode == 2
    assert b"git.branch: " in strict.stderr and b"(--strict-pins)" in strict.stderr


def test_run_checks_the_local_requirements(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "requirements.txt").write_text("pandas\n")
    (code / "job.yaml").write_text(f"command: [{sys.executable}, -c, 'print(1)']\n")
    argv = [LAUNCHPLANE, "run", str(code / "job.yaml"), "--data-dir", str(tmp_path / "data")]
    env = subprocess_env(LAUNCHPLANE_HOME=str(tmp_path / "home"))
    strict = subprocess.run([*argv, "--strict-pins"], capture_output=True, text=True, env=env)
    assert strict.returncode == 2, strict.stderr
    assert "requirements.txt:1: 'pandas' is not pinned" in strict.stderr
    assert not (tmp_path / "data").exists(), "refused before anything started"
    warned = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert warned.returncode == 0, warned.stderr
    assert "warning: requirements.txt:1: 'pandas' is not pinned" in warned.stderr


# -- the job reproduce builds, from records the tests write ------------------------------

DIGEST = "sha256:" + "c" * 64


def recorded(queue: dict[str, Any], job: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """A run record as an agent writes it, of ``job`` resolved on ``queue``."""
    from launchplane.core.config import resolve_job

    values = job.pop("template_variables", {})
    spec = resolve_job(queue, job, (), values, queue_name="q").model_dump(mode="json")
    record = {"spec": spec, "code": None, "image": None, "queue": {"name": "q"}, **sections}
    return {**record, "spec_hash": record_spec_hash(record)}


ARTIFACT_FACTS = {
    "image": {"ref": "reg/img:1", "digest": DIGEST, "pinned": f"reg/img@{DIGEST}", "built": False},
    "artifacts": {
        "inputs": [{"name": "data", "alias": "latest", "version": "v4", "digest": "sha256:d"}]
    },
}


def test_image_by_digest_and_artifacts_by_version() -> None:
    from launchplane.cli.reproduce import reproduction

    queue: dict[str, Any] = {"entry_point": "train.py", "locked": ["entry_point"]}
    job = {"docker": {"image": "reg/img:1"}, "input_artifacts": ["data:latest"]}
    record = recorded(queue, job, **ARTIFACT_FACTS)
    plan = reproduction(record, queue, "q")
    assert plan.job == {
        "docker": {"image": f"reg/img@{DIGEST}"},
        "input_artifacts": [{"name": "data", "alias": "v4"}],
    }
    assert plan.unpinned == []
    assert plan.predicted_hash == plan.expected_hash == record["spec_hash"]


def test_a_queue_that_locks_the_image_tag_keeps_it_unpinned() -> None:
    from launchplane.cli.reproduce import reproduction

    queue: dict[str, Any] = {"docker": {"image": "reg/img:1"}, "locked": ["docker.image"]}
    record = recorded(queue, {"entry_point": "train.py"}, **ARTIFACT_FACTS)
    plan = reproduction(record, queue, "q")
    assert plan.job == {"entry_point": "train.py"}
    found = {item.path: item.message for item in plan.unpinned}
    assert "is locked by the queue config" in found["docker.image"]
    # Equal while the tag still names the recorded digest: the new record says if it does.
    assert plan.predicted_hash == plan.expected_hash


def test_what_cannot_be_pinned_is_listed_with_why() -> None:
    from launchplane.cli.reproduce import reproduction

    queue: dict[str, Any] = {
        "secrets": {"HF_TOKEN": "env:HF"},
        "builder": {"type": "docker", "base_image": "python:3.11"},
        "template_variables": {"gpus": {"type": "integer", "default": 1}},
        "env": {"GPUS": "{{gpus}}"},
    }
    job = {"entry_point": "train.py", "template_variables": {"gpus": 2}}
    image = {"ref": "built:1", "digest": DIGEST, "pinned": f"built@{DIGEST}", "built": True}
    record = recorded(queue, job, image=image)
    plan = reproduction(record, queue, "q")
    assert plan.template_variables == {"gpus": 2}
    assert plan.job == {"entry_point": "train.py"}
    found = {item.path: item.message for item in plan.unpinned}
    assert set(found) == {"secrets", "image", "builder.base_image"}
    assert "HF_TOKEN" in found["secrets"] and "may have changed" in found["secrets"]
    assert "builds it again" in found["image"]
    assert plan.predicted_hash == plan.expected_hash

    # Elsewhere, a queue without that variable: the job sets what it filled in, itself.
    other: dict[str, Any] = {"secrets": {"HF_TOKEN": "env:HF"}, "builder": queue["builder"]}
    elsewhere = reproduction(record, other, "other")
    assert elsewhere.job == {"entry_point": "train.py", "env": {"GPUS": "2"}}
    assert "template_values.gpus" in {item.path for item in elsewhere.unpinned}


def test_a_submitter_sees_hidden_secret_references_and_gets_the_same_plan() -> None:
    from launchplane.cli.reproduce import reproduction

    queue: dict[str, Any] = {"secrets": {"HF_TOKEN": "vault:kv/hf#token"}}
    record = recorded(queue, {"entry_point": "train.py"})
    hidden = {**record, "spec": {**record["spec"], "secrets": {"HF_TOKEN": "<hidden>"}}}
    plan = reproduction(hidden, {"secrets": {"HF_TOKEN": "<hidden>"}}, "q")
    assert plan.predicted_hash == record["spec_hash"]

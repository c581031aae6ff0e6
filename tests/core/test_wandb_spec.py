"""W&B launch specs resolve the way W&B reads them, in launchplane's spelling (issue 11).

Each W&B key of a launch spec (``wandb launch -c``, ``launch_add(config=...)``) is
translated before any guardrail runs, so a lock holds whichever way a key is spelt;
W&B keys written in the wrong place get a hint, not a misleading "did you mean".
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from launchplane.core.config import load_job_file, normalise_layer, parse_set, resolve_job
from launchplane.core.config.macros import expand_macros
from launchplane.core.config.queue_check import check_queue_config
from launchplane.core.errors import ConfigError

LOCAL: dict[str, Any] = {"resource": "local-process"}
LOCKED = "is locked by the queue config; only an admin can change it"


def refused(*args: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        resolve_job(*args, **kwargs)
    return {error.path: error.message for error in caught.value.errors}


# A launch spec as wandb's construct_launch_spec builds it (empty docker/git, resource None).
SPEC: dict[str, Any] = {
    "uri": "https://github.com/org/repo.git",
    "entity": "ent",
    "project": "proj",
    "name": "my-run",
    "author": "alice",
    "docker": {},
    "git": {"version": "main"},
    "resource": None,
    "overrides": {
        "run_config": {"lr": 0.01, "epochs": 3},
        "args": ["--fast"],
        "entry_point": ["python", "train.py"],
        "artifacts": {"dataset": "ent/proj/data:v3"},
        "files": {"config.yaml": {"lr": 0.02}},
        "dockerfile": "Dockerfile.train",
        "working_dir": "src",
    },
    "run_id": "wandbrun1",
    "sweep_id": "sweep9",
    "priority": 1,
    "template_variables": {},
}


def test_a_launch_spec_resolves_in_launchplane_spelling() -> None:
    job = resolve_job(LOCAL, SPEC)
    assert job.git is not None
    assert (job.git.repository, job.git.branch, job.git.commit) == (
        "https://github.com/org/repo.git",
        "main",
        None,
    )
    assert (job.entity, job.project, job.name, job.author) == ("ent", "proj", "my-run", "alice")
    assert job.hyperparameters == {"lr": 0.01, "epochs": 3}
    assert (job.args, job.entry_point, job.workdir) == (["--fast"], ["python", "train.py"], "src")
    assert job.docker is not None and job.docker.dockerfile == "Dockerfile.train"
    assert [(a.slot, a.name, a.alias) for a in job.input_artifacts] == [
        ("dataset", "ent/proj/data", "v3")
    ]
    assert (job.wandb_run_id, job.sweep_id, job.priority) == ("wandbrun1", "sweep9", "high")
    assert json.loads(job.env["WANDB_LAUNCH_FILE_OVERRIDES"]) == {"config.yaml": {"lr": 0.02}}


def test_the_spec_is_not_modified_and_normalising_twice_changes_nothing() -> None:
    spec = copy.deepcopy(SPEC)
    once, errors = normalise_layer(spec)
    assert spec == SPEC and errors == []
    assert normalise_layer(once) == (once, [])


def test_file_overrides_reach_the_run_exactly_as_w_and_b_sends_them() -> None:
    files = {"cfg.json": {"path": "${HOME}/data", "cost": "$5", "esc": "$${X}"}}
    job = resolve_job(LOCAL, {"overrides": {"files": files}})  # no agent reference refused
    text = expand_macros(job.env["WANDB_LAUNCH_FILE_OVERRIDES"], {}, {"HOME": "/agent"})
    assert text == json.dumps(files)


def test_run_config_merges_with_the_queues_hyperparameters() -> None:
    queue = {**LOCAL, "hyperparameters": {"lr": 0.1, "batch": 32}}
    job = resolve_job(queue, {"overrides": {"run_config": {"lr": 0.5}}})
    assert job.hyperparameters == {"lr": 0.5, "batch": 32}


def test_set_writes_w_and_b_paths_too() -> None:
    job = resolve_job(LOCAL, {}, [parse_set("overrides.run_config.lr=0.3")])
    assert job.hyperparameters == {"lr": 0.3}


@pytest.mark.parametrize(
    ("image_keys", "image"),
    [
        ({"docker": {"docker_image": "python:3.11"}}, "python:3.11"),
        ({"image_uri": "registry/x:1"}, "registry/x:1"),
        ({"job": {"docker": {"docker_image": "python:3.12"}}}, "python:3.12"),
        # The same value both ways is not ambiguous.
        ({"image_uri": "a:1", "docker": {"docker_image": "a:1", "image": "a:1"}}, "a:1"),
    ],
)
def test_docker_image_and_image_uri_are_docker_image(
    image_keys: dict[str, Any], image: str
) -> None:
    job = resolve_job({"resource": "docker"}, image_keys)
    assert job.docker is not None and job.docker.image == image


@pytest.mark.parametrize(
    ("version", "field"),
    [
        ("abc1234", "commit"),
        ("0123456789abcdef0123456789abcdef01234567", "commit"),
        ("ABCDEF0", "commit"),
        ("abc123", "branch"),  # 6 hex digits: too short for a commit
        ("0123456789abcdef0123456789abcdef012345678", "branch"),  # 41
        ("main", "branch"),
        ("v1.2.0", "branch"),  # a tag: git clone --branch takes tags too
    ],
)
def test_git_version_is_a_commit_or_a_branch(version: str, field: str) -> None:
    job = resolve_job(LOCAL, {"git": {"repo": "https://github.com/o/r", "version": version}})
    assert job.git is not None and job.git.repository == "https://github.com/o/r"
    assert getattr(job.git, field) == version
    assert getattr(job.git, "branch" if field == "commit" else "commit") is None


@pytest.mark.parametrize(
    ("uri", "field"),
    [
        ("https://github.com/org/repo", "repository"),
        ("https://gitlab.example.com/org/repo", "repository"),
        ("https://bitbucket.org/org/repo", "repository"),
        ("https://dev.azure.com/org/project/_git/repo", "repository"),
        ("https://code.example.com/team/repo.git", "repository"),
        ("git@github.com:org/repo.git", "repository"),
        ("ssh://git@host.example/org/repo", "repository"),
        ("file:///srv/repos/train", "repository"),
        ("/home/me/project", "workdir"),
        ("./project", "workdir"),
        ("project", "workdir"),
    ],
)
def test_uri_is_a_git_repository_or_a_local_directory(uri: str, field: str) -> None:
    job = resolve_job(LOCAL, {"uri": uri}, trusted=True)  # an admin: local code allowed
    if field == "repository":
        assert job.git is not None and job.git.repository == uri and job.workdir is None
    else:
        assert job.git is None and job.workdir == uri


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("https://wandb.ai/ent/proj/runs/abc123", "a W&B run URL"),
        ("https://api.wandb.ai/ent/proj/runs/abc123", "a W&B run URL"),
        ("http://10.0.0.5:8080/ent/proj/runs/abc123", "a W&B run URL"),
        ("placeholder-uri-scheduler", "sweep-scheduler placeholder"),
        ("https://example.com/code.tar.gz", "not a git repository URL"),
        ("s3://bucket/code", "not a git repository URL"),
        ("github.com/org/repo", "write it as a URL, e.g. https://github.com/org/repo"),
    ],
)
def test_uris_launchplane_cannot_run_are_refused_with_a_reason(uri: str, reason: str) -> None:
    problems = refused(LOCAL, {"uri": uri})
    assert list(problems) == ["uri"] and reason in problems["uri"]


# --- resource -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queue_runner", "resource"),
    [
        ("kubernetes", None),
        ("kubernetes", "kubernetes"),
        ("docker", "local-container"),
        ("docker", "docker"),
        ("local-process", "local-process"),
    ],
)
def test_resource_null_or_the_queues_runner_is_accepted(
    queue_runner: str, resource: str | None
) -> None:
    assert resolve_job({"resource": queue_runner}, {"resource": resource}).resource == queue_runner


def test_another_runner_is_refused_naming_both() -> None:
    assert refused({"resource": "kubernetes"}, {"resource": "local-container"}) == {
        "resource": (
            "the queue decides the runner; submit to another queue "
            "(this queue runs 'kubernetes', not 'docker' (W&B's local-container))"
        )
    }
    problems = refused({"resource": "docker"}, {}, [parse_set("resource=sagemaker")])
    assert problems["resource"].endswith(
        "(this queue runs 'docker', not 'sagemaker') (from --set resource=sagemaker)"
    )


# --- one thing set two ways -----------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "path", "other"),
    [
        ({"docker": {"docker_image": "a", "image": "b"}}, "docker.docker_image", "docker.image"),
        ({"image_uri": "a", "docker": {"image": "b"}}, "image_uri", "docker.image"),
        ({"git": {"repo": "a", "repository": "b"}}, "git.repo", "git.repository"),
        ({"git": {"repository": "b"}, "uri": "https://github.com/o/a"}, "uri", "git.repository"),
        ({"git": {"version": "main", "branch": "dev"}}, "git.version", "git.branch"),
        ({"args": ["-a"], "overrides": {"args": ["-b"]}}, "overrides.args", "args"),
        (
            {"entry_point": "a.py", "overrides": {"entry_point": ["b.py"]}},
            "overrides.entry_point",
            "entry_point",
        ),
        ({"workdir": "a", "overrides": {"working_dir": "b"}}, "overrides.working_dir", "workdir"),
        (
            {"docker": {"dockerfile": "A"}, "overrides": {"dockerfile": "B"}},
            "overrides.dockerfile",
            "docker.dockerfile",
        ),
        ({"run_id": "a", "wandb_run_id": "b"}, "run_id", "wandb_run_id"),
        (
            {"hyperparameters": {"lr": 1}, "overrides": {"run_config": {"lr": 2}}},
            "overrides.run_config.lr",
            "hyperparameters.lr",
        ),
        (
            {"env": {"WANDB_LAUNCH_FILE_OVERRIDES": "{}"}, "overrides": {"files": {"a": {}}}},
            "overrides.files",
            "env.WANDB_LAUNCH_FILE_OVERRIDES",
        ),
    ],
)
def test_one_thing_set_both_ways_names_both(layer: dict[str, Any], path: str, other: str) -> None:
    assert refused(LOCAL, layer) == {
        path: f"also set as {other}, which is the same thing; set it once, as {other}"
    }


def test_an_artifact_slot_set_both_ways() -> None:
    layer = {
        "input_artifacts": [{"name": "a", "slot": "data"}],
        "overrides": {"artifacts": {"data": "b", "model": "m:v1"}},
    }
    assert refused(LOCAL, layer) == {
        "overrides.artifacts.data": "also set in input_artifacts (slot); set it once"
    }


@pytest.mark.parametrize(
    ("layer", "path", "message"),
    [
        ({"overrides": ["--x"]}, "overrides", "must be a mapping of W&B overrides"),
        ({"overrides": {"args": "--x"}}, "overrides.args", "must be a list of strings"),
        ({"overrides": {"entry_point": 3}}, "overrides.entry_point", "must be a list of strings"),
        ({"overrides": {"run_config": [1]}}, "overrides.run_config", "must be a mapping"),
        ({"overrides": {"files": "x"}}, "overrides.files", "must be a mapping of file names"),
        ({"overrides": {"artifacts": ["x"]}}, "overrides.artifacts", "must map artifact slots"),
        ({"overrides": {"artifacts": {"d": 1}}}, "overrides.artifacts.d", "an artifact name"),
        ({"overrides": {"argz": []}}, "overrides.argz", "(did you mean 'args'?); W&B's overrides"),
        ({"docker": {"docker_image": 3}}, "docker.docker_image", "must be a string, not a int"),
        ({"git": {"version": 3}}, "git.version", "must be a branch, tag or commit"),
        ({"docker": {"user_id": 1000}}, "docker.user_id", "has no launchplane equivalent"),
        ({"_wandb_api_key": "k"}, "_wandb_api_key", "WANDB_API_KEY in the queue's secrets"),
    ],
)
def test_w_and_b_values_of_the_wrong_kind_name_the_w_and_b_key(
    layer: dict[str, Any], path: str, message: str
) -> None:
    problems = refused(LOCAL, layer)
    assert list(problems) == [path] and message in problems[path]


# --- guardrails see the launchplane spelling -------------------------------------------

QUEUE: dict[str, Any] = {
    "resource": "kubernetes",
    "docker": {"image": "registry/approved:1"},
    "git": {"repository": "https://github.com/org/approved"},
    "args": ["--safe"],
    "hyperparameters": {"lr": "{{lr}}"},
    "template_variables": {"lr": {"type": "float", "default": 0.1}},
    "locked": ["docker.image", "git.repository", "args", "wandb_run_id"],
}


@pytest.mark.parametrize(
    ("layer", "path", "written"),
    [
        ({"docker": {"docker_image": "evil:1"}}, "docker.image", "docker.docker_image"),
        ({"image_uri": "evil:1"}, "docker.image", "image_uri"),
        ({"job": {"docker": {"docker_image": "evil:1"}}}, "docker.image", "docker.docker_image"),
        ({"git": {"repo": "https://github.com/evil/repo"}}, "git.repository", "git.repo"),
        ({"uri": "https://github.com/evil/repo"}, "git.repository", "uri"),
        ({"overrides": {"args": ["--evil"]}}, "args", "overrides.args"),
        ({"run_id": "mine"}, "wandb_run_id", "run_id"),
    ],
)
def test_a_lock_holds_whichever_way_the_key_is_spelt(
    layer: dict[str, Any], path: str, written: str
) -> None:
    assert refused(QUEUE, layer) == {path: f"{LOCKED} (written as {written})"}


def test_a_templated_path_holds_against_run_config() -> None:
    assert refused(QUEUE, {"overrides": {"run_config": {"lr": 9}}}) == {
        "hyperparameters.lr": (
            "is set by the queue from template variable 'lr'; pass --var lr=... instead "
            "(written as overrides.run_config.lr)"
        )
    }


def test_locked_entries_in_w_and_b_spelling() -> None:
    queue = {
        "locked": [
            "docker.docker_image",
            "image_uri",
            "git.version",
            "overrides.run_config.lr",
            "overrides.entry_point",
            "uri",
        ]
    }
    config, _ = check_queue_config(queue)
    assert config.locked == [
        "docker.image",
        "docker.image",
        "git.commit",
        "git.branch",
        "hyperparameters.lr",
        "entry_point",
        "git.repository",
        "workdir",
    ]
    job = {
        "git": {"version": "main"},
        "overrides": {"run_config": {"lr": 1, "ok": 2}},
        "workdir": "/x",
    }
    assert refused(queue, job) == {
        "git.branch": f"{LOCKED} (written as git.version)",
        "hyperparameters.lr": f"{LOCKED} (written as overrides.run_config.lr)",
        "workdir": LOCKED,
    }


def test_a_w_and_b_value_of_the_wrong_type_names_the_key_written() -> None:
    assert refused(LOCAL, {"run_id": 7, "overrides": {"run_config": {"x": 1}}}) == {
        "wandb_run_id": "Input should be a valid string (got 7) (written as run_id)"
    }


# --- W&B keys in the wrong place --------------------------------------------------------

K8S = "a Kubernetes manifest key: put it under resource_args.kubernetes"
SAGEMAKER = "a SageMaker CreateTrainingJob key: put it under resource_args.sagemaker"


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("namespace", K8S),  # not "did you mean 'name'?"
        ("metadata", K8S),
        ("apiVersion", K8S),
        ("ResourceConfig", SAGEMAKER),  # not "did you mean 'resource'?"
        ("RoleArn", SAGEMAKER),
        ("StoppingCondition", SAGEMAKER),
        ("run", "a Vertex AI body key: put it under resource_args.gcp-vertex"),
        ("gpus", "a docker run flag (W&B's local-container): put it under resource_args.docker"),
        ("docker_image", "write docker: {image: ...} (W&B: docker.docker_image)"),  # not dockerfile
        ("repo", "write git: {repository: ...} (W&B: git.repo)"),
        ("version", "write git: {commit: ...} or git: {branch: ...} (W&B: git.version)"),
        ("parameters", "the run's config is hyperparameters: {...} (W&B: overrides.run_config)"),
        ("run_config", "write hyperparameters: {...} (W&B: overrides.run_config)"),
        ("working_dir", "write workdir: ... (W&B: overrides.working_dir)"),
        ("files", "write overrides: {files: {...}}"),
    ],
)
def test_w_and_b_keys_in_the_wrong_place_say_where_they_belong(key: str, hint: str) -> None:
    problems = refused(LOCAL, {key: {"x": 1}})
    assert list(problems) == [key] and hint in problems[key]
    assert "did you mean" not in problems[key]


def test_a_runner_body_key_right_under_resource_args() -> None:
    assert refused(LOCAL, {"resource_args": {"namespace": "ml", "kubernetes": {}}}) == {
        "resource_args.namespace": f"resource_args is keyed by runner; this is {K8S}"
    }


def test_a_runner_body_pasted_as_a_queue_config_suggests_type() -> None:
    with pytest.raises(ConfigError) as caught:
        check_queue_config({"apiVersion": "batch/v1", "kind": "Job", "spec": {}})
    messages = {error.path: error.message for error in caught.value.errors}
    assert set(messages) == {"apiVersion", "kind", "spec"}
    assert messages["kind"] == (
        f"{K8S} (or create the queue from the body with --type RUNNER -f body.yaml)"
    )


def test_a_sweep_config_still_says_it_is_one() -> None:
    problems = refused(LOCAL, {"method": "bayes", "parameters": {"lr": {"min": 0.1}}})
    assert "this looks like a W&B sweep config" in " ".join(problems.values())


def test_a_sweep_on_launch_config_says_it_is_one() -> None:
    config = {"scheduler": {"job": "wandb/sweep-jobs/x:latest"}, "parameters": {"lr": {}}}
    problems = refused(LOCAL, config)
    assert "W&B sweep-on-launch config" in problems["scheduler"]
    assert "sweep parameters" not in " ".join(problems.values())


def test_legacy_docker_args_are_docker_run_flags_not_an_image() -> None:
    problems = refused(LOCAL, {"docker_args": {"tty": True}})
    assert "resource_args.docker" in problems["docker_args"]
    assert "did you mean" not in problems["docker_args"]


def test_empty_override_lists_keep_the_jobs_as_w_and_b_does() -> None:
    queue = {**LOCAL, "entry_point": ["python", "train.py"], "args": ["--a"]}
    job = resolve_job(queue, {"overrides": {"args": [], "entry_point": [], "run_config": {}}})
    assert (job.entry_point, job.args) == (["python", "train.py"], ["--a"])


def test_a_launch_spec_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"docker": {"docker_image": "python:3.11"}, "run_id": "r"}))
    assert load_job_file(path) == {"docker": {"image": "python:3.11"}, "wandb_run_id": "r"}
    (tmp_path / "bad.yaml").write_text("namespace: ml\n")
    with pytest.raises(ConfigError, match=f"namespace: {K8S}"):
        load_job_file(tmp_path / "bad.yaml")

"""``launchplane submit`` / ``launchplane launch`` with W&B's ``wandb launch`` flags, against a
real ``launchplane server`` process on a loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from kit import LAUNCHPLANE, server_process

from launchplane.cli import cli

QUEUE_YAML = """\
resource: local-process
env:
  GPUS: "{{gpus}}"
template_variables:
  gpus: {type: integer, min: 1, max: 8, default: 1}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A ``launchplane server`` with the queues ``wb`` and ``default``: (url, admin token)."""
    data_dir = tmp_path_factory.mktemp("server")
    with server_process(data_dir) as url:
        admin = (data_dir / "admin-token").read_text().strip()
        queue_file = data_dir / "queue.yaml"
        queue_file.write_text(QUEUE_YAML)
        for name in ("wb", "default"):
            created = invoke((url, admin), "queue", "create", name, "-f", str(queue_file))
            assert created.exit_code == 0, created.output
        yield url, admin


def invoke(server: tuple[str, str], *args: str) -> Result:
    url, token = server
    env = {"LAUNCHPLANE_TOKEN": None, "LAUNCHPLANE_SERVER": None, "WANDB_NAME": None}
    return CliRunner().invoke(cli, [*args, "--server", url, "--token", token], env=env)


def submitted(server: tuple[str, str], *args: str, command: str = "launch") -> dict[str, Any]:
    """The Job object of a successful ``launch ... --json``."""
    result = invoke(server, command, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_wandb_launch_flags_set_the_job(server: tuple[str, str]) -> None:
    job = submitted(
        server,
        "-q", "wb",
        "-E", "python train.py --epochs 3",
        "-d", "python:3.11",
        "-e", "team",
        "-p", "proj",
        "--name", "run-1",
        "-P", "high",
        "-v", "gpus=4",
        "--async",
    )  # fmt: skip
    resolved = job["resolved"]
    assert job["queue"] == "wb"
    assert resolved["entry_point"] == ["python", "train.py", "--epochs", "3"]
    assert resolved["docker"]["image"] == "python:3.11"
    assert (resolved["entity"], resolved["project"], resolved["name"]) == ("team", "proj", "run-1")
    assert resolved["priority"] == "high"
    assert resolved["env"] == {"GPUS": "4"}


def test_submit_and_launch_are_one_command(server: tuple[str, str], tmp_path: Path) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text("queue: wb\nentry_point: python train.py\nname: from-file\n")
    for command in ("submit", "launch"):
        job = submitted(server, str(job_file), "--name", "from-flag", command=command)
        assert job["queue"] == "wb" and job["resolved"]["name"] == "from-flag"
    top = CliRunner().invoke(cli, ["--help"])
    assert "launch " in top.output and "wandb launch" in top.output


def test_a_bare_q_is_the_default_queue(server: tuple[str, str]) -> None:
    assert submitted(server, "-E", "python x.py", "-q")["queue"] == "default"
    no_queue = invoke(server, "launch", "-E", "python x.py")
    assert no_queue.exit_code == 2
    assert "no queue: pass -q/--queue NAME (a bare -q is 'default')" in no_queue.stderr


@pytest.mark.parametrize("suffix", [".json", ".yaml", "inline"])
def test_config_and_resource_args_as_json_yaml_or_inline(
    server: tuple[str, str], tmp_path: Path, suffix: str
) -> None:
    spec: dict[str, Any] = {"hyperparameters": {"lr": 0.5}, "env": {"MODE": "fast"}}
    args = {"local-process": {"timeout_seconds": 60}}
    if suffix == "inline":
        config_value, args_value = json.dumps(spec), json.dumps(args)
    else:
        config_path, args_path = tmp_path / f"spec{suffix}", tmp_path / f"args{suffix}"
        config_path.write_text(json.dumps(spec))  # JSON is YAML too
        args_path.write_text(json.dumps(args))
        config_value, args_value = str(config_path), str(args_path)
    job = submitted(server, "-q", "wb", "-c", config_value, "-R", args_value)
    resolved = job["resolved"]
    assert resolved["hyperparameters"] == {"lr": 0.5}
    assert resolved["env"] == {"GPUS": "1", "MODE": "fast"}
    assert resolved["resource_args"] == args


def test_a_yaml_config_is_read_as_wandb_reads_it(server: tuple[str, str], tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("hyperparameters:\n  lr: 3e-4\n  warmup: yes\n  steps: 100\n")
    result = invoke(server, "launch", "-q", "wb", "-c", str(path), "--json")
    assert result.exit_code == 0, result.output
    hyperparameters = json.loads(result.stdout)["resolved"]["hyperparameters"]
    assert hyperparameters == {"lr": "3e-4", "warmup": True, "steps": 100}
    assert (
        f"warning: {path}: hyperparameters.lr: read as wandb reads it, 3e-4 is the string "
        "'3e-4'; launchplane's own files read the number 0.0003; quote it to say which"
    ) in result.stderr
    assert "hyperparameters.warmup: read as wandb reads it, yes is the boolean true" in (
        result.stderr
    )


def test_resource_args_are_dropped_with_template_variables_as_in_wandb(
    server: tuple[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"template_variables": {"gpus": 2}}))
    args = json.dumps({"local-process": {"timeout_seconds": 60}})
    result = invoke(server, "launch", "-q", "wb", "-c", str(path), "-R", args, "--json")
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.stdout)["resolved"]
    assert resolved["env"] == {"GPUS": "2"}
    assert "resource_args" not in resolved or resolved["resource_args"] == {}
    assert (
        "warning: Launch spec contains both resource_args and template_variables, "
        "only one can be set. Using template_variables."
    ) in result.stderr
    kept = submitted(server, "-q", "wb", "-R", args, "-v", "gpus=3")["resolved"]
    assert kept["resource_args"] == {"local-process": {"timeout_seconds": 60}}
    assert kept["env"] == {"GPUS": "3"}


def test_set_var_is_parsed_as_wandb_and_var_as_launchplane(server: tuple[str, str]) -> None:
    refused = invoke(server, "launch", "-q", "wb", "-v", "gpus=2=3", "--var", "bad")
    assert refused.exit_code == 2
    assert (
        '--set-var: --set-var value must be in the format "--set-var key1=value1", '
        "instead got: gpus=2=3"
    ) in refused.stderr
    assert "--var: 'bad': write NAME=VALUE" in refused.stderr
    typed = invoke(server, "launch", "-q", "wb", "-v", "gpus=many")
    assert typed.exit_code == 2 and "template_variables.gpus" in typed.stderr


def test_a_local_uri_is_the_jobs_code(server: tuple[str, str], tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    job = submitted(server, "-q", "wb", "-u", str(tmp_path / "code"), "-E", "python t.py")
    assert job["resolved"]["workdir"] == str((tmp_path / "code").resolve())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("-b",), "-b/--build: launchplane never builds on the submitter's machine"),
        (("-rg", "us-docker.pkg.dev/p/r"), "-rg/--repository: where images are pushed"),
        (("--repository", "r"), "-rg/--repository: where images are pushed"),
        (("-J", "my-job"), "-J/--job-name: launchplane does not create W&B job artifacts"),
        (("-P", "urgent"), "-P/--priority: 'urgent' is not a priority"),
        (("-B", "python:3.12", "-d", "python:3.11"), "-B/--base-image: give -B/--base-image"),
        (("--build-context", "src"), "--build-context: needs -u/--uri (as in W&B)"),
        (("-c", "{oops"), "-c/--config (line 1): not a JSON object, nor a .json/.yaml file"),
        (("-R", "[1]"), "--resource-args: must be a JSON object"),
    ],
)
def test_refusals_are_one_line_naming_the_flag(
    server: tuple[str, str], args: tuple[str, ...], expected: str
) -> None:
    result = invoke(server, "launch", "-q", "wb", *args)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.output


def test_async_cannot_wait(server: tuple[str, str]) -> None:
    result = invoke(server, "launch", "-q", "wb", "--async", "--wait")
    assert result.exit_code == 2
    assert "--async returns once the job is queued: drop --wait/--follow" in result.stderr


def test_project_queue_is_accepted_with_a_line(server: tuple[str, str]) -> None:
    result = invoke(server, "launch", "-q", "wb", "-pq", "model-registry")
    assert result.exit_code == 0, result.output
    assert "-pq/--project-queue ignored: launchplane queues are not scoped by project" in (
        result.stderr
    )


def test_plan_takes_the_same_flags(tmp_path: Path) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text("entry_point: python train.py\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("hyperparameters:\n  lr: 3e-4\n")
    result = CliRunner().invoke(
        cli, ["plan", str(job_file), "-d", "python:3.11", "-c", str(spec), "-P", "low", "--json"]
    )
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.stdout)["resolved"]
    assert resolved["docker"]["image"] == "python:3.11"
    assert resolved["hyperparameters"] == {"lr": "3e-4"} and resolved["priority"] == "low"


# -- what the config engine translates (the W&B spellings of core/config) ----------------------


def test_wandb_launch_spec_keys_in_a_config_file(server: tuple[str, str], tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(
        json.dumps(
            {
                "overrides": {"run_config": {"lr": 0.1}, "args": ["--fast"]},
                "docker": {"docker_image": "python:3.12"},
                "resource": None,
            }
        )
    )
    resolved = submitted(server, "-q", "wb", "-c", str(path))["resolved"]
    assert resolved["hyperparameters"] == {"lr": 0.1}
    assert resolved["args"] == ["--fast"]
    assert resolved["docker"]["image"] == "python:3.12"


def test_git_uri_and_version_flags(server: tuple[str, str]) -> None:
    resolved = submitted(
        server, "-q", "wb", "-u", "https://github.com/wandb/examples.git", "-g", "abc1234"
    )["resolved"]
    git = {key: value for key, value in resolved["git"].items() if value is not None}
    assert git == {"repository": "https://github.com/wandb/examples.git", "commit": "abc1234"}
    branch = submitted(server, "-q", "wb", "-u", "https://github.com/a/b.git", "-g", "main")
    assert branch["resolved"]["git"]["branch"] == "main"


def test_resource_must_be_the_queues_runner(server: tuple[str, str]) -> None:
    assert submitted(server, "-q", "wb", "-r", "local-process")["resolved"]["resource"] == (
        "local-process"
    )
    other = invoke(server, "launch", "-q", "wb", "-r", "kubernetes")
    assert other.exit_code == 2
    assert "kubernetes" in other.stderr and "local-process" in other.stderr


def test_resource_args_cannot_read_the_agents_environment(server: tuple[str, str]) -> None:
    args = json.dumps({"local-process": {"env": {"KEY": "${AWS_SECRET_ACCESS_KEY}"}}})
    refused = invoke(server, "launch", "-q", "wb", "-R", args)
    assert refused.exit_code == 2
    assert "AWS_SECRET_ACCESS_KEY" in refused.stderr


def test_job_dir_and_wandb_job_names(
    server: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "my-job"
    directory.mkdir()
    (directory / "wandb-job.json").write_text(
        json.dumps({"source_type": "image", "source": {"image": "ghcr.io/acme/train:1.2"}})
    )
    for flag in ("--job-dir", "-j"):
        job = submitted(server, "-q", "wb", flag, str(directory), "-E", "python t.py")
        assert job["resolved"]["docker"]["image"] == "ghcr.io/acme/train:1.2"
    for name in ("WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "no-wandb-config"))
    named = invoke(server, "launch", "-q", "wb", "-j", "test/test/test-job:v0")
    assert named.exit_code == 2
    assert "-j/--job: 'test/test/test-job:v0' is a W&B job" in named.stderr


def test_run_takes_the_same_flags(tmp_path: Path) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text("entry_point: python old.py\n")
    (tmp_path / "train.py").write_text(
        "import json, os, sys\n"
        "print('args', sys.argv[1:])\n"
        "print('hp', json.loads(os.environ['LAUNCHPLANE_HYPERPARAMETERS']))\n"
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text("hyperparameters:\n  lr: 3e-4\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHPLANE_")}
    env["LAUNCHPLANE_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [
            LAUNCHPLANE, "run", str(job_file), "--data-dir", str(tmp_path / "data"),
            "-E", f"{sys.executable} train.py --fast", "-c", str(spec),
        ],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "args ['--fast']" in done.stdout
    assert "hp {'lr': '3e-4'}" in done.stdout  # -c is read as W&B reads it

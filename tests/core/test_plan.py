"""``launchplane plan``: the resolved job and what the runner would submit, or every error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kit import plan, planned

from launchplane.core.yamlsafe import load_document


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "job": write(
            tmp_path / "job.yaml",
            """
            entry_point: train.py
            args: [--epochs, "3"]
            env:
              RUN_NAME: exp-${run_id}
              CUDA_HOME:
            """,
        ),
        "queue": write(
            tmp_path / "local.yaml",
            """
            resource: local-process
            passthrough_env: [CUDA_HOME]
            secrets:
              DB_PASSWORD: env:PLAN_TEST_DB_PASSWORD
            resource_args:
              local-process:
                timeout_seconds: "{{timeout}}"
            template_variables:
              timeout: {type: integer, default: 3600, min: 60, max: 86400}
            locked: [resource_args.local-process.nice]
            """,
        ),
    }


def test_plan_prints_the_resolved_job_and_what_would_run(files: dict[str, Path]) -> None:
    document = planned(files["job"], "--queue-config", files["queue"], "--var", "timeout=600")
    resolved = document["resolved"]
    assert resolved["queue"] == "local"
    assert resolved["resource"] == "local-process"
    assert resolved["env"] == {"RUN_NAME": "exp-${run_id}", "CUDA_HOME": None}
    assert resolved["resource_args"] == {"local-process": {"timeout_seconds": 600}}
    assert resolved["template_values"] == {"timeout": 600}
    would_submit = document["would_submit"]
    assert would_submit["argv"][1:] == ["train.py", "--epochs", "3"]
    assert would_submit["resource_args"] == {
        "timeout_seconds": 600.0,
        "isolation": "sandbox",  # the default: plan says the job runs in bubblewrap
        "read_only_paths": [],
    }


def test_secrets_are_shown_as_references_never_values(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAN_TEST_DB_PASSWORD", "hunter2-do-not-print")
    result = plan(files["job"], "--queue-config", files["queue"], "--json")
    assert result.exit_code == 0
    assert "hunter2" not in result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["resolved"]["secrets"] == {"DB_PASSWORD": "env:PLAN_TEST_DB_PASSWORD"}
    assert document["would_submit"]["secrets"] == {"DB_PASSWORD": "env:PLAN_TEST_DB_PASSWORD"}


def test_overrides_apply_in_order(files: dict[str, Path], tmp_path: Path) -> None:
    args_file = write(tmp_path / "ra.json", '{"kubernetes": {"requests": {"memory": "64Gi"}}}')
    document = planned(
        files["job"],
        "--queue-config",
        files["queue"],
        "--set",
        "env.LR=3e-4",
        "--set",
        "env.LR=1e-3",
        "--set",
        'resource_args.kubernetes.requests."nvidia.com/gpu"=4',
        "--resource-args",
        args_file,
    )
    resolved = document["resolved"]
    assert resolved["env"]["LR"] == "0.001"
    assert resolved["resource_args"]["kubernetes"] == {
        "requests": {"nvidia.com/gpu": 4, "memory": "64Gi"}
    }
    inline = planned(
        files["job"],
        "--queue-config",
        files["queue"],
        "--override-resource-args",
        '{"kubernetes": {"requests": {"nvidia.com/gpu": "4"}}}',
    )
    assert inline["resolved"]["resource_args"]["kubernetes"] == {
        "requests": {"nvidia.com/gpu": "4"}
    }


def test_invalid_input_exits_2_with_every_error_and_its_path(files: dict[str, Path]) -> None:
    result = plan(
        files["job"],
        "--queue-config",
        files["queue"],
        "--var",
        "timeout=5",
        "--var",
        "timout=9",
        "--set",
        "resource_args.local-process.nice=5",
        "--set",
        "secrets.X=env:X",
        "--set",
        "env.HOME_COPY=${HOME}",
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {files['job']}: 5 problems:"
    assert sorted(line.split(":")[0] for line in lines[1:]) == [
        "  - env.HOME_COPY",
        "  - resource_args.local-process.nice",
        "  - secrets",
        "  - template_variables.timeout",
        "  - template_variables.timout",
    ]
    assert "(did you mean 'timeout'?)" in result.stderr
    assert "5 is below the minimum 60 (an integer from 60 to 86400)" in result.stderr


def test_malformed_command_line_values_are_all_reported(files: dict[str, Path]) -> None:
    result = plan(
        files["job"], "--set", "a..b=1", "--set", "nothing", "--var", "x", "--resource-args", "[1]"
    )
    assert result.exit_code == 2
    assert "error: 4 problems:" in result.stderr
    for text in ("empty key", "has no '='", "write NAME=VALUE", "must be a JSON object"):
        assert text in result.stderr


def test_runner_model_errors_suggest_the_right_key(files: dict[str, Path]) -> None:
    result = plan(
        files["job"],
        "--queue-config",
        files["queue"],
        "--set",
        "resource_args.local-process.nicety=3",
    )
    assert result.exit_code == 2
    assert "resource_args.local-process.nicety: unknown key (did you mean 'nice'?)" in result.stderr


def test_a_job_the_runner_cannot_start_is_invalid(tmp_path: Path, files: dict[str, Path]) -> None:
    job = write(tmp_path / "nothing.yaml", "env: {A: '1'}\n")
    result = plan(job, "--queue-config", files["queue"])
    assert result.exit_code == 2
    assert "runner 'local-process': the job has neither 'command' nor 'entry_point'" in (
        result.stderr
    )


def test_runner_not_installed_is_a_note(tmp_path: Path, files: dict[str, Path]) -> None:
    queue = write(tmp_path / "k8s.yaml", "resource: no-such-runner\n")
    result = plan(files["job"], "--queue-config", queue, "--set", "env.CUDA_HOME=/usr/cuda")
    assert result.exit_code == 0, result.stderr
    assert "note: runner 'no-such-runner' is not installed here" in result.stderr
    document = load_document(result.stdout, source="out")
    assert "would_submit" not in document
    assert document["resolved"]["resource"] == "no-such-runner"


def test_without_a_queue_config(files: dict[str, Path]) -> None:
    result = plan(files["job"], "--set", "env.CUDA_HOME=/usr/local/cuda")
    assert result.exit_code == 0, result.stderr
    assert "note: no --queue-config" in result.stderr
    assert load_document(result.stdout, source="out")["resolved"]["resource"] == "local-process"


def test_warnings_are_shown_even_when_the_plan_fails(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    queue = write(
        tmp_path / "q.yaml", "template_variables:\n  spare: {type: integer, default: 1}\n"
    )
    job = write(tmp_path / "job.yaml", "hyperparameters: {size: '{{size}}'}\nsecrets: {A: env:A}\n")
    result = plan(job, "--queue-config", queue)
    assert result.exit_code == 2
    assert f"warning: {queue}: template_variables.spare: declared but no field uses" in (
        result.stderr
    )
    assert f"warning: {job}: hyperparameters.size: {{{{size}}}} stays as text" in result.stderr
    assert "secrets: secrets belong to the queue config" in result.stderr


def test_invalid_queue_config_names_the_queue_file(tmp_path: Path, files: dict[str, Path]) -> None:
    queue = write(tmp_path / "q.yaml", "env: {A: '{{nope}}'}\nretries: 3\n")
    result = plan(files["job"], "--queue-config", queue)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {queue}: 2 problems:")


def test_missing_files_and_yaml_errors_exit_2(tmp_path: Path, files: dict[str, Path]) -> None:
    result = plan(tmp_path / "missing.yaml")
    assert result.exit_code == 2
    assert "missing.yaml: <root>: file not found" in result.stderr
    bad = write(tmp_path / "bad.yaml", "a: !!python/object:os.system ls\n")
    result = plan(bad)
    assert result.exit_code == 2
    assert "a (line 1): tag !!python/object:os.system is not allowed" in result.stderr


def test_a_third_party_runner_describes_its_submission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, Path]
) -> None:
    write(
        tmp_path / "plugins" / "plan_test_slurm.py",
        """
        from typing import Any, ClassVar
        from pydantic import BaseModel, ConfigDict
        from launchplane import Runner, hookimpl

        class SlurmArgs(BaseModel):
            model_config = ConfigDict(extra="forbid")
            partition: str = "gpu"
            nodes: int = 1

        class SlurmRunner(Runner):
            name: ClassVar[str] = "slurm"
            resource_args_model = SlurmArgs

            def describe(self, job: Any, image: Any) -> dict[str, Any]:
                args = SlurmArgs.model_validate(job.resource_args.get("slurm", {}))
                return {"sbatch": ["--partition", args.partition, "--nodes", str(args.nodes)],
                        "image": image.ref if image else None}

            async def submit(self, job: Any, image: Any, ctx: Any) -> Any:
                raise AssertionError("plan never submits")

        @hookimpl
        def launchplane_register_runners(register):
            register(SlurmRunner)
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    queue = write(tmp_path / "slurm.yaml", "resource: slurm\ndocker: {image: 'hpc/train:1'}\n")
    document = planned(
        files["job"],
        "--queue-config",
        queue,
        "--plugins",
        "plan_test_slurm",
        "--set",
        "resource_args.slurm.nodes=4",
        "--set",
        "env.CUDA_HOME=/cuda",
    )
    assert document["would_submit"] == {
        "sbatch": ["--partition", "gpu", "--nodes", "4"],
        "image": "hpc/train:1",
    }
    result = plan(
        files["job"],
        "--queue-config",
        queue,
        "--plugins",
        "plan_test_slurm",
        "--set",
        "resource_args.slurm.node=4",
        "--set",
        "env.CUDA_HOME=/cuda",
    )
    assert "resource_args.slurm.node: unknown key (did you mean 'nodes'?)" in result.stderr


def test_a_plugin_that_fails_to_load_is_a_note(files: dict[str, Path]) -> None:
    result = plan(files["job"], "--queue-config", files["queue"], "--plugins", "no_such_plugin_mod")
    assert result.exit_code == 0
    assert "note: plugin 'no_such_plugin_mod' not loaded" in result.stderr


def test_plan_as_a_real_process(files: dict[str, Path]) -> None:
    command = [sys.executable, "-m", "launchplane.cli"]
    script = Path(sys.executable).with_name("launchplane")
    if script.exists():
        command = [str(script)]
    done = subprocess.run(
        [*command, "plan", str(files["job"]), "--queue-config", str(files["queue"]), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["resolved"]["resource_args"] == {
        "local-process": {"timeout_seconds": 3600}
    }
    failed = subprocess.run(
        [*command, "plan", str(files["job"]), "--set", "secrets.A=env:A"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 2
    assert "secrets: secrets belong to the queue config" in failed.stderr


def test_importing_the_command_imports_nothing_heavy() -> None:
    code = (
        "import sys, launchplane.cli.plan as p; "
        "print(sorted(m for m in sys.modules if m in ("
        "'yaml', 'launchplane.core.config', 'launchplane.core.templates', "
        "'launchplane.core.plugins', 'launchplane.core.yamlsafe')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_strict_plugins_makes_a_plugin_that_fails_to_load_fatal(files: dict[str, Path]) -> None:
    result = plan(
        files["job"],
        "--queue-config",
        files["queue"],
        "--plugins",
        "no_such_plugin_mod",
        "--strict-plugins",
    )
    assert result.exit_code == 1
    assert "no_such_plugin_mod" in result.stderr and "--strict-plugins" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("queue_text", "path", "fragment"),
    [
        (
            "resource_args:\n  local-process:\n    timeout: 5\n",
            "resource_args.local-process.timeout",
            "did you mean 'timeout_seconds'",
        ),
        ("secrets:\n  HF_TOKEN: evn:HF_TOKEN\n", "secrets.HF_TOKEN", "did you mean 'env'"),
    ],
)
def test_a_queue_the_installed_plugins_refuse_is_invalid_without_check_secrets(
    tmp_path: Path, files: dict[str, Path], queue_text: str, path: str, fragment: str
) -> None:
    queue = write(tmp_path / "bad-queue.yaml", queue_text)
    result = plan(files["job"], "--queue-config", queue, "--set", "env.CUDA_HOME=/usr/cuda")
    assert result.exit_code == 2
    assert f"{path}: " in result.stderr and fragment in result.stderr
    assert str(queue) in result.stderr


@pytest.mark.parametrize("command", ["plan", "plugins"])
def test_a_plugin_that_fails_to_load_is_reported_once(
    files: dict[str, Path], tmp_path: Path, command: str
) -> None:
    """The command lists load failures itself; the loader's own log line would repeat it."""
    write(tmp_path / "plugins" / "plan_broken_plugin.py", "raise RuntimeError('boom at import')\n")
    script = Path(sys.executable).with_name("launchplane")
    args = [str(files["job"]), "--queue-config", str(files["queue"])] if command == "plan" else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "plugins"), *sys.path])}
    done = subprocess.run(
        [str(script), command, *args, "--plugins", "plan_broken_plugin"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert output.count("boom at import") == 1, output


def test_a_blocked_runner_is_named_as_blocked(files: dict[str, Path]) -> None:
    result = plan(files["job"], "--queue-config", files["queue"], "--plugins", "no:local-process")
    assert result.exit_code == 0, result.stderr
    assert "runner 'local-process' comes from plugin 'local-process', which is blocked" in (
        result.stderr
    )
    assert "would_submit" not in load_document(result.stdout, source="out")


def test_plan_reads_a_wandb_queue_body_with_type(tmp_path: Path) -> None:
    # The body as W&B's UI holds it: docker run flags for local-container.
    body = write(tmp_path / "lc.yaml", "memory: 2g\ne: [A=1]\ngpus: all\n")
    job = write(tmp_path / "job.yaml", "docker: {image: 'python:3.11'}\nentry_point: train.py\n")
    document = planned(job, "--queue-config", body, "--type", "local-container")
    assert document["resolved"]["resource"] == "docker"
    docker = document["resolved"]["resource_args"]["docker"]
    assert docker == {"memory": "2g", "env": {"A": "1"}, "gpus": "all"}
    assert document["would_submit"]["mem_limit"] == 2 * 1024**3

"""README.md promises two commands; CI and the examples must keep them true."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from launchplane.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    """The one-line shell commands of the README's quick start, in order."""
    text = (ROOT / "README.md").read_text()
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", quick_start)


def test_quick_start_has_the_run_and_the_test_command() -> None:
    run_command, test_command = readme_commands()
    assert "launchplane run examples/hello/job.yaml" in run_command
    assert "pytest" in test_command


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, test_command = readme_commands()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_the_readme_plan_example_resolves() -> None:
    result = CliRunner().invoke(
        cli,
        [
            "plan",
            str(ROOT / "examples/hello/job.yaml"),
            "--queue-config",
            str(ROOT / "examples/local-queue.yaml"),
            "--set",
            "hyperparameters.epochs=20",
            "--var",
            "timeout_seconds=120",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "timeout_seconds: 120" in result.stdout


def test_the_readme_wandb_launch_example_resolves() -> None:
    # README: launchplane launch examples/hello/job.yaml -q gpu -c examples/wandb/launch-spec.json
    #         --set-var timeout_seconds=120 (planned here against the same queue config).
    result = CliRunner().invoke(
        cli,
        [
            "plan",
            str(ROOT / "examples/hello/job.yaml"),
            "--queue-config",
            str(ROOT / "examples/local-queue.yaml"),
            "-c",
            str(ROOT / "examples/wandb/launch-spec.json"),
            "--set-var",
            "timeout_seconds=120",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.stdout)["resolved"]
    assert resolved["hyperparameters"] == {"epochs": 50, "lr": 0.25}
    assert resolved["args"] == ["--seed", "11"]
    assert (resolved["name"], resolved["priority"]) == ("hello-from-wandb", "high")
    assert resolved["resource_args"]["local-process"]["timeout_seconds"] == 120

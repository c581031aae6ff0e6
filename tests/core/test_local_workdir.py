"""A job file names its local code relative to itself; every command agrees."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from launchplane.cli import cli
from launchplane.core.config import resolve_local_workdir


def test_relative_workdir_is_made_absolute_against_the_job_file(tmp_path: Path) -> None:
    job_file = tmp_path / "jobs" / "job.yaml"
    job_file.parent.mkdir()
    resolved = resolve_local_workdir({"workdir": "../code"}, job_file)
    assert resolved["workdir"] == str((tmp_path / "code").resolve())


def test_absolute_workdir_and_git_jobs_are_left_alone(tmp_path: Path) -> None:
    job_file = tmp_path / "job.yaml"
    assert resolve_local_workdir({"workdir": "/srv/code"}, job_file) == {"workdir": "/srv/code"}
    git_job = {"git": {"repository": "https://example.invalid/r.git"}, "workdir": "sub"}
    assert resolve_local_workdir(git_job, job_file) == git_job


def test_plan_runs_local_code_from_the_job_files_directory(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("workdir: .\nentry_point: train.py\n")
    result = CliRunner().invoke(
        cli, ["plan", str(tmp_path / "job.yaml"), "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["resolved"]["workdir"] == str(tmp_path.resolve())

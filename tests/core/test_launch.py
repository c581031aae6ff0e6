"""The launch helpers every runner and builder shares: command line, code location, run labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from launchplane.core.interfaces import JobContext, PluginError
from launchplane.core.launch import (
    builder_name,
    code_root,
    entry_argv,
    job_argv,
    preview_labels,
    run_labels,
)
from launchplane.core.spec import ResolvedJob


@pytest.mark.parametrize(
    ("fields", "argv"),
    [
        ({"command": ["bash", "-c", "x"], "args": ["a"], "entry_point": "ignored.py"},
         ["bash", "-c", "x", "a"]),
        ({"entry_point": "train.py --fast", "args": ["--lr", "0.1"]},
         ["py", "train.py", "--fast", "--lr", "0.1"]),
        ({"entry_point": ["run.sh", "x"]}, ["run.sh", "x"]),
        ({"args": ["--epochs", "3"]}, ["--epochs", "3"]),  # for the image's ENTRYPOINT
        ({}, None),  # the image's CMD
    ],
)  # fmt: skip
def test_job_argv(fields: dict[str, object], argv: list[str] | None) -> None:
    assert job_argv(ResolvedJob.model_validate(fields), python="py") == argv


def test_entry_argv_runs_python_scripts_with_the_given_python() -> None:
    assert entry_argv("train.py --fast") == ["python", "train.py", "--fast"]
    assert entry_argv("train.py", python="/venv/bin/python") == ["/venv/bin/python", "train.py"]
    assert entry_argv(None) is None


def context(tmp_path: Path, code_dir: Path | None = None) -> JobContext:
    return JobContext("j", "j-2", 2, "q", tmp_path / "run", code_dir=code_dir, labels={"a": "b"})


def test_code_root(tmp_path: Path) -> None:
    checkout = tmp_path / "code"
    assert code_root(ResolvedJob(workdir="sub"), context(tmp_path, checkout)) == checkout / "sub"
    assert code_root(ResolvedJob(), context(tmp_path, checkout)) == checkout
    assert code_root(ResolvedJob(workdir="/srv/app"), context(tmp_path)) == Path("/srv/app")
    assert code_root(ResolvedJob(), context(tmp_path)) is None
    with pytest.raises(PluginError, match="workdir 'sub' is relative and the job has no git code"):
        code_root(ResolvedJob(workdir="sub"), context(tmp_path))


def test_run_labels_identify_the_run_and_win_over_plugin_labels(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    ctx.labels["launchplane.run_id"] = "forged"
    assert run_labels(ctx) == {
        "a": "b",
        "launchplane.job_id": "j",
        "launchplane.attempt": "2",
        "launchplane.run_id": "j-2",
        "launchplane.queue": "q",
    }
    assert preview_labels(ResolvedJob())["launchplane.run_id"] == "<job_id>-<attempt>"


def test_builder_name_defaults_to_noop() -> None:
    assert builder_name(ResolvedJob()) == "noop"
    assert builder_name(ResolvedJob(builder={"type": "docker"})) == "docker"

"""Error messages of the configuration engine: which layer, which value, which runner."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from launchplane.cli import cli
from launchplane.core.config import parse_resource_args, parse_set, resolve_job
from launchplane.core.errors import (
    ConfigError,
    FieldError,
    from_validation_error,
    runner_message,
    without_runner_label,
)
from launchplane.plugins.runners.local import LocalProcessArgs

LOCAL = {"resource": "local-process"}
JOB: dict[str, Any] = {"entry_point": "train.py"}


def problems(*args: Any, **kwargs: Any) -> list[FieldError]:
    with pytest.raises(ConfigError) as caught:
        resolve_job(*args, **kwargs)
    return caught.value.errors


# --- which layer ------------------------------------------------------------------------


def test_a_runner_model_error_names_the_set_that_caused_it() -> None:
    [error] = problems(
        LOCAL,
        JOB,
        [parse_set("resource_args.local-process.nice=99")],
        resource_args_model=LocalProcessArgs,
    )
    assert error.path == "resource_args.local-process.nice"
    assert error.message == (
        "Input should be less than or equal to 19 (got 99) "
        "(from --set resource_args.local-process.nice=99)"
    )
    assert error.origin == "from --set resource_args.local-process.nice=99"


def test_the_layer_that_set_a_path_last_is_named() -> None:
    overrides = [
        parse_set("resource_args.local-process.nice=99"),
        parse_resource_args('{"local-process": {"nice": 42, "timeout_seconds": 5}}'),
        parse_set("resource_args.local-process.timeout_seconds=-1"),
    ]
    errors = problems(LOCAL, JOB, overrides, resource_args_model=LocalProcessArgs)
    assert {error.path: error.origin for error in errors} == {
        "resource_args.local-process.nice": "from --resource-args",
        "resource_args.local-process.timeout_seconds": (
            "from --set resource_args.local-process.timeout_seconds=-1"
        ),
    }


def test_a_mapping_replaced_whole_is_the_replacing_layer_s() -> None:
    # The job has no git; the override creates the mapping, so its missing field is the override's.
    [error] = problems({}, JOB, [parse_set("git.commit=abc123")])
    assert (error.path, error.message) == (
        "git.repository",
        "Field required (from --set git.commit=abc123)",
    )
    job = {**JOB, "git": {"repository": "https://example.com/r.git"}}
    replaced = problems({}, job, [parse_set("git=null"), parse_set("git.commit=abc123")])
    assert [error.origin for error in replaced] == ["from --set git.commit=abc123"]


def test_problems_of_the_job_file_stay_unlabelled() -> None:
    job = {**JOB, "resource_args": {"local-process": {"nice": 99}}}
    [error] = problems(LOCAL, job, [parse_set("env.A=1")], resource_args_model=LocalProcessArgs)
    assert error.origin is None
    assert error.message == "Input should be less than or equal to 19 (got 99)"
    [python] = problems(
        LOCAL,
        JOB,
        [{"resource_args": {"local-process": {"nicer": 1}}}],
        resource_args_model=LocalProcessArgs,
    )
    assert python.message == "unknown key (did you mean 'nice'?) (in override 1)"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_plan_names_the_set_not_the_job_file(tmp_path: Path) -> None:
    job = write(tmp_path / "job.yaml", "entry_point: train.py\n")
    queue = write(tmp_path / "q.yaml", "resource: local-process\n")
    result = CliRunner().invoke(
        cli,
        [
            "plan",
            str(job),
            "--queue-config",
            str(queue),
            "--set",
            "resource_args.local-process.nice=99",
        ],
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "error: resource_args.local-process.nice: Input should be less than or equal to 19 "
        "(got 99) (from --set resource_args.local-process.nice=99)\n"
    )
    bad_file = write(
        tmp_path / "bad.yaml", "entry_point: train.py\nresource_args: {local-process: {nice: 99}}\n"
    )
    result = CliRunner().invoke(cli, ["plan", str(bad_file), "--queue-config", str(queue)])
    assert result.stderr.startswith(f"error: {bad_file}: resource_args.local-process.nice: ")


# --- which value ------------------------------------------------------------------------


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shm_size: str | None = None
    count: int = 1
    env: dict[str, str] = {}
    api_token: int | None = None
    tags: list[str] = []
    url: int | None = None
    mode: str = "fast"
    size: int = Field(default=1, le=8)

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in ("fast", "slow"):
            raise ValueError("mode must be fast or slow")
        return value


def messages(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        _Args.model_validate(data)
    return {e.path: e.message for e in from_validation_error(caught.value, model=_Args)}


def test_pydantic_messages_quote_the_value_given() -> None:
    assert messages({"shm_size": 5, "count": "many", "size": 9, "tags": [1]}) == {
        "shm_size": "Input should be a valid string (got 5)",
        "count": (
            "Input should be a valid integer, unable to parse string as an integer (got 'many')"
        ),
        "size": "Input should be less than or equal to 8 (got 9)",
        "tags.0": "Input should be a valid string (got 1)",
    }


def test_long_strings_are_cut_and_containers_named_by_kind() -> None:
    assert messages({"count": "x" * 100, "tags": {"a": 1}, "size": [1, 2]}) == {
        "count": "Input should be a valid integer, unable to parse string as an integer "
        f"(got {'x' * 37!r}...)",
        "tags": "Input should be a valid list (got a mapping)",
        "size": "Input should be a valid integer (got a list)",
    }


def test_values_that_may_be_secret_are_never_quoted() -> None:
    assert messages(
        {
            "env": {"HF_TOKEN": 12345678},
            "api_token": "hunter2hunter2",
            "count": "https://u:p4ss@h/x",
        }
    ) == {
        "env.HF_TOKEN": "Input should be a valid string",
        "api_token": "Input should be a valid integer, unable to parse string as an integer",
        "count": "Input should be a valid integer, unable to parse string as an integer",
    }


def test_a_validator_s_own_message_is_left_as_its_author_wrote_it() -> None:
    assert messages({"mode": "medium", "other": "x"}) == {
        "mode": "Value error, mode must be fast or slow",
        "other": "unknown key",
    }


def test_a_job_s_env_is_not_quoted_in_a_resolution_error() -> None:
    errors = problems(LOCAL, {**JOB, "env": "HF_TOKEN=s3cr3t-value", "args": [{"a": 1}]})
    assert {e.path: e.message for e in errors} == {
        "env": "Input should be a valid dictionary",
        "args.0": "Input should be a valid string (got a mapping)",
    }


# --- which runner -----------------------------------------------------------------------


def test_runner_message_labels_once() -> None:
    assert runner_message("slurm", "no partition") == "runner 'slurm': no partition"
    assert runner_message("slurm", "runner 'slurm': no partition") == "runner 'slurm': no partition"
    assert runner_message("slurm", "runner 'other': x") == "runner 'slurm': runner 'other': x"
    assert without_runner_label("slurm", "Value error, runner 'slurm': bad") == "Value error, bad"
    assert without_runner_label("slurm", "runner 'slurm': bad") == "bad"


class _Labelled(BaseModel):
    partition: str = "gpu"

    @field_validator("partition")
    @classmethod
    def _known(cls, value: str) -> str:
        if value != "gpu":
            raise ValueError(f"runner 'slurm': unknown partition {value!r}")
        return value


def test_a_runner_model_message_that_names_its_runner_is_not_labelled_twice() -> None:
    job = {**JOB, "resource_args": {"slurm": {"partition": "cpu"}}}
    [error] = problems({"resource": "slurm"}, job, resource_args_model=_Labelled)
    assert str(error) == "resource_args.slurm.partition: Value error, unknown partition 'cpu'"


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[name]


def test_plan_labels_a_describe_error_with_its_runner_once(
    plugin_dir: Path, tmp_path: Path
) -> None:
    write(
        plugin_dir / "config_messages_slurm.py",
        """
        from typing import Any, ClassVar
        from launchplane import Runner, hookimpl
        from launchplane.core.interfaces import PluginError

        class SlurmRunner(Runner):
            name: ClassVar[str] = "slurm"
            needs_image: ClassVar[bool] = False

            def describe(self, job: Any, image: Any) -> dict[str, Any]:
                raise PluginError("runner 'slurm': sbatch is not installed")

            async def submit(self, job: Any, image: Any, ctx: Any) -> Any:
                raise PluginError("sbatch is not installed")

        @hookimpl
        def launchplane_register_runners(register):
            register(SlurmRunner)
        """,
    )
    job = write(tmp_path / "job.yaml", "entry_point: train.py\n")
    queue = write(tmp_path / "slurm.yaml", "resource: slurm\n")
    result = CliRunner().invoke(
        cli, ["plan", str(job), "--queue-config", str(queue), "--plugins", "config_messages_slurm"]
    )
    assert result.exit_code == 2
    assert result.stderr.count("runner 'slurm': ") == 1, result.stderr
    assert "runner 'slurm': sbatch is not installed" in result.stderr

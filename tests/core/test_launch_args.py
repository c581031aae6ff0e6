"""W&B's ``launch_add`` keywords and ``wandb launch`` flags as layers, and ``launchplane.submit``
taking every ``launch_add`` keyword against a real server on a loopback port."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from kit import running_agent

import launchplane
from launchplane.core.client import QueuedJob, asubmit
from launchplane.core.errors import ConfigError
from launchplane.core.launch_args import (
    SET_VAR_MESSAGE,
    STRIP_WARNING,
    LaunchArgs,
    LaunchSpecWarning,
    launch_layers,
    parse_set_var,
    parse_set_vars,
    read_launch_document,
)
from launchplane.server.embedded import EmbeddedServer

QUEUE_CONFIG = {
    "resource": "local-process",
    "template_variables": {"gpus": {"type": "integer", "min": 1, "max": 8, "default": 1}},
    "env": {"GPUS": "{{gpus}}"},
}


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {error.path: error.message for error in exc.value.errors}


# -- --set-var ---------------------------------------------------------------------------


def test_set_var_is_parsed_as_wandb_parses_it() -> None:
    assert parse_set_var("gpus=4") == {"gpus": "4"}
    assert parse_set_var("name=") == {"name": ""}
    with pytest.raises(ConfigError) as caught:
        parse_set_vars(["a=1", "url=http://x?y=z", "novalue", "=1"])
    assert [e.message for e in caught.value.errors] == [
        SET_VAR_MESSAGE.format("url=http://x?y=z"),
        SET_VAR_MESSAGE.format("novalue"),
        SET_VAR_MESSAGE.format("=1"),
    ]
    assert SET_VAR_MESSAGE.format("a=b=c") == (
        '--set-var value must be in the format "--set-var key1=value1", instead got: a=b=c'
    )


# -- flags and keywords --------------------------------------------------------------------


def test_each_flag_sets_its_field_over_the_job_file(tmp_path: Path) -> None:
    args = LaunchArgs(
        job="trainer",  # a plain name; entity/project/name:alias is fetched from W&B
        entity="team",
        project="proj",
        name="run-1",
        author="ada",
        sweep_id="sw1",
        run_id="wandb-run-7",
        entry_point="python train.py --lr '1e-3'",
        docker_image="python:3.11",
        dockerfile="Dockerfile.train",
        version="abc1234",
        resource="local-process",
        priority=1,
    )
    job = {"entry_point": "python old.py", "docker": {"image": "old"}, "env": {"A": "1"}}
    layers = launch_layers(args, job)
    assert layers.job == {
        "entry_point": ["python", "train.py", "--lr", "1e-3"],
        "docker": {"image": "python:3.11", "dockerfile": "Dockerfile.train"},
        "env": {"A": "1"},
        "job": "trainer",
        "entity": "team",
        "project": "proj",
        "name": "run-1",
        "author": "ada",
        "sweep_id": "sw1",
        "wandb_run_id": "wandb-run-7",
        "git": {"version": "abc1234"},  # W&B's key: the config engine picks commit or branch
        "resource": "local-process",  # W&B's key: the engine checks it names the queue's runner
        "priority": "high",
    }
    assert layers.overrides == [] and layers.warnings == []
    assert job == {"entry_point": "python old.py", "docker": {"image": "old"}, "env": {"A": "1"}}


def test_the_launch_spec_and_resource_args_are_layers_above_the_job() -> None:
    spec = {"overrides": {"run_config": {"lr": 0.1}}, "template_variables": {"gpus": 2}}
    layers = launch_layers(
        LaunchArgs(config=spec, config_origin="-c spec.json", template_variables={"gpus": "4"})
    )
    assert layers.overrides == [spec] and layers.overrides[0].origin == "-c spec.json"
    assert layers.template_values == {"gpus": "4"}  # given ones win over the spec's (resolve)
    only_args = launch_layers(LaunchArgs(resource_args={"local-process": {"nice": 5}}))
    assert only_args.overrides == [{"resource_args": {"local-process": {"nice": 5}}}]
    assert only_args.overrides[0].origin == "resource_args="


@pytest.mark.parametrize(
    ("config", "resource_args"),
    [
        ({"template_variables": {"gpus": 2}, "resource_args": {"kubernetes": {"a": 1}}}, None),
        ({"template_variables": {"gpus": 2}}, {"kubernetes": {"a": 1}}),
    ],
)
def test_wandb_drops_resource_args_when_the_spec_has_template_variables(
    config: dict[str, Any], resource_args: dict[str, Any] | None
) -> None:
    layers = launch_layers(LaunchArgs(config=config, resource_args=resource_args))
    assert layers.overrides == [{"template_variables": {"gpus": 2}}]
    assert layers.warnings == [STRIP_WARNING]
    assert STRIP_WARNING == (
        "Launch spec contains both resource_args and template_variables, "
        "only one can be set. Using template_variables."
    )
    assert config.get("resource_args") in (None, {"kubernetes": {"a": 1}})  # input untouched


def test_resource_args_stay_with_values_given_apart_from_the_spec() -> None:
    layers = launch_layers(
        LaunchArgs(resource_args={"kubernetes": {"a": 1}}, template_variables={"gpus": 2})
    )
    assert layers.overrides == [{"resource_args": {"kubernetes": {"a": 1}}}]
    assert layers.warnings == []


def test_a_local_uri_is_the_workdir_anything_else_goes_on_as_wandb_uri(tmp_path: Path) -> None:
    code = tmp_path / "code"
    (code / "src").mkdir(parents=True)
    assert launch_layers(LaunchArgs(uri=str(code))).job == {"workdir": str(code.resolve())}
    with_context = LaunchArgs(uri=str(code), build_context="src")
    assert launch_layers(with_context).job == {"workdir": str((code / "src").resolve())}
    remote = LaunchArgs(uri="https://github.com/wandb/examples.git", build_context="jobs/a")
    assert launch_layers(remote).job == {
        "uri": "https://github.com/wandb/examples.git",
        "workdir": "jobs/a",
    }


@pytest.mark.parametrize(
    ("args", "cli_errors", "python_errors"),
    [
        (
            LaunchArgs(build=True),
            {"-b/--build": "launchplane never builds on the submitter's machine"},
            {"build=": "launchplane never builds on the submitter's machine"},
        ),
        (
            LaunchArgs(repository="us-docker.pkg.dev/p/r"),
            {"-rg/--repository": "builder.options.registry in the queue config"},
            {"repository=": "builder.options.registry in the queue config"},
        ),
        (
            LaunchArgs(job_name="my-job"),
            {"-J/--job-name": "does not create W&B job artifacts"},
            {"job_name=": "does not create W&B job artifacts"},
        ),
        (
            LaunchArgs(uri="https://github.com/a/b.git", job="trainer"),
            {"-u/--uri": "give -u/--uri or -j/--job, not both"},
            {"uri=": "give uri= or job=, not both"},
        ),
        (
            LaunchArgs(docker_image="python:3.11", base_image="python:3.12"),
            {"-B/--base-image": "give -B/--base-image (an image to build the code on) or"},
            {"base_image=": "give base_image= (an image to build the code on) or"},
        ),
        (
            LaunchArgs(build_context="src"),
            {"--build-context": "needs -u/--uri (as in W&B)"},
            {"build_context=": "needs uri= (as in W&B)"},
        ),
        (
            LaunchArgs(priority="urgent"),
            {"-P/--priority": "'urgent' is not a priority: critical, high, medium or low"},
            {"priority=": "'urgent' is not a priority: critical, high, medium or low"},
        ),
        (
            LaunchArgs(priority=7),
            {"-P/--priority": "7 is not a priority"},
            {"priority=": "7 is not a priority"},
        ),
    ],
)
def test_what_launchplane_does_not_do_is_refused_naming_the_flag_or_keyword(
    args: LaunchArgs, cli_errors: dict[str, str], python_errors: dict[str, str]
) -> None:
    for cli, expected in ((True, cli_errors), (False, python_errors)):
        with pytest.raises(ConfigError) as caught:
            launch_layers(args, cli=cli)
        found = problems(caught)
        assert set(found) == set(expected)
        for path, text in expected.items():
            assert text in found[path]


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        launch_layers(LaunchArgs(build=True, priority="urgent", entry_point="python 'x"), cli=True)
    assert set(problems(caught)) == {"-b/--build", "-P/--priority", "-E/--entry-point"}


@pytest.mark.parametrize("priority", ["critical", "HIGH", " low ", 0, 3])
def test_priority_names_and_wandb_numbers(priority: str | int) -> None:
    names = {0: "critical", 3: "low", "HIGH": "high", " low ": "low", "critical": "critical"}
    assert launch_layers(LaunchArgs(priority=priority)).job == {"priority": names[priority]}


def test_project_queue_is_accepted_with_a_line() -> None:
    layers = launch_layers(LaunchArgs(project_queue="model-registry"), cli=True)
    assert layers.warnings == [
        "-pq/--project-queue ignored: launchplane queues are not scoped by project"
    ]


def wandb_job_dir(path: Path) -> Path:
    """A downloaded W&B image job in W&B's layout (``wandb-job.json``)."""
    path.mkdir()
    (path / "wandb-job.json").write_text(
        json.dumps(
            {
                "source_type": "image",
                "source": {"image": "ghcr.io/acme/train:1.2"},
                "input_types": {},
                "output_types": {},
                "runtime": "Python 3.11",
            }
        )
    )
    return path


def test_a_downloaded_wandb_job_is_the_lowest_layer(tmp_path: Path) -> None:
    directory = wandb_job_dir(tmp_path / "my-job")
    for args in (LaunchArgs(job_dir=str(directory)), LaunchArgs(job=str(directory))):
        layers = launch_layers(args, {"name": "from-the-job-file"})
        assert layers.job["docker"]["image"] == "ghcr.io/acme/train:1.2"
        assert layers.job["name"] == "from-the-job-file"
        assert "job" not in layers.job or layers.job["job"] != str(directory)


# -- -c / -R documents -----------------------------------------------------------------------


def test_documents_are_read_as_wandb_reads_them(tmp_path: Path) -> None:
    as_json = tmp_path / "spec.json"
    as_json.write_text('{"overrides": {"run_config": {"lr": 3e-4}}}')
    assert read_launch_document(str(as_json), flag="-c/--config") == (
        {"overrides": {"run_config": {"lr": 0.0003}}},
        [],
    )
    as_yaml = tmp_path / "spec.yaml"
    as_yaml.write_text("overrides:\n  run_config:\n    lr: 3e-4\n    warmup: yes\n    seed: 7\n")
    data, notes = read_launch_document(str(as_yaml), flag="-c/--config")
    assert data == {"overrides": {"run_config": {"lr": "3e-4", "warmup": True, "seed": 7}}}
    assert notes == [
        f"{as_yaml}: overrides.run_config.lr: read as wandb reads it, 3e-4 is the string "
        "'3e-4'; launchplane's own files read the number 0.0003; quote it to say which",
        f"{as_yaml}: overrides.run_config.warmup: read as wandb reads it, yes is the boolean "
        "true; launchplane's own files read the string 'yes'; quote it to say which",
    ]
    yml = tmp_path / "args.yml"
    yml.write_text("kubernetes:\n  namespace: ml\n")
    assert read_launch_document(str(yml), flag="-R")[0] == {"kubernetes": {"namespace": "ml"}}
    inline = '{"kubernetes": {"namespace": "ml"}}'
    assert read_launch_document(inline, flag="-R")[0] == {"kubernetes": {"namespace": "ml"}}
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    assert read_launch_document(str(empty), flag="-c/--config") == ({}, [])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[1, 2]", "must be a JSON object (or a .json/.yaml file holding a mapping), not a list"),
        ("{not json", "not a JSON object, nor a .json/.yaml file: invalid JSON"),
        ("missing.json", "cannot read missing.json"),
        ("spec.toml", "spec.toml: a file must end in .json, .yaml or .yml (as in W&B)"),
    ],
)
def test_bad_documents_name_the_flag(
    value: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.toml").write_text("a = 1\n")
    with pytest.raises(ConfigError) as caught:
        read_launch_document(value, flag="-c/--config")
    assert [e.path for e in caught.value.errors] == ["-c/--config"]
    assert message in caught.value.errors[0].message


# -- launchplane.submit against a real server ------------------------------------------------


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "data") as srv:
        await srv.ensure_queue("default", QUEUE_CONFIG)
        await srv.ensure_queue("q", QUEUE_CONFIG)
        yield srv


@pytest.mark.anyio
async def test_submit_takes_every_launch_add_keyword(server: EmbeddedServer) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        job = await anyio.to_thread.run_sync(
            partial(
                launchplane.submit,
                job=None,
                config={"hyperparameters": {"lr": 0.01}},
                template_variables={"gpus": 2},
                project="proj",
                entity="team",
                queue_name="q",
                entry_point=["python", "-c", "print(1)"],
                name="run-1",
                docker_image="python:3.11",
                project_queue="model-registry",
                resource_args={"local-process": {"timeout_seconds": 60}},
                run_id="wandb-run-1",
                build=False,
                sweep_id="sweep-1",
                author="ada",
                priority=1,
                server=server.url,
                token=server.admin_token,
            )
        )
    assert isinstance(job, QueuedJob) and isinstance(job, dict)
    assert job.id == job["id"] and job.queue_name == "q" == job["queue"]
    resolved = job["resolved"]
    assert resolved["entry_point"] == ["python", "-c", "print(1)"]
    assert (resolved["entity"], resolved["project"], resolved["name"]) == ("team", "proj", "run-1")
    assert resolved["docker"]["image"] == "python:3.11"
    assert resolved["hyperparameters"] == {"lr": 0.01}
    assert resolved["resource_args"] == {"local-process": {"timeout_seconds": 60}}
    assert resolved["env"] == {"GPUS": "2"}
    assert (resolved["wandb_run_id"], resolved["sweep_id"]) == ("wandb-run-1", "sweep-1")
    assert (resolved["author"], resolved["priority"]) == ("ada", "high")
    assert [str(w.message) for w in caught if w.category is LaunchSpecWarning] == [
        "project_queue= ignored: launchplane queues are not scoped by project"
    ]


@pytest.mark.anyio
async def test_submit_defaults_to_wandbs_default_queue_and_keeps_queue(
    server: EmbeddedServer,
) -> None:
    common: dict[str, Any] = {"server": server.url, "token": server.admin_token}
    assert (await asubmit({}, **common))["queue"] == "default"
    assert (await asubmit({}, queue="q", **common))["queue"] == "q"
    assert (await asubmit({}, queue="q", queue_name="q", **common))["queue"] == "q"
    with pytest.raises(ValueError, match="give one"):
        await asubmit({}, queue="q", queue_name="default", **common)
    with pytest.raises(ConfigError) as refused:
        await asubmit({}, build=True, **common)
    assert list(problems(refused)) == ["build="]


@pytest.mark.anyio
async def test_submit_applies_wandbs_resource_args_rule_with_its_warning(
    server: EmbeddedServer,
) -> None:
    spec = {"template_variables": {"gpus": 3}, "resource_args": {"local-process": {"nice": 5}}}
    with pytest.warns(LaunchSpecWarning, match="Using template_variables"):
        job = await asubmit({}, queue="q", config=spec, server=server.url, token=server.admin_token)
    assert job["resolved"]["env"] == {"GPUS": "3"}
    assert job["resolved"].get("resource_args", {}) == {}
    assert spec["resource_args"] == {"local-process": {"nice": 5}}


@pytest.mark.anyio
async def test_queued_job_waits_like_wandbs_queued_run(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    script = "import time; time.sleep(1.5); print('done')"
    job = await asubmit(
        {"command": [sys.executable, "-c", script]},
        queue="q",
        server=server.url,
        token=server.admin_token,
    )
    assert job["state"] == "queued"
    async with running_agent(server, tmp_path / "work", ["q"]):
        running = await job.wait_until_running_async(poll=0.1, timeout=30)
        assert running is job and job["state"] in ("running", "succeeded")
        await job.wait_until_finished_async(poll=0.2, timeout=30)
    assert job["state"] == "succeeded" and job["exit_code"] == 0
    with pytest.raises(TimeoutError):
        late = await asubmit({}, queue="q", server=server.url, token=server.admin_token)
        await late.wait_until_running_async(poll=0.05, timeout=0.3)


@pytest.mark.anyio
async def test_queued_job_blocking_waits_from_a_thread(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    job = await asubmit(
        {"command": [sys.executable, "-c", "print('hi')"]},
        queue="q",
        server=server.url,
        token=server.admin_token,
    )
    async with running_agent(server, tmp_path / "work", ["q"]):
        finished = await anyio.to_thread.run_sync(
            partial(job.wait_until_finished, poll=0.2, timeout=30)
        )
    assert finished["state"] == "succeeded"
    assert await anyio.to_thread.run_sync(lambda: job.state) == "succeeded"

"""The W&B corpus: real W&B documents, each fed through the entry point a W&B user would use.

``tests/fixtures/wandb/`` holds queue bodies, template-variable declarations, launch specs,
``--resource-args`` files, ``launch_add`` keyword sets and ``launch-config.yaml`` agent
configs collected from W&B's docs, SDK tests, launch-jobs and helm-charts repositories; each
says where it came from (a header comment, or a ``<file>._source`` sidecar for JSON).
``expected.yaml`` says, per document, what launchplane must make of it; its header explains
the fields. Everything runs against a real ``launchplane server`` on loopback: queues are
created with ``queue create --type``, jobs submitted with ``submit``/``launch`` or
:func:`launchplane.submit`, agents started with ``launch-agent -c``. Launch-time macros are
expanded with the agent's own functions (:mod:`launchplane.agent.environment`).
docs/from-wandb.md explains each decision the expectations encode.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from kit import server_process

from launchplane.agent.environment import job_environment, launch_macros, launched_job
from launchplane.cli import cli
from launchplane.core.config.keypath import parse_path
from launchplane.core.spec import ResolvedJob
from launchplane.core.yamlsafe import load_document

CORPUS = Path(__file__).parents[1] / "fixtures" / "wandb"
EXPECTED: list[dict[str, Any]] = load_document(
    (CORPUS / "expected.yaml").read_text(), source="expected.yaml"
)
BY_ID = {entry["id"]: entry for entry in EXPECTED}
BIN = Path(sys.executable).parent
LAUNCHPLANE, LAUNCH_AGENT = str(BIN / "launchplane"), str(BIN / "launch-agent")
DEFAULT_JOB = "companions/image-job.json"
MISSING = object()


# --- the corpus itself ----------------------------------------------------------------------


def _documents() -> list[Path]:
    return sorted(
        path
        for path in CORPUS.rglob("*")
        if path.is_file() and path.suffix != "._source" and path.name != "expected.yaml"
    )


def test_every_document_says_where_it_came_from() -> None:
    for path in _documents():
        sidecar = path.with_name(path.name + "._source")
        if path.suffix == ".json":
            assert sidecar.is_file(), f"{path.name}: a JSON document needs {sidecar.name}"
            head = sidecar.read_text()
        else:
            head = path.read_text().split("\n", 2)[0]
        assert head.lstrip("# ").startswith(("Source:", "Companion")), path


def test_every_collected_document_has_an_expectation() -> None:
    named = {entry["file"] for entry in EXPECTED if "file" in entry}
    named |= {entry["job"] for entry in EXPECTED if "job" in entry}
    named |= {entry["template_variables"] for entry in EXPECTED if "template_variables" in entry}
    for entry in EXPECTED:
        queue = entry.get("queue")
        if isinstance(queue, Mapping):
            named |= {queue[key] for key in ("file", "template_variables") if key in queue}
    collected = {
        str(path.relative_to(CORPUS)) for path in _documents() if "companions" not in path.parts
    }
    assert collected <= named, f"no expectation for {sorted(collected - named)}"
    assert len(collected) >= 25


def test_no_corpus_yaml_reads_differently_in_yaml_1_1() -> None:
    """W&B reads these with PyYAML (YAML 1.1), launchplane with the 1.2 core schema.

    None of the collected YAML documents holds a value the two readings disagree on
    (``3e-4``, ``yes``, ``010``), so the dialect decision changes nothing for them; the
    two tab-indented pages are invalid in both.
    """
    for path in _documents():
        if path.suffix not in (".yaml", ".yml"):
            continue
        text = path.read_text()
        try:
            wandb_reading = yaml.safe_load(text)
        except yaml.YAMLError:
            assert "TAB" in text, path
            continue
        assert load_document(text, source=str(path)) == wandb_reading, path


def test_every_deliberate_difference_is_documented() -> None:
    """Each ``difference:`` of expected.yaml is a section of docs/from-wandb.md's list."""
    docs = (Path(__file__).parents[2] / "docs" / "from-wandb.md").read_text()
    listed = docs.split("## Deliberate differences", 1)[1].split("\n## ", 1)[0]
    headings = [line[4:].lower() for line in listed.splitlines() if line.startswith("### ")]
    for entry in EXPECTED:
        if "difference" in entry:
            wanted = entry["difference"].lower()
            assert any(wanted in heading for heading in headings), (entry["id"], headings)


# --- a real server --------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    admin_token: str
    queues: dict[str, Result] = field(default_factory=dict)
    """``queue create`` of each queue name, run once."""
    submitted: dict[str, Result] = field(default_factory=dict)
    """The submission of each entry id, run once (``same_as`` reuses another's)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("server")
    with server_process(data_dir) as url:
        yield Server(url, (data_dir / "admin-token").read_text().strip())


def run(server: Server, *args: str) -> Result:
    environment = {"LAUNCHPLANE_TOKEN": None, "LAUNCHPLANE_SERVER": None}
    options = ["--server", server.url, "--token", server.admin_token]
    return CliRunner().invoke(cli, [*args, *options], env=environment)


def fixture(relative: str) -> str:
    return str(CORPUS / relative)


def queue_definition(entry: Mapping[str, Any]) -> dict[str, Any]:
    """{name, file, type, template_variables?} of the queue an entry submits to."""
    if entry["kind"] == "queue":
        return {
            "name": entry["id"],
            **{k: entry[k] for k in ("file", "type", "template_variables") if k in entry},
        }
    queue = entry["queue"]
    if isinstance(queue, str):
        return queue_definition(BY_ID[queue])
    return dict(queue)


def create_queue(server: Server, definition: Mapping[str, Any]) -> Result:
    """``queue create NAME --type TYPE -f FILE``, once per queue name."""
    name = definition["name"]
    if name not in server.queues:
        args = [
            "queue",
            "create",
            name,
            "--type",
            definition["type"],
            "-f",
            fixture(definition["file"]),
        ]
        if "template_variables" in definition:
            args += ["--template-variables", fixture(definition["template_variables"])]
        server.queues[name] = run(server, *args)
    return server.queues[name]


def ready_queue(server: Server, entry: Mapping[str, Any]) -> str:
    definition = queue_definition(entry)
    created = create_queue(server, definition)
    assert created.exit_code == 0, f"queue {definition['name']}: {created.output}"
    return str(definition["name"])


def assert_refused(result: Result, entry: Mapping[str, Any], code: int = 2) -> None:
    output = result.output  # stdout and stderr, as a terminal shows them
    assert result.exit_code == code, f"{entry['id']}: expected a refusal, got:\n{output}"
    assert "Traceback" not in output
    for message in entry["refused"]["messages"]:
        assert message in output, f"{entry['id']}: {message!r} not in:\n{output}"
    for misleading in entry["refused"].get("not", []):
        assert misleading not in output, f"{entry['id']}: {misleading!r} in:\n{output}"


# --- expectations -----------------------------------------------------------------------------


def at(data: Any, path: str) -> Any:
    for segment in parse_path(path):
        if isinstance(data, list):
            index = int(segment)
            data = data[index] if index < len(data) else MISSING
        elif isinstance(data, Mapping):
            data = data.get(segment, MISSING)
        else:
            return MISSING
        if data is MISSING:
            return MISSING
    return data


def with_ids(value: Any, ids: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for placeholder, real in ids.items():
            value = value.replace(placeholder, real)
        return value
    if isinstance(value, list):
        return [with_ids(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: with_ids(item, ids) for key, item in value.items()}
    return value


def check_job(
    server: Server, entry: Mapping[str, Any], submitted: Mapping[str, Any], queue: str
) -> None:
    """The resolved job as ``expected.yaml`` describes it, then as the agent launches it."""
    resolved = submitted["resolved"]
    for path, expected in entry.get("resolved", {}).items():
        assert at(resolved, path) == expected, f"{entry['id']}: resolved {path}"
    for path in entry.get("absent", []):
        assert at(resolved, path) in (MISSING, None, [], {}), f"{entry['id']}: {path} is set"
    if "same_as" in entry:
        other = submit_for(server, BY_ID[entry["same_as"]])
        assert resolved["resource_args"] == other["resolved"]["resource_args"]
    if not ("launched" in entry or "container_env" in entry):
        return
    job = ResolvedJob.model_validate(resolved)
    job_id = str(submitted["id"])
    ids = {"<run_id>": f"{job_id}-1", "<job_id>": job_id}
    macros = launch_macros(job, run_id=ids["<run_id>"], job_id=job_id, queue=queue, image=None)
    agent_env = {"PATH": "/usr/bin:/bin", **entry.get("agent_env", {})}
    launched = launched_job(job, macros, agent_env).model_dump(mode="json")
    for path, expected in entry.get("launched", {}).items():
        assert at(launched, path) == with_ids(expected, ids), f"{entry['id']}: launched {path}"
    if "container_env" in entry:
        env = job_environment(job, macros, agent_env, {}, {})
        env |= job.resource_args.get("docker", {}).get("env", {})
        for name, expected in entry["container_env"].items():
            assert env.get(name) == expected, f"{entry['id']}: container env {name}"


def submission(server: Server, entry: Mapping[str, Any]) -> Result:
    """Submit the entry's job the W&B way (see the header of expected.yaml); once per entry."""
    if entry["id"] in server.submitted:
        return server.submitted[entry["id"]]
    queue = ready_queue(server, entry)
    kind = entry["kind"]
    extra = [str(arg) for arg in entry.get("submit", [])]
    if kind == "queue":
        args = ["submit", "-q", queue, fixture(entry.get("job", DEFAULT_JOB)), *extra]
    elif kind == "spec":
        args = ["submit", "-q", queue, "-c", fixture(entry["file"]), *extra]
    elif kind == "resource-args":
        args = ["submit", "-q", queue, fixture(DEFAULT_JOB), "-R", fixture(entry["file"]), *extra]
    elif kind == "cli":
        args = ["launch", "-q", queue, *map(str, entry["argv"])]
    else:
        raise AssertionError(f"{entry['id']}: no CLI submission for kind {kind}")
    server.submitted[entry["id"]] = result = run(server, *args, "--json")
    return result


def submit_for(server: Server, entry: Mapping[str, Any]) -> dict[str, Any]:
    result = submission(server, entry)
    assert result.exit_code == 0, f"{entry['id']}:\n{result.output}"
    return json.loads(result.stdout)


def entries(*kinds: str) -> list[Any]:
    return [pytest.param(e, id=e["id"]) for e in EXPECTED if e["kind"] in kinds]


@pytest.mark.parametrize("entry", entries("queue", "spec", "resource-args", "cli"))
def test_document_plans_end_to_end(server: Server, entry: dict[str, Any]) -> None:
    refused = entry.get("refused", {}).get("at")
    if entry["kind"] == "queue":
        created = create_queue(server, queue_definition(entry))
        if refused == "create":
            assert_refused(created, entry)
            return
        assert created.exit_code == 0, f"{entry['id']}:\n{created.output}"
    result = submission(server, entry)
    if refused == "submit":
        assert_refused(result, entry)
        return
    assert result.exit_code == 0, f"{entry['id']}:\n{result.output}"
    for warning in entry.get("warnings", []):
        assert warning in result.stderr
    check_job(server, entry, json.loads(result.stdout), queue_definition(entry)["name"])


@pytest.mark.parametrize("entry", entries("launch-add"))
def test_launch_add_call(server: Server, entry: dict[str, Any]) -> None:
    import launchplane

    queue = ready_queue(server, entry)
    kwargs = json.loads((CORPUS / entry["file"]).read_text())
    call = {**kwargs, "server": server.url, "token": server.admin_token}
    if "refused" in entry:
        with pytest.raises(Exception) as caught:
            launchplane.submit(**call)
        text = str(caught.value)
        assert not isinstance(caught.value, TypeError), text  # every launch_add keyword exists
        for message in entry["refused"]["messages"]:
            assert message.lower() in text.lower(), f"{entry['id']}: {message!r} not in {text}"
        return
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        submitted = launchplane.submit(**call)
    shown = "\n".join(str(warning.message) for warning in caught_warnings)
    for warning in entry.get("warnings", []):
        assert warning in shown, f"{entry['id']}: warning {warning!r} not in {shown!r}"
    assert submitted["queue"] == queue
    check_job(server, entry, dict(submitted), queue)


@pytest.mark.parametrize("entry", entries("agent"))
def test_agent_config(server: Server, entry: dict[str, Any], tmp_path: Path) -> None:
    ready_queue(server, entry)
    log = tmp_path / "agent.log"
    command = [
        LAUNCH_AGENT, "-c", fixture(entry["file"]), *map(str, entry.get("args", [])),
        "--server", server.url, "--token", server.admin_token,
        "--agent-id", entry["id"], "--work-dir", str(tmp_path / "work"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHPLANE_")}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).parents[2]), env.get("PYTHONPATH")])
    )
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        started = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            if "serving queue" in log.read_text():
                started = True
                break
            time.sleep(0.05)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    text = log.read_text()
    assert "Traceback" not in text, text
    outcome = entry["outcome"]
    if outcome == "starts" or (outcome == "either" and started):
        assert started and code == 0, f"{entry['id']} did not start and stop cleanly:\n{text}"
        for line in entry.get("log", []):
            assert line in text, f"{entry['id']}: {line!r} not in\n{text}"
        return
    assert not started and code != 0, f"{entry['id']}: expected a refusal:\n{text}"
    for word in entry.get("mentions", []):
        assert word in text, f"{entry['id']}: {word!r} not in\n{text}"


@pytest.mark.parametrize("entry", [e for e in entries("queue") if "refused" not in e.values[0]])
def test_plan_resolves_like_the_server(
    server: Server, entry: dict[str, Any], tmp_path: Path
) -> None:
    """``plan`` with the queue's stored config gives the job the server resolved.

    ``plan`` is what a submitter runs on their machine before submitting; for a W&B queue
    it must agree with the server, runner included (``would_submit`` when it is installed).
    """
    queue = ready_queue(server, entry)
    shown = run(server, "queue", "show", queue, "--json")
    assert shown.exit_code == 0, shown.output
    config = tmp_path / f"{queue}.json"
    config.write_text(json.dumps(json.loads(shown.stdout)["config"]))
    job = fixture(entry.get("job", DEFAULT_JOB))
    extra = [str(arg) for arg in entry.get("submit", [])]
    result = CliRunner().invoke(cli, ["plan", job, "--queue-config", str(config), *extra, "--json"])
    assert result.exit_code == 0, f"{entry['id']}:\n{result.output}"
    planned = json.loads(result.stdout)
    for path, expected in entry.get("resolved", {}).items():
        assert at(planned["resolved"], path) == expected, f"{entry['id']}: planned {path}"
    if planned["resolved"]["resource"] == "docker":
        assert planned["would_submit"], f"{entry['id']}: the docker runner describes nothing"

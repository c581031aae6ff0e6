"""The queue, token and job commands against a real ``launchplane server`` process."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from click.testing import CliRunner, Result
from kit import free_port, server_process

from launchplane.cli import cli
from launchplane.core.client import LaunchplaneClient

QUEUE_YAML = """\
resource: local-process
docker:
  image: python:3.11
locked: [docker.image]
env:
  GPUS: "{{gpus}}"
template_variables:
  gpus: {type: integer, min: 1, max: 8, default: 1}
"""
JOB_YAML = """\
entry_point: python train.py
hyperparameters:
  lr: 0.001
"""


@dataclass
class Server:
    url: str
    data_dir: Path
    admin_token: str

    def token(self, role: str, queues: Sequence[str] = ()) -> str:
        answer = httpx.post(
            self.url + "/api/v1/tokens",
            json={"role": role, "queues": list(queues)},
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        answer.raise_for_status()
        return answer.json()["token"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("server")
    with server_process(data_dir) as url:
        yield Server(url, data_dir, (data_dir / "admin-token").read_text().strip())


@pytest.fixture(scope="module")
def queue(server: Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("queue") / "queue.yaml"
    path.write_text(QUEUE_YAML)
    result = run(server, "queue", "create", "train", "-f", str(path))
    assert result.exit_code == 0, result.output
    return "train"


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(JOB_YAML)
    return path


def run(server: Server | None, *args: str, token: str | None = None, **env: str) -> Result:
    """Invoke the CLI in-process with --server/--token (unless ``server`` is None)."""
    options = ["--server", server.url, "--token", token or server.admin_token] if server else []
    environment: dict[str, str | None] = {"LAUNCHPLANE_TOKEN": None, "LAUNCHPLANE_SERVER": None}
    return CliRunner().invoke(cli, [*args, *options], env={**environment, **env})


def test_queue_commands(server: Server, queue: str, tmp_path: Path) -> None:
    listed = run(server, "queue", "list")
    assert listed.exit_code == 0
    assert listed.output.splitlines()[0].split() == ["NAME", "VERSION", "RUNNER", "UPDATED"]
    rows = [line.split()[:3] for line in listed.output.splitlines()]
    assert [queue, "1", "local-process"] in rows

    shown = run(server, "queue", "show", queue)
    assert shown.exit_code == 0
    assert "version  1" in shown.output
    assert "image: python:3.11" in shown.output

    path = tmp_path / "v2.yaml"
    path.write_text(QUEUE_YAML.replace("python:3.11", "python:3.12"))
    updated = run(server, "queue", "update", queue, "-f", str(path), "--json")
    assert updated.exit_code == 0
    assert json.loads(updated.stdout)["version"] == 2
    as_json = json.loads(run(server, "queue", "show", queue, "--json").stdout)
    assert as_json["config"]["docker"]["image"] == "python:3.12"


def test_bad_queue_config_lists_every_problem_and_exits_2(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("entry_point: python {{script}}\nmax_attempts: 0\n")
    result = run(server, "queue", "create", "bad", "-f", str(path))
    assert result.exit_code == 2
    assert "error: invalid queue config" in result.stderr
    assert "  entry_point: uses template variable 'script'" in result.stderr
    assert "  max_attempts: " in result.stderr


def test_submit_list_show_cancel(server: Server, queue: str, job_file: Path) -> None:
    submitted = run(
        server,
        "submit",
        str(job_file),
        "--queue",
        queue,
        "--set",
        "hyperparameters.lr=0.01",
        "--var",
        "gpus=4",
        "--json",
    )
    assert submitted.exit_code == 0, submitted.output
    job = json.loads(submitted.stdout)
    assert job["resolved"]["hyperparameters"] == {"lr": 0.01}
    assert job["resolved"]["env"] == {"GPUS": "4"}
    assert job["template_variables"] == {"gpus": "4"}

    listed = run(server, "jobs", "--queue", queue)
    assert listed.exit_code == 0
    assert listed.output.splitlines()[0].split() == [
        "ID",
        "QUEUE",
        "STATE",
        "ATTEMPT",
        "AGE",
        "REASON",
    ]
    row = next(line.split() for line in listed.output.splitlines() if job["id"] in line)
    assert row[:4] == [job["id"], queue, "queued", "0"]

    shown = run(server, "show", job["id"])
    assert shown.exit_code == 0
    assert "state:     queued (attempt 0)" in shown.output
    assert "queued" in shown.output.split("events:")[1]

    cancelled = run(server, "cancel", job["id"])
    assert (cancelled.exit_code, cancelled.output.strip()) == (0, f"cancelled {job['id']}")
    assert json.loads(run(server, "show", job["id"], "--json").stdout)["state"] == "cancelled"
    assert run(server, "jobs", "--state", "cancelled", "--json").stdout.count(job["id"]) == 1


def test_submit_refused_lists_paths_and_exits_2(server: Server, queue: str, job_file: Path) -> None:
    result = run(
        server,
        "submit",
        str(job_file),
        "--queue",
        queue,
        "--set",
        "docker.image=evil:latest",
        "--var",
        "gpus=64",
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "error: invalid job"
    assert "  docker.image: is locked by the queue config" in result.stderr
    assert "  template_variables.gpus: 64 is above the maximum 8" in result.stderr


def test_bad_command_line_layers_fail_before_sending(server: Server, job_file: Path) -> None:
    result = run(server, "submit", str(job_file), "--queue", "x", "--set", "novalue")
    assert result.exit_code == 2
    assert "--set" in result.stderr
    missing_queue = run(server, "submit", str(job_file))
    assert missing_queue.exit_code == 2
    assert "no queue" in missing_queue.stderr


def test_submit_follow_streams_logs_and_exits_with_the_job_code(
    server: Server, queue: str, job_file: Path
) -> None:
    agent = FakeAgent(server, queue, ["epoch 1", "epoch 2"], "failed", 3, {"image": "x"})
    with agent.running():
        result = run(server, "submit", str(job_file), "--queue", queue, "--follow")
    assert result.exit_code == 3, result.output
    assert result.stdout.splitlines() == ["epoch 1", "epoch 2"]
    assert "failed (exit code 3)" in result.stderr

    job_id = agent.job_id
    logs = run(server, "logs", job_id)
    assert logs.stdout.splitlines() == ["epoch 1", "epoch 2"]
    followed = run(server, "logs", job_id, "-f")
    assert followed.stdout.splitlines() == ["epoch 1", "epoch 2"]
    record = run(server, "show", job_id, "--record")
    assert json.loads(record.stdout) == {"image": "x"}


def test_submit_wait_and_cancelled_exit_codes(server: Server, queue: str, job_file: Path) -> None:
    agent = FakeAgent(server, queue, [], "succeeded", 0, {})
    with agent.running():
        result = run(server, "submit", str(job_file), "--queue", queue, "--wait", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "succeeded"

    agent = FakeAgent(server, queue, [], "cancelled", None, {})
    with agent.running():
        result = run(server, "submit", str(job_file), "--queue", queue, "--wait")
    assert result.exit_code == 130


def test_unreachable_server_is_one_line_and_exit_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(cli, ["jobs", "--server", url, "--token", "x"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(
        f"error: cannot reach the queue server at {url}: is 'launchplane server' running?"
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_local_admin_token_is_found_without_token_option(server: Server, queue: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["queue", "list", "--server", server.url],
        env={"LAUNCHPLANE_HOME": str(server.data_dir), "LAUNCHPLANE_TOKEN": None},
    )
    assert result.exit_code == 0, result.output
    assert queue in result.output


def test_wrong_token_explains_itself(server: Server) -> None:
    result = run(server, "jobs", token="lp_wrong")
    assert result.exit_code == 1
    assert "invalid token" in result.stderr
    assert "--token" in result.stderr
    submitter = server.token("submitter")
    refused = run(server, "queue", "create", "x", "-f", __file__, token=submitter)
    assert refused.exit_code != 0


def test_token_create(server: Server, queue: str) -> None:
    result = run(server, "token", "create", "--role", "agent", "--queue", queue, "--name", "box")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("lp_")
    assert "shown only this once" in result.stderr

    async def claim() -> Any:
        async with LaunchplaneClient(server.url, token) as agent:
            return await agent.claim(queue, "box", wait=0)

    anyio.run(claim)
    as_json = run(server, "token", "create", "--role", "submitter", "--json")
    assert json.loads(as_json.stdout)["role"] == "submitter"


class FakeAgent:
    """Claims one job through the real API in a thread, writes its log and completes it."""

    def __init__(
        self,
        server: Server,
        queue: str,
        lines: list[str],
        state: str,
        exit_code: int | None,
        record: dict[str, Any],
    ) -> None:
        self.token = server.token("agent", [queue])
        self.server, self.queue = server, queue
        self.lines, self.state, self.exit_code, self.record = lines, state, exit_code, record
        self.job_id = ""

    async def _work(self) -> None:
        async with LaunchplaneClient(self.server.url, self.token) as client:
            # Its own id: an agent id is bound to the agent token that first used it.
            lease = await client.claim(self.queue, f"fake-agent-{uuid.uuid4().hex[:8]}", wait=30)
            assert lease is not None
            self.job_id = lease.job_id
            await client.post_event(lease.lease_id, "running")
            for line in self.lines:
                await anyio.sleep(0.05)
                await client.append_logs(lease.lease_id, [line])
            await client.complete(lease.lease_id, self.state, self.exit_code, record=self.record)

    def running(self) -> _Thread:
        return _Thread(lambda: anyio.run(self._work))


class _Thread:
    def __init__(self, target: Any) -> None:
        self._thread = threading.Thread(target=target, daemon=True)

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(self, *_: object) -> None:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()

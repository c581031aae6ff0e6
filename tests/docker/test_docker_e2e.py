"""Server + agent + docker builder + docker runner: a git job from submit to record.

The queue server runs in this event loop on a random loopback port; agents
are in-process, except the one killed mid-run, which is a real
``launch-agent`` process so that SIGKILL leaves its container behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dockerkit import BASE_IMAGE, NONCE, eventually, git_commit_all, make_app
from kit import agent_process, agent_token, log_lines, running_agent, wait_for_line, wait_for_state

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

QUEUE = "gpu-box"
QUEUE_CONFIG: dict[str, Any] = {
    "resource": "docker",
    "builder": {"type": "docker", "base_image": BASE_IMAGE},
    # Long enough that a killed agent's lease is still held when its successor registers.
    "lease_ttl_seconds": 30,
    "resource_args": {"docker": {"memory": "256m"}},
}
JOB_TIMEOUT = 60
"""Seconds a job may take here: it may build an image first."""


@pytest.fixture
async def server(tmp_path: Path, docker: Any) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        await srv.ensure_queue(QUEUE, QUEUE_CONFIG)
        yield srv


@pytest.fixture
def repo(tmp_path: Path) -> tuple[str, str]:
    """examples/hello (plus the session nonce) committed to a fresh git repository."""
    path = make_app(tmp_path / "repo")
    return f"file://{path}", git_commit_all(path)


def hello_job(repository: str, commit: str, epochs: int = 5) -> dict[str, Any]:
    return {
        "name": "lptest-e2e",
        "git": {"repository": repository, "commit": commit},
        "entry_point": "train.py",
        "args": ["--epochs", str(epochs)],
    }


async def test_a_git_job_builds_runs_and_records_commit_and_digest_then_reuses_the_image(
    server: EmbeddedServer, client: LaunchplaneClient, repo: tuple[str, str], tmp_path: Path
) -> None:
    repository, commit = repo
    async with running_agent(server, tmp_path / "work", [QUEUE], cancel_grace=2.0):
        first = await client.submit_job(QUEUE, hello_job(repository, commit))
        done = await wait_for_state(client, first["id"], timeout=JOB_TIMEOUT)
        record = await client.get_record(first["id"])
        first_log = await log_lines(client, first["id"])

        second = await client.submit_job(QUEUE, hello_job(repository, commit, epochs=7))
        done_again = await wait_for_state(client, second["id"], timeout=JOB_TIMEOUT)
        record_again = await client.get_record(second["id"])
        second_log = await log_lines(client, second["id"])

    assert done["state"] == "succeeded", done
    assert record["code"]["commit"] == commit
    image = record["image"]
    assert image["built"] is True
    assert image["ref"].startswith("launchplane/lptest-e2e:")
    assert image["digest"].startswith("sha256:") and image["pinned"] == image["digest"]
    assert (record["builder"], record["runner"]) == ("docker", "docker")
    assert record["workload"]["container"] == f"lp-{first['id']}-1"
    assert any(line.startswith("Step 1/") for line in first_log)
    assert "epoch   5/5" in "\n".join(first_log)
    checkpoint = tmp_path / "work" / f"{first['id']}-1" / "output" / "checkpoint.json"
    assert checkpoint.is_file()  # written by uid 10001 through the output mount

    # Same code, other args: the image is reused, not rebuilt.
    assert done_again["state"] == "succeeded", done_again
    assert record_again["image"] == {**image, "built": False}
    assert not any(line.startswith("Step 1/") for line in second_log)
    tag = image["ref"].rsplit(":", 1)[1]
    skipped = (
        f"image {image['ref']} already built (content hash {tag}, found locally); skipping build"
    )
    assert skipped in second_log, second_log[:5]
    assert "epoch   7/7" in "\n".join(second_log)


async def test_a_restarted_agent_re_adopts_the_running_container(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    docker: Any,
    tmp_path: Path,
) -> None:
    agent_id = f"lptest-agent-{NONCE[:8]}"
    work_dir = tmp_path / "work"
    job = await client.submit_job(
        QUEUE,
        {
            "name": "lptest-readopt",
            "docker": {"image": BASE_IMAGE},  # nothing to build: the restart is the point
            "command": [
                "python3",
                "-c",
                "import time; print('started', flush=True); time.sleep(4); print('finished')",
            ],
        },
    )
    container = f"lp-{job['id']}-1"

    token = await agent_token(server, [QUEUE], agent_id)  # its successor's too
    async with agent_process(
        server.url, token, work_dir, queues=[QUEUE], agent_id=agent_id
    ) as process:
        await wait_for_line(client, job["id"], lambda line: line == "started", timeout=JOB_TIMEOUT)
        # Killed before it noted that the server has the line, the agent's successor would
        # send it again (a batch in flight may be sent twice): wait for the note.
        logged = work_dir / f"{job['id']}-1" / "logged-lines"
        await eventually(lambda: logged.exists() and int(logged.read_text()) >= 1)
        await process.kill()  # SIGKILL: no drain, no release: the lease stays held
    assert docker.containers.get(container).status == "running"

    async with running_agent(
        server, work_dir, [QUEUE], agent_id=agent_id, cancel_grace=2.0
    ) as agent:
        done = await wait_for_state(client, job["id"], timeout=JOB_TIMEOUT)
        await eventually(lambda: job["id"] in agent.outcomes)  # set just after `complete`
        outcome = agent.outcomes[job["id"]]

    assert done["state"] == "succeeded", done
    assert done["attempt"] == 1  # the same attempt, watched to its end, not run again
    assert outcome.state == "succeeded"
    lines = await log_lines(client, job["id"])
    assert lines.count("started") == 1  # the new agent skips what the first one sent
    assert lines[-1] == "finished"


async def test_a_planted_secret_reaches_the_container_only(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    docker: Any,
    repo: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The secret is in the container's process; not in the image, the log or the record."""
    planted = f"planted-{NONCE}-s3cr3t"
    monkeypatch.setenv("LP_DOCKER_PLANTED", planted)  # the in-process agent's environment
    await server.ensure_queue(
        "secret-box", {**QUEUE_CONFIG, "secrets": {"API_TOKEN": "env:LP_DOCKER_PLANTED"}}
    )
    repository, commit = repo
    job = {
        **hello_job(repository, commit),
        "command": [
            "python3",
            "-c",
            "import hashlib, os; token = os.environ['API_TOKEN']; "
            "print('sha256', hashlib.sha256(token.encode()).hexdigest()); print('raw', token)",
        ],
    }
    async with running_agent(server, tmp_path / "work", ["secret-box"]):
        submitted = await client.submit_job("secret-box", job)
        done = await wait_for_state(client, submitted["id"], timeout=JOB_TIMEOUT)
        record = await client.get_record(submitted["id"])
        lines = await log_lines(client, submitted["id"])
        job_json = await client.get_job(submitted["id"])

    assert done["state"] == "succeeded", done
    # The process saw the value (its hash is printed) ...
    digest = hashlib.sha256(planted.encode()).hexdigest()
    assert f"sha256 {digest}" in lines
    # ... but the value itself was scrubbed from the log, and is nowhere else.
    assert "raw ***" in lines
    inspected = docker.api.inspect_image(record["image"]["pinned"])
    for where, text in {
        "log": "\n".join(lines),
        "record": repr(record),
        "job": repr(job_json),
        "image": repr(inspected) + repr(docker.api.history(record["image"]["pinned"])),
    }.items():
        assert planted not in text, where
    assert record["spec"]["secrets"] == {"API_TOKEN": "env:LP_DOCKER_PLANTED"}
    assert record["environment"]["secrets"] == ["API_TOKEN"]


async def test_an_image_that_cannot_be_pulled_is_retried_as_an_infrastructure_failure(
    server: EmbeddedServer, client: LaunchplaneClient, docker: Any, tmp_path: Path
) -> None:
    """A pull failure is not the job's fault: the queue's retry policy re-runs it."""
    retrying = {
        **QUEUE_CONFIG,
        "builder": {"type": "noop"},
        "retry": {"max_attempts": 2, "backoff_seconds": 0},
    }
    await server.ensure_queue("retry-box", retrying)
    missing = f"127.0.0.1:5000/lptest-missing-{NONCE[:8]}:never-pushed"
    async with running_agent(server, tmp_path / "work", ["retry-box"]):
        submitted = await client.submit_job(
            "retry-box", {"name": "lptest-pull", "docker": {"image": missing}, "command": ["true"]}
        )
        done = await wait_for_state(client, submitted["id"], timeout=JOB_TIMEOUT)

    assert done["state"] == "failed", done
    assert done["attempt"] == 2, done  # retried once, then the policy gave up
    assert done["failure_stage"] == "run"
    assert f"cannot pull image {missing}" in done["reason"]

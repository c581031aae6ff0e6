"""Jobs through a real server and an in-process agent: success, failure, cancel, stages."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from agentkit import QUEUE, git_repo
from kit import (
    agent_token,
    find_process,
    log_lines,
    pid_gone,
    running_agent,
    unique_seconds,
    wait_for_line,
    wait_for_state,
    wait_gone,
)

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

PRINT_ENV = (
    "import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
    "if k.startswith(('LAUNCHPLANE_', 'RUN_', 'FROM_'))}))"
)


async def test_job_from_git_completes_with_a_full_record(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    first, _ = git_repo(tmp_path / "repo")
    await server.ensure_queue(
        QUEUE,
        {"resource": "local-process", "lease_ttl_seconds": 3, "env": {"RUN_LABEL": "r-${run_id}"}},
    )
    queue = await client.get_queue(QUEUE)
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(
            QUEUE,
            {
                "git": {"repository": f"file://{tmp_path / 'repo'}", "commit": first},
                "entry_point": "train.py",
                "hyperparameters": {"lr": 0.1, "epochs": 2},
            },
        )
        done = await wait_for_state(client, job["id"])
        record = await client.get_record(job["id"])

    assert done["state"] == "succeeded" and done["exit_code"] == 0
    assert await log_lines(client, job["id"]) == ["code v1"]  # the pinned commit, not HEAD
    assert record["code"]["commit"] == first
    assert record["queue"] == {"name": QUEUE, "version": queue["version"]}
    assert record["attempt"] == 1 and record["job_id"] == job["id"]
    assert list(record["timestamps"]) == ["claimed", "resolving", "building", "running", "finished"]
    assert record["result"] == {
        "state": "succeeded",
        "exit_code": 0,
        "failure_stage": None,
        "reason": None,
    }
    assert record["plugins"]["local-process"]
    assert record["workload"]["id"] == f"{job['id']}-1"
    assert isinstance(record["workload"]["pid"], int)
    assert record["spec"]["hyperparameters"] == {"lr": 0.1, "epochs": 2}
    run_dir = tmp_path / "work" / f"{job['id']}-1"
    assert json.loads((run_dir / "record.json").read_text()) == record
    states = [event["state"] for event in done["events"]]
    assert states[-4:] == ["resolving", "building", "running", "succeeded"]


async def test_job_environment_has_launchplane_variables_and_macros(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FROM_AGENT", "agent-value")
    monkeypatch.setenv("NOT_PASSED", "private")
    await server.ensure_queue(
        QUEUE,
        {
            "resource": "local-process",
            "lease_ttl_seconds": 3,
            "env": {"RUN_NAME": "${queue}/${run_id}", "FROM_AGENT": None},
        },
    )
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(
            QUEUE,
            {"command": [sys.executable, "-c", PRINT_ENV], "hyperparameters": {"lr": 0.5}},
        )
        await wait_for_state(client, job["id"])

    env = json.loads((await log_lines(client, job["id"]))[0])
    run_id = f"{job['id']}-1"
    assert env["RUN_NAME"] == f"{QUEUE}/{run_id}"
    assert env["FROM_AGENT"] == "agent-value"
    assert "NOT_PASSED" not in env
    assert env["LAUNCHPLANE_JOB_ID"] == job["id"] and env["LAUNCHPLANE_RUN_ID"] == run_id
    assert env["LAUNCHPLANE_QUEUE"] == QUEUE
    assert json.loads(env["LAUNCHPLANE_HYPERPARAMETERS"]) == {"lr": 0.5}
    assert env["LAUNCHPLANE_OUTPUT_DIR"] == str(tmp_path / "work" / run_id / "output")


async def test_failing_job_reports_exit_code_and_last_lines(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    script = "for i in 1 2 3; do echo step $i; done; echo 'CUDA out of memory' >&2; exit 3"
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(QUEUE, {"command": ["sh", "-c", script]})
        done = await wait_for_state(client, job["id"])
        record = await client.get_record(job["id"])

    assert done["state"] == "failed" and done["exit_code"] == 3
    assert done["failure_stage"] == "run"
    assert "exit code 3" in done["reason"] and done["reason"].endswith("CUDA out of memory")
    assert record["result"]["failure_stage"] == "run"
    assert await log_lines(client, job["id"]) == [
        "step 1",
        "step 2",
        "step 3",
        "CUDA out of memory",
    ]


async def test_cancel_through_the_api_kills_the_job_and_its_children(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    marker = unique_seconds(300)  # the sandboxed job's $! is a pid of its own namespace
    script = f"sleep {marker} & echo child=started; wait"
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(QUEUE, {"command": ["sh", "-c", script]})
        await wait_for_line(client, job["id"], lambda text: text.startswith("child="))
        child = await find_process(marker, "sleep")
        assert not pid_gone(child)
        await client.cancel_job(job["id"])
        done = await wait_for_state(client, job["id"], timeout=15)

    assert done["state"] == "cancelled"
    assert await wait_gone(child) >= 0


async def test_missing_secret_fails_in_the_secrets_stage(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_SUCH_SECRET_VAR", raising=False)
    await server.ensure_queue(
        QUEUE, {"resource": "local-process", "secrets": {"TOKEN": "env:NO_SUCH_SECRET_VAR"}}
    )
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(QUEUE, {"command": ["true"]})
        done = await wait_for_state(client, job["id"])

    assert done["state"] == "failed" and done["failure_stage"] == "secrets"
    assert "TOKEN" in done["reason"] and "NO_SUCH_SECRET_VAR" in done["reason"]


async def test_container_runner_without_image_names_docker_image(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    await server.ensure_queue("containers", {"resource": "fake-container"})
    async with running_agent(
        server, tmp_path / "work", ["containers"], plugins=["fake_container_plugin"]
    ):
        job = await client.submit_job("containers", {"entry_point": "train.py"})
        done = await wait_for_state(client, job["id"])

    assert done["state"] == "failed" and done["failure_stage"] == "build"
    assert "docker.image" in done["reason"]


async def test_bad_git_commit_fails_in_prepare_naming_the_repository(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    git_repo(tmp_path / "repo")
    repository = str(tmp_path / "repo")
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(
            QUEUE,
            {"git": {"repository": repository, "commit": "0" * 40}, "entry_point": "train.py"},
        )
        done = await wait_for_state(client, job["id"])

    assert done["state"] == "failed" and done["failure_stage"] == "prepare"
    assert repository in done["reason"] and "git.commit" in done["reason"]


async def test_max_jobs_limits_concurrency(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    async with running_agent(server, tmp_path / "work", [QUEUE], max_jobs=1) as agent:
        first = await client.submit_job(QUEUE, {"command": ["sleep", "1"]})
        second = await client.submit_job(QUEUE, {"command": ["true"]})
        await wait_for_state(client, first["id"], ["running"])
        await anyio.sleep(0.3)
        assert (await client.get_job(second["id"]))["state"] == "queued"  # not claimed
        await wait_for_state(client, second["id"])
        assert agent.outcomes[second["id"]].state == "succeeded"


async def test_agent_restart_releases_leases_it_cannot_readopt(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    # An "agent" that claims a job and dies: a raw claim with the agent's id.
    token = await agent_token(server, [QUEUE], "agent-x")  # the token it restarts with
    job = await client.submit_job(QUEUE, {"command": ["echo", "second try"]})
    async with LaunchplaneClient(server.url, token) as dead_agent:
        await dead_agent.register_agent("agent-x", queues=[QUEUE])
        lease = await dead_agent.claim(QUEUE, "agent-x", wait=1)
    assert lease is not None and lease.job_id == job["id"]

    async with running_agent(server, tmp_path / "work", [QUEUE], agent_id="agent-x"):
        done = await wait_for_state(client, job["id"])

    assert done["state"] == "succeeded"
    assert done["attempt"] == 2  # released at registration, re-queued, run again


async def test_output_streams_while_the_job_runs_and_arrives_whole(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    code = (
        "import time\nfor i in range(5000): print(f'line {i}')\n"
        "print('waiting', flush=True)\ntime.sleep(2)"
    )
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(QUEUE, {"command": [sys.executable, "-c", code]})
        await wait_for_line(client, job["id"], lambda line: line == "waiting")
        assert (await client.get_job(job["id"]))["state"] == "running"  # streamed, not at the end
        await wait_for_state(client, job["id"])

    lines = await log_lines(client, job["id"])
    assert lines == [f"line {i}" for i in range(5000)] + ["waiting"]


async def test_stale_lease_stops_the_workload_without_completing(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    marker = unique_seconds(300)
    script = f'echo "attempt=$LAUNCHPLANE_ATTEMPT"; sleep {marker}'
    async with running_agent(server, tmp_path / "work", [QUEUE], agent_id="agent-s") as agent:
        job = await client.submit_job(QUEUE, {"command": ["sh", "-c", script]})
        line = await wait_for_line(client, job["id"], lambda text: "attempt=1" in text)
        assert line == "attempt=1"
        first_pid = await find_process(marker, "sleep")

        # Someone else takes the lease away (here: an agent with the same identity
        # and token registers and releases what it is told it holds). Re-queued.
        token = await agent_token(server, [QUEUE], "agent-s")
        async with LaunchplaneClient(server.url, token) as intruder:
            held = await intruder.register_agent("agent-s", queues=[QUEUE])
            assert [lease.job_id for lease in held] == [job["id"]]
            await intruder.release(held[0].lease_id, "taken away by the test")

        assert await wait_gone(first_pid) >= 0  # fenced: the first run is stopped
        await wait_for_line(client, job["id"], lambda text: "attempt=2" in text)
        assert (await client.get_job(job["id"]))["state"] == "running"  # not completed by run 1
        await client.cancel_job(job["id"])
        done = await wait_for_state(client, job["id"])

    assert done["state"] == "cancelled" and done["attempt"] == 2
    assert agent.outcomes[job["id"]].state == "cancelled"


async def test_a_heartbeat_answer_that_crossed_the_jobs_completion_is_no_news(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On a loaded server a heartbeat naming a lease can be answered after the job's
    completion was stored, so the answer calls the lease stale: the agent must not
    warn that it stops a job that has ended (in a 20-agent soak, 884 such warnings for
    105 leases that really expired). The test sends the first heartbeat naming the
    lease only once the job has ended (the real call, late, as on a loaded server)."""
    real = LaunchplaneClient.heartbeat
    job_ids: list[str] = []
    answers: list[dict[str, Any]] = []

    async def late_heartbeat(
        self: LaunchplaneClient, agent_id: str, leases: Sequence[str]
    ) -> dict[str, Any]:
        if leases and not answers:
            await wait_for_state(client, job_ids[0])
            answers.append(await real(self, agent_id, leases))
            return answers[-1]
        return await real(self, agent_id, leases)

    monkeypatch.setattr(LaunchplaneClient, "heartbeat", late_heartbeat)
    async with running_agent(server, tmp_path / "work", [QUEUE]) as agent:
        job = await client.submit_job(QUEUE, {"command": ["sh", "-c", "echo one; sleep 1"]})
        job_ids.append(job["id"])
        done = await wait_for_state(client, job["id"])
        with anyio.fail_after(10):
            while not answers:
                await anyio.sleep(0.05)
    assert answers[0]["stale"], "the scenario: the answer calls the ended lease stale"
    assert done["state"] == "succeeded" and agent.outcomes[job["id"]].state == "succeeded"
    assert "is stale" not in caplog.text

"""``launch-agent`` as a real process under real signals: drain, then stop and re-queue."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest
from agentkit import QUEUE, agent_process
from kit import (
    find_process,
    log_lines,
    pid_gone,
    unique_seconds,
    wait_for_line,
    wait_for_state,
    wait_gone,
)

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio


async def test_sigterm_drains_running_job_and_claims_nothing_new(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    async with agent_process(server, tmp_path, "--drain-timeout", "60") as agent:
        running = await client.submit_job(
            QUEUE, {"command": ["sh", "-c", "echo started; sleep 1.5; echo finished"]}
        )
        await wait_for_line(client, running["id"], lambda line: line == "started")

        agent.signal(signal.SIGTERM)
        await agent.wait_log("claiming stopped", timeout=5)
        later = await client.submit_job(QUEUE, {"command": ["echo", "too late"]})

        with anyio.fail_after(20):
            code = await agent.wait()

    assert code == 0
    done = await client.get_job(running["id"])
    assert done["state"] == "succeeded"
    assert await log_lines(client, running["id"]) == ["started", "finished"]
    assert (await client.get_job(later["id"]))["state"] == "queued"


async def test_second_sigterm_stops_the_job_and_requeues_it(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    # The job ignores SIGTERM (and so does its child), so it takes SIGKILL after the grace.
    # The sandboxed job's $$ and $! are pids of its own namespace: the test finds
    # the host pids by argv (the sleep's unique duration, the shell's $0).
    marker = unique_seconds(300)
    script = f"trap '' TERM; sleep {marker} & echo parent=started; wait"
    async with agent_process(server, tmp_path, "--cancel-grace", "1") as agent:
        command = ["sh", "-c", script, f"parent-{marker}"]
        job = await client.submit_job(QUEUE, {"command": command})
        await wait_for_line(client, job["id"], lambda line: line.startswith("parent="))
        pids = {
            "child": await find_process(marker, "sleep"),
            "parent": await find_process(f"parent-{marker}", "sh"),
        }

        agent.signal(signal.SIGTERM)
        await agent.wait_log("claiming stopped", timeout=5)
        await anyio.sleep(0.3)
        assert not pid_gone(int(pids["child"]))  # draining: the job keeps running
        agent.signal(signal.SIGTERM)

        with anyio.fail_after(20):
            code = await agent.wait()

    assert code == 0
    for pid in pids.values():
        assert await wait_gone(int(pid)) >= 0
    requeued = await wait_for_state(client, job["id"], ["queued"], timeout=5)
    assert requeued["cancel_requested"] is False
    assert "releasing their leases" in agent.log()


async def test_sigint_behaves_like_sigterm(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    async with agent_process(server, tmp_path) as agent:
        await agent.wait_log("serving queue", timeout=10)
        agent.signal(signal.SIGINT)
        with anyio.fail_after(10):
            code = await agent.wait()
    assert code == 0
    assert "claiming stopped" in agent.log()


async def test_drain_timeout_stops_and_requeues_the_job(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    async with agent_process(
        server, tmp_path, "--drain-timeout", "0.5", "--cancel-grace", "1"
    ) as agent:
        job = await client.submit_job(QUEUE, {"command": ["sh", "-c", "echo up; sleep 300"]})
        await wait_for_line(client, job["id"], lambda line: line == "up")
        agent.signal(signal.SIGTERM)
        with anyio.fail_after(15):
            code = await agent.wait()

    assert code == 0
    assert "drain timeout" in agent.log()
    assert (await client.get_job(job["id"]))["state"] == "queued"


async def test_job_of_a_killed_agent_dies_at_its_next_write(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    marker = f"job-{unique_seconds(0)}"  # the shell's $0: finds its host pid
    script = "echo started; while true; do echo tick; sleep 0.2; done"
    async with agent_process(server, tmp_path) as agent:
        job = await client.submit_job(QUEUE, {"command": ["sh", "-c", script, marker]})
        await wait_for_line(client, job["id"], lambda text: text == "started")
        pid = await find_process(marker, "sh")
        await agent.kill()
    assert await wait_gone(pid, timeout=5) >= 0

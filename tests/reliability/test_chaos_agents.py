"""Agents that die, vanish mid-claim or freeze: every job still ends, and never twice at once.

Real ``launch-agent`` processes, real signals (SIGKILL, SIGSTOP/SIGCONT), a
real server whose sweeper runs every 100 ms, queues with a 3 s lease TTL (an
agent heartbeats every second).
"""

from __future__ import annotations

import json
import signal
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from chaoskit import (
    SWEEP_SECONDS,
    agent_process,
    agent_token,
    agents_of,
    eventually,
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
from launchplane.server.hub import queue_key

pytestmark = pytest.mark.anyio

QUEUE = "chaos"
TTL = 3.0
HEARTBEAT = TTL / 3


@pytest.fixture
async def token(server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path) -> str:
    # Jobs run sandboxed: they see a host file the test touches only in a directory
    # the queue lists as read-only (tmp_path/gate).
    (tmp_path / "gate").mkdir()
    local_args = {"local-process": {"read_only_paths": [str(tmp_path / "gate")]}}
    config = {"resource": "local-process", "lease_ttl_seconds": TTL, "resource_args": local_args}
    await server.ensure_queue(QUEUE, config)
    return await agent_token(client, [QUEUE])


def at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()


def claim_time(job: dict[str, Any], attempt: int) -> float:
    return next(at(e) for e in job["events"] if e["state"] == "claimed" and e["attempt"] == attempt)


def final_events(job: dict[str, Any]) -> list[tuple[str, int]]:
    final = ("succeeded", "failed", "cancelled")
    return [(e["state"], e["attempt"]) for e in job["events"] if e["state"] in final]


async def test_killed_agent_job_is_rerun_by_another_agent_and_nothing_else_changes(
    server: EmbeddedServer, client: LaunchplaneClient, token: str, tmp_path: Path
) -> None:
    # Attempt 1 ticks until it dies with its agent; a later attempt ticks 5 times.
    marker = f"ticking-{unique_seconds(0)}"
    ticking = (
        'echo attempt=$LAUNCHPLANE_ATTEMPT; n=5; [ "$LAUNCHPLANE_ATTEMPT" = 1 ] && n=600; '
        "i=0; while [ $i -lt $n ]; do echo tick $i; i=$((i+1)); sleep 0.1; done; echo done"
    )
    y_go = tmp_path / "gate" / "y-go"
    async with agent_process(
        server.url, token, tmp_path / "a", agent_id="a", queues=[QUEUE], args=["--max-jobs", "1"]
    ) as a:
        earlier = await client.submit_job(QUEUE, {"command": ["echo", "earlier"]})
        earlier = await wait_for_state(client, earlier["id"])
        # The shell's $0 finds its host pid ($$ would be a pid of its sandbox).
        x = await client.submit_job(QUEUE, {"command": ["sh", "-c", ticking, marker]})
        await wait_for_state(client, x["id"], ["claimed", "resolving", "building", "running"])
        async with agent_process(
            server.url,
            token,
            tmp_path / "b",
            agent_id="b",
            queues=[QUEUE],
            args=["--max-jobs", "2"],
        ):
            y_script = f"echo y; while [ ! -e {y_go} ]; do sleep 0.05; done; echo y done"
            y = await client.submit_job(QUEUE, {"command": ["sh", "-c", y_script]})
            await wait_for_line(client, y["id"], lambda line: line == "y")
            await wait_for_line(client, x["id"], lambda line: line.startswith("attempt=1"))
            first = await find_process(marker, "sh")
            await a.kill()
            killed_at = time.time()

            done = await wait_for_state(client, x["id"], timeout=TTL + 15)
            y_go.touch()
            y_done = await wait_for_state(client, y["id"])

    took = claim_time(done, 2) - killed_at
    print(f"\nkill -9 -> job claimed again by another agent: {took:.2f} s (TTL {TTL:g} s)")
    assert took <= TTL + SWEEP_SECONDS + 1.0
    assert (done["state"], done["attempt"], agents_of(done)) == ("succeeded", 2, ["a", "b"])
    assert final_events(done) == [("succeeded", 2)]
    requeued = [e for e in done["events"] if e["state"] == "queued" and e["attempt"] == 1]
    assert "agent lost" in requeued[0]["reason"]
    lines = await log_lines(client, x["id"])
    assert "attempt=2" in " ".join(lines) and lines[-1] == "done"
    assert await wait_gone(first) >= 0, "attempt 1 died with its agent"
    # The jobs around it: untouched.
    assert (y_done["state"], y_done["attempt"], agents_of(y_done)) == ("succeeded", 1, ["b"])
    assert await log_lines(client, y["id"]) == ["y", "y done"]
    assert await client.get_job(earlier["id"]) == earlier


async def test_claim_answered_into_a_closed_socket_is_requeued_after_the_ttl(
    server: EmbeddedServer, client: LaunchplaneClient, token: str, tmp_path: Path
) -> None:
    job = await client.submit_job(QUEUE, {"command": ["echo", "ran"]})
    body = json.dumps({"agent_id": "ghost"}).encode()
    request = (
        f"POST /api/v1/queues/{QUEUE}/claim?wait=0 HTTP/1.1\r\n"
        f"Host: {server.host}:{server.port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((server.host, server.port)) as ghost:
        ghost.sendall(request)  # ... and the agent dies before it reads a byte of the answer
    claimed = await wait_for_state(client, job["id"], ["claimed"], timeout=10)
    assert claimed["agent_id"] == "ghost"

    async with agent_process(server.url, token, tmp_path / "b", agent_id="b", queues=[QUEUE]):
        done = await wait_for_state(client, job["id"], timeout=TTL + 15)

    waited = claim_time(done, 2) - claim_time(done, 1)
    print(f"\nunread claim -> claimed again: {waited:.2f} s (TTL {TTL:g} s)")
    assert TTL <= waited <= TTL + SWEEP_SECONDS + 1.0
    assert (done["state"], done["attempt"], agents_of(done)) == ("succeeded", 2, ["ghost", "b"])
    assert await log_lines(client, job["id"]) == ["ran"]


async def test_frozen_agent_is_fenced_when_it_wakes_and_stops_its_workload(
    server: EmbeddedServer, client: LaunchplaneClient, token: str, tmp_path: Path
) -> None:
    # Attempt 1 would run for a minute, silently: only fencing can stop it.
    marker = unique_seconds(60)
    script = (
        "echo attempt=$LAUNCHPLANE_ATTEMPT; "
        f'if [ "$LAUNCHPLANE_ATTEMPT" = 1 ]; then exec sleep {marker}; fi; echo done'
    )
    async with agent_process(
        server.url, token, tmp_path / "a", agent_id="a", queues=[QUEUE], args=["--max-jobs", "1"]
    ) as a:
        job = await client.submit_job(QUEUE, {"command": ["sh", "-c", script]})
        line = await wait_for_line(client, job["id"], lambda text: text.startswith("attempt=1"))
        assert line == "attempt=1"
        workload = await find_process(marker, "sleep")
        a.signal(signal.SIGSTOP)
        frozen_at = anyio.current_time()

        async with agent_process(server.url, token, tmp_path / "b", agent_id="b", queues=[QUEUE]):
            done = await wait_for_state(client, job["id"], timeout=TTL + 15)
            assert not pid_gone(workload), "a frozen agent's workload runs on meanwhile"
            await anyio.sleep_until(frozen_at + 2 * TTL)  # the scenario: frozen for 2 x TTL
            a.signal(signal.SIGCONT)
            stopped_in = await wait_gone(workload, timeout=HEARTBEAT + 5)
            await a.wait_log(f"job {job['id']}: fenced")

    print(f"\nfrozen agent resumed -> its stale workload gone in {stopped_in:.2f} s")
    assert stopped_in <= HEARTBEAT + 1.0
    assert "is stale" in a.log()
    after = await client.get_job(job["id"])
    assert after == done, "nothing the stale agent did after waking was recorded"
    assert (done["state"], done["attempt"], agents_of(done)) == ("succeeded", 2, ["a", "b"])
    assert final_events(done) == [("succeeded", 2)]
    assert (await client.get_record(job["id"]))["attempt"] == 2


async def test_claim_answer_read_after_the_lease_expired_never_starts_the_job(
    server: EmbeddedServer, client: LaunchplaneClient, token: str, tmp_path: Path
) -> None:
    # Each attempt leaves a marker in its own run directory (a sandboxed job writes
    # nowhere else); the test looks in every run directory of both agents.
    script = 'touch "$LAUNCHPLANE_OUTPUT_DIR/started-$LAUNCHPLANE_ATTEMPT"; echo ran'
    async with agent_process(
        server.url, token, tmp_path / "a", agent_id="a", queues=[QUEUE], args=["--max-jobs", "1"]
    ) as a:
        # The idle agent's claim long-poll is open; it freezes, and the job goes to it.
        # ("serving queue" is logged before the claim reaches the server: wait for it.)
        async def claim_waiting() -> bool:
            return server.state.hub.waiting(queue_key(QUEUE))

        await eventually(claim_waiting, 10, "a's claim long-poll to reach the server")
        a.signal(signal.SIGSTOP)
        job = await client.submit_job(QUEUE, {"command": ["sh", "-c", script]})
        claimed = await wait_for_state(client, job["id"], ["claimed"])
        assert claimed["agent_id"] == "a"

        async def requeued() -> bool:
            return (await client.get_job(job["id"]))["state"] == "queued"

        await eventually(requeued, TTL + 5, "the frozen agent's lease to expire")
        async with agent_process(server.url, token, tmp_path / "b", agent_id="b", queues=[QUEUE]):
            done = await wait_for_state(client, job["id"], timeout=15)
            a.signal(signal.SIGCONT)  # it reads the claim answer now, long after the TTL
            await a.wait_log(f"job {job['id']}: fenced")

    assert (done["state"], done["attempt"], agents_of(done)) == ("succeeded", 2, ["a", "b"])
    markers = tmp_path.glob("[ab]/*/output/started-*")
    assert sorted(path.name for path in markers) == ["started-2"]
    assert await client.get_job(job["id"]) == done

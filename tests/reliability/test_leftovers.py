"""An agent SIGKILLed mid-job loses no output line: the next attempt's agent ships them.

Real ``launch-agent`` processes, real signals, the local-process runner in its
sandbox. Attempt 1 prints a first line, then, once the test has frozen its
agent (SIGSTOP: it can neither read nor send), numbered lines, notes in its
output directory that it has, and sleeps; the test then kills the agent
(SIGKILL). None of those lines reached the server: before the output went to
a file, they died in the pipe to the agent. Then either the
same agent is started again at once (it is handed back the lease, sends the
lines under it and releases it), or, once the lease has expired, an agent
with another id and the same work directory runs attempt 2 (it sends them
first, as late lines of attempt 1's ended lease); either way the job's log
holds every line attempt 1 wrote exactly once, in order, then attempt 2's.
And when attempt 2 ran on another host while the killed agent was down
longer than the TTL, the agent sends them as late lines when it comes back,
also when it is killed again while it sends them.

A Docker run needs none of this: its container outlives the agent, whose
successor re-adopts it (the same attempt) and reads its log again from the
start, skipping the lines the server has (``logged-lines``); the last test
checks that for lines the killed agent had read but not sent.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest
from chaoskit import (
    DOCKER_BASE_IMAGE,
    agent_process,
    agent_token,
    eventually,
    log_lines,
    require_docker,
    wait_for_line,
    wait_for_state,
)
from kit import subprocess_env

from launchplane.agent.leftovers import open_output, stored_output
from launchplane.agent.rundir import PROGRESS_FILE, lease_file
from launchplane.core.client import LaunchplaneClient
from launchplane.core.output import OUTPUT_FILE
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

QUEUE = "leftovers"
LINES = 150


async def kill_with_unsent_output(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    tmp_path: Path,
    work: Path,
    *,
    agent_id: str,
    lines: int,
    ttl: float,
    queue: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], str]:
    """Agent ``agent_id`` (environment ``env``) runs attempt 1, which prints "first", then
    (its agent frozen: SIGSTOP) ``lines`` numbered lines, and sleeps; then the agent is
    SIGKILLed, so none of the numbered lines reached the server. Attempt 2 prints
    "attempt 2 done". ``queue``: more of the queue's config. Returns the job and the
    agent's token."""
    gate = tmp_path / "gate"  # the sandboxed job sees it read-only
    gate.mkdir()
    local_args = {"local-process": {"read_only_paths": [str(gate)]}}
    config = {"resource": "local-process", "lease_ttl_seconds": ttl, "resource_args": local_args}
    await server.ensure_queue(QUEUE, {**config, **(queue or {})})
    token = await agent_token(client, [QUEUE])
    script = (
        'if [ "$LAUNCHPLANE_ATTEMPT" = 1 ]; then echo first; '
        f"while [ ! -e {gate}/go ]; do sleep 0.01; done; i=1; "
        f'while [ $i -le {lines} ]; do echo "line $i"; i=$((i+1)); done; '
        'touch "$LAUNCHPLANE_OUTPUT_DIR/written"; exec sleep 600; fi; echo "attempt 2 done"'
    )
    options = {"agent_id": agent_id, "queues": [QUEUE], "env": env}
    async with agent_process(server.url, token, work, **options, log_name="first.log") as first:
        job = await client.submit_job(QUEUE, {"command": ["sh", "-c", script]})
        await wait_for_line(client, job["id"], lambda text: text == "first")
        written = work / f"{job['id']}-1" / "output" / "written"

        async def note_is_there() -> bool:
            return written.exists()

        first.signal(signal.SIGSTOP)
        (gate / "go").touch()
        await eventually(note_is_there, 60, "attempt 1 to print its lines")
        await first.kill()
    return job, token


@pytest.mark.parametrize("successor", ["restarted agent", "next attempt's agent"])
async def test_lines_in_flight_when_the_agent_is_killed_are_shipped_by_its_successor(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path, successor: str
) -> None:
    restarted = successor == "restarted agent"
    ttl = 30 if restarted else 3  # the restarted agent comes back long before it expires
    work = tmp_path / "work"
    job, token = await kill_with_unsent_output(
        server, client, tmp_path, work, agent_id="box", lines=LINES, ttl=ttl
    )
    options = {"agent_id": "box", "queues": [QUEUE]}
    stored_at_kill = await log_lines(client, job["id"])
    assert stored_at_kill == ["first"], "the scenario: no numbered line reached the server"

    if not restarted:
        options["agent_id"] = "box-2"
    async with agent_process(server.url, token, work, **options, log_name="second.log") as second:
        done = await wait_for_state(client, job["id"], timeout=ttl + 20)
    assert f"shipping {LINES} output lines of attempt 1" in second.log()
    assert (done["state"], done["attempt"]) == ("succeeded", 2)
    lines = await log_lines(client, job["id"])
    expected = attempt_one(LINES)
    assert lines[: len(expected)] == expected, "every line of attempt 1, once, in order"
    assert lines[len(expected) :] == ["attempt 2 done"]


def progress(run_dir: Path, position: int, first_seq: int, lines: int, output: int) -> None:
    note = {"position": position, "first_seq": first_seq, "lines": lines, "output": output}
    (run_dir / PROGRESS_FILE).write_text(json.dumps(note))


def test_the_log_count_says_whether_the_batch_in_flight_was_stored(tmp_path: Path) -> None:
    """The batch noted last: output lines 10-14 (5 of its 6 lines), seqs 21-26."""
    assert stored_output(tmp_path, 20) == 0, "nothing sent: everything is left over"
    progress(tmp_path, position=10, first_seq=21, lines=6, output=5)
    assert stored_output(tmp_path, 20) == 10, "not stored: it is left over"
    assert stored_output(tmp_path, 26) == 15, "stored (its answer lost): not sent again"


def test_an_output_file_a_job_replaced_is_not_read(tmp_path: Path) -> None:
    """A job writes in its run directory: a link there must not make the agent ship what
    the link points at (the agent's token) as the job's log."""
    secret = tmp_path / "agent-token"
    secret.write_text("token\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / OUTPUT_FILE).symlink_to(secret)
    assert open_output(run_dir) is None
    (run_dir / OUTPUT_FILE).unlink()
    os.link(secret, run_dir / OUTPUT_FILE)  # a second name for the agent's file
    assert open_output(run_dir) is None
    (run_dir / OUTPUT_FILE).unlink()
    os.mkfifo(run_dir / OUTPUT_FILE)  # would block a reader for ever
    assert open_output(run_dir) is None
    os.mkfifo(run_dir / PROGRESS_FILE)
    assert stored_output(run_dir, 100) == 0


@pytest.mark.docker
async def test_a_readopted_container_ships_what_its_killed_agent_had_not(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    engine = require_docker()
    queue = "leftovers-docker"
    await server.ensure_queue(queue, {"resource": "docker", "lease_ttl_seconds": 30})
    token = await agent_token(client, [queue])
    script = (
        "echo first; sleep 1; i=1; "
        f'while [ $i -le {LINES} ]; do echo "line $i"; i=$((i+1)); done; sleep 3; echo done'
    )
    job_spec = {"docker": {"image": DOCKER_BASE_IMAGE}, "command": ["sh", "-c", script]}
    work = tmp_path / "work"
    options = {"agent_id": "docker-box", "queues": [queue]}
    async with agent_process(server.url, token, work, **options, log_name="first.log") as first:
        job = await client.submit_job(queue, job_spec)
        await wait_for_line(client, job["id"], lambda text: text == "first", timeout=60)
        first.signal(signal.SIGSTOP)  # the container prints its lines a second later
        container = engine.containers.get(f"lp-{job['id']}-1")

        async def all_written() -> bool:
            logs = await anyio.to_thread.run_sync(container.logs)
            return f"line {LINES}".encode() in logs

        await eventually(all_written, 20, "the container to print its lines")
        await first.kill()
    stored_at_kill = await log_lines(client, job["id"])
    assert "line 1" not in stored_at_kill, "the scenario: the lines came after the freeze"

    async with agent_process(server.url, token, work, **options, log_name="second.log"):
        done = await wait_for_state(client, job["id"], timeout=60)

    assert (done["state"], done["attempt"]) == ("succeeded", 1), "re-adopted, not run again"
    expected = ["first", *(f"line {n}" for n in range(1, LINES + 1)), "done"]
    own = [line for line in await log_lines(client, job["id"]) if line in expected]
    assert own == expected, "every line of the job once, in order (among the agent's own)"


async def tagged_lines(client: LaunchplaneClient, job_id: str) -> list[tuple[int, str]]:
    """Every line of the job's log with the attempt that printed it, in log order."""
    lines: list[tuple[int, str]] = []
    after = 0
    while page := (await client.read_logs(job_id, after=after))["lines"]:
        lines += [(line["attempt"], line["line"]) for line in page]
        after = page[-1]["seq"]
    return lines


async def attempt_one_killed_then_run_elsewhere(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path, lines: int
) -> tuple[str, str, Path]:
    """Agent "box-a" runs attempt 1, which prints ``lines`` lines none of which reach the
    server (its agent frozen, then SIGKILLed); once the lease has expired, agent "box-b"
    (another work directory: another host) runs attempt 2 to success. Returns the job id,
    box-a's token and its work directory."""
    ttl = 3
    work = tmp_path / "work-a"
    job, token = await kill_with_unsent_output(
        server, client, tmp_path, work, agent_id="box-a", lines=lines, ttl=ttl
    )
    other = await agent_token(client, [QUEUE])
    elsewhere = {"agent_id": "box-b", "queues": [QUEUE]}
    async with agent_process(server.url, other, tmp_path / "work-b", **elsewhere, log_name="b.log"):
        done = await wait_for_state(client, job["id"], timeout=ttl + 30)
    assert (done["state"], done["attempt"]) == ("succeeded", 2)
    assert await tagged_lines(client, job["id"]) == [(1, "first"), (2, "attempt 2 done")], (
        "the scenario: none of attempt 1's numbered lines reached the server"
    )
    return job["id"], token, work


def attempt_one(lines: int) -> list[str]:
    """Every line attempt 1 of :func:`kill_with_unsent_output` prints, in order."""
    return ["first", *(f"line {n}" for n in range(1, lines + 1))]


def attempt_one_whole(lines: int) -> list[tuple[int, str]]:
    return [(1, line) for line in attempt_one(lines)]


async def test_an_agent_back_after_its_lease_expired_ships_its_run_output_as_late_lines(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    job_id, token, work = await attempt_one_killed_then_run_elsewhere(
        server, client, tmp_path, LINES
    )
    expected = [*attempt_one_whole(LINES), (2, "attempt 2 done")]
    options = {"agent_id": "box-a", "queues": [QUEUE]}
    async with agent_process(server.url, token, work, **options, log_name="a-again.log") as back:

        async def all_stored() -> bool:
            return len(await tagged_lines(client, job_id)) >= len(expected)

        await eventually(all_stored, 30, "the late lines of attempt 1")
        await back.wait_log(f"shipping {LINES} output lines of attempt 1")
    lines = await tagged_lines(client, job_id)
    assert sorted(lines) == sorted(expected), "every line of each attempt, once"
    assert [line for line in lines if line[0] == 1] == attempt_one_whole(LINES), "in order"
    assert lines[-LINES:] == attempt_one_whole(LINES)[1:], "late lines at the log's end"
    assert not (work / f"{job_id}-1" / OUTPUT_FILE).exists(), "removed once all stored"


async def test_an_agent_killed_while_it_ships_late_lines_ships_the_rest_once(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    many = 60_000
    job_id, token, work = await attempt_one_killed_then_run_elsewhere(
        server, client, tmp_path, many
    )
    options = {"agent_id": "box-a", "queues": [QUEUE]}
    seen = {"after": 0, "late": 0}

    async def some_late_lines() -> bool:
        page = (await client.read_logs(job_id, after=seen["after"]))["lines"]
        if page:
            seen["after"] = page[-1]["seq"]
            seen["late"] += sum(1 for line in page if line["line"].startswith("line "))
        return seen["late"] > 0

    async with agent_process(server.url, token, work, **options, log_name="a-2.log") as back:
        await eventually(some_late_lines, 30, "the first late lines", every=0.005)
        await back.kill()
    stored = [line for line in await tagged_lines(client, job_id) if line[1].startswith("line ")]
    assert 0 < len(stored) < many, "the scenario: killed with late lines still to send"

    async with agent_process(server.url, token, work, **options, log_name="a-3.log"):

        async def all_stored() -> bool:
            return len(await tagged_lines(client, job_id)) >= many + 2

        await eventually(all_stored, 60, "the rest of attempt 1's late lines")
    lines = await tagged_lines(client, job_id)
    assert sorted(lines) == sorted([*attempt_one_whole(many), (2, "attempt 2 done")]), (
        "every line of each attempt, once"
    )
    assert [line for line in lines if line[0] == 1] == attempt_one_whole(many), "in order"


async def attempt_one_stored(client: LaunchplaneClient, job_id: str, what: str) -> None:
    """Wait (30 s at most) for every line attempt 1 printed; they are stored once, in order."""

    async def all_stored() -> bool:
        return len(await log_lines(client, job_id)) > LINES

    await eventually(all_stored, 30, what)
    assert await log_lines(client, job_id) == attempt_one(LINES), "once, in order"


async def test_output_the_start_up_scan_could_not_send_yet_is_sent_once_it_can(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    """The killed agent comes back at once under another id (a new host name, a config
    change): the lease it left is still live, so the server refuses its late lines (409)
    at the start-up scan. The job has one attempt, so no next attempt on this work
    directory ships them; the agent tries again, and sends them once the lease ended."""
    work = tmp_path / "work"
    one_attempt = {"max_attempts": 1}
    job, token = await kill_with_unsent_output(
        server, client, tmp_path, work, agent_id="box", lines=LINES, ttl=4, queue=one_attempt
    )
    options = {"agent_id": "box-renamed", "queues": [QUEUE]}
    async with agent_process(server.url, token, work, **options, log_name="back.log") as back:
        await back.wait_log("(not shipped")  # 409: the lease is live
        assert await log_lines(client, job["id"]) == ["first"], "the scenario: refused at first"
        lost = await wait_for_state(client, job["id"], timeout=30)
        assert (lost["state"], lost["reason"]) == ("failed", "agent lost")
        await attempt_one_stored(client, job["id"], "the lines the start-up scan could not send")
        await back.wait_log(f"shipping {LINES} output lines of attempt 1")
    assert not (work / f"{job['id']}-1" / OUTPUT_FILE).exists(), "removed once all stored"


async def test_output_whose_secrets_do_not_resolve_stays_on_disk_until_they_do(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    """The agent back after its lease ended cannot resolve the job's secret (its
    environment lost the variable): the output cannot be masked, so it is not sent, and
    it stays on disk (it was deleted, unsent, before). Back with the secret, the agent
    ships it."""
    work = tmp_path / "work"
    secret = {"LEFTOVER_SECRET": "s3cret-value-1234"}
    queue = {"max_attempts": 1, "secrets": {"TOKEN": "env:LEFTOVER_SECRET"}}
    env = subprocess_env(**secret)
    job, token = await kill_with_unsent_output(
        server, client, tmp_path, work, agent_id="box", lines=LINES, ttl=3, queue=queue, env=env
    )
    lost = await wait_for_state(client, job["id"], timeout=30)
    assert (lost["state"], lost["reason"]) == ("failed", "agent lost")
    output = work / f"{job['id']}-1" / OUTPUT_FILE
    options = {"agent_id": "box", "queues": [QUEUE]}
    async with agent_process(server.url, token, work, **options, log_name="no-secret.log") as back:
        await back.wait_log("the job's secrets did not resolve to mask it")
        await anyio.sleep(0.5)  # what the scan does after its warning (it deleted the file)
        assert output.exists(), "unshipped output is kept"
    assert await log_lines(client, job["id"]) == ["first"]
    options["env"] = env
    async with agent_process(server.url, token, work, **options, log_name="secret.log") as back:
        await back.wait_log(f"shipping {LINES} output lines of attempt 1")
        await attempt_one_stored(client, job["id"], "the lines once the secret resolves")


@pytest.mark.parametrize("lines", [LINES, 0], ids=["printing", "silent"])
async def test_a_run_fenced_after_its_agent_froze_past_the_ttl_ships_its_output_late(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path, lines: int
) -> None:
    """The agent is frozen (SIGSTOP) longer than the TTL while its job prints: the job is
    failed as agent lost (one attempt only, so no other attempt ships anything). Woken up,
    the agent is fenced, stops the workload, and sends what it wrote as late lines.

    A job silent meanwhile leaves the agent nothing to send: the heartbeat's answer,
    not a refused call, fences it, and its output file still goes (it was kept, with
    its unmasked output, until the agent's next start)."""
    ttl = 3
    gate = tmp_path / "gate"
    gate.mkdir()
    local_args = {"local-process": {"read_only_paths": [str(gate)]}}
    config = {"resource": "local-process", "lease_ttl_seconds": ttl, "max_attempts": 1}
    await server.ensure_queue(QUEUE, {**config, "resource_args": local_args})
    token = await agent_token(client, [QUEUE])
    script = (
        f"echo first; while [ ! -e {gate}/go ]; do sleep 0.01; done; i=1; "
        f'while [ $i -le {lines} ]; do echo "line $i"; i=$((i+1)); done; '
        'touch "$LAUNCHPLANE_OUTPUT_DIR/written"; exec sleep 600'
    )
    work = tmp_path / "work"
    options = {"agent_id": "frozen", "queues": [QUEUE]}
    async with agent_process(server.url, token, work, **options) as agent:
        job = await client.submit_job(QUEUE, {"command": ["sh", "-c", script]})
        await wait_for_line(client, job["id"], lambda text: text == "first")
        run_dir = work / f"{job['id']}-1"

        async def note_is_there() -> bool:
            return (run_dir / "output" / "written").exists()

        agent.signal(signal.SIGSTOP)
        (gate / "go").touch()
        await eventually(note_is_there, 60, "attempt 1 to print its lines")
        lost = await wait_for_state(client, job["id"], timeout=ttl + 30)
        assert (lost["state"], lost["reason"]) == ("failed", "agent lost")
        assert await log_lines(client, job["id"]) == ["first"], "the scenario: none got there"
        agent.signal(signal.SIGCONT)

        async def output_gone() -> bool:
            return not (run_dir / OUTPUT_FILE).exists()

        await eventually(output_gone, 30, "the fenced run's output shipped, then removed")
        if lines:
            await agent.wait_log(f"shipping {lines} output lines of attempt 1")
        else:
            assert "lease is stale; stopping it" in agent.log(), "the scenario: the heartbeat"
    assert await tagged_lines(client, job["id"]) == attempt_one_whole(lines)
    assert not lease_file(run_dir).exists()

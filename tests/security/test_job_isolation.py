"""Job isolation on the local-process runner (issue 15 item 1, issue 16 item 2's local part).

A real ``launchplane server`` and a real ``launch-agent`` on loopback, the
agent's work directory inside the server's data directory (the default
layout). The agent holds its token in ``LAUNCHPLANE_TOKEN`` and a canary secret
that an env-provider queue hands to its jobs; an attacker's job on a queue with
no secrets looks for them where a same-user process could find them before:
``/proc/<pid>/environ`` and ``cmdline`` of every process it can see (the agent,
other jobs), the agent's memory, the admin-token file, the data directory. A job
that outlives its killed agent is looked for among the host's processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kit import (
    agent_process,
    find_process,
    log_lines,
    server_process,
    subprocess_env,
    unique_seconds,
    wait_for_line,
    wait_for_state,
    wait_gone,
)

from launchplane.core.client import LaunchplaneClient

pytestmark = pytest.mark.anyio

CANARY = "h4-canary-Vq7r-secret-value"
"""The secret value of the ``secret`` queue (from the agent's environment, ``env:`` provider)."""
CANARY_SOURCE = "H4_CANARY_SOURCE"
PLAIN, SECRET, OPEN = "plain", "secret", "open"
"""Queues: no secrets (the attacker's); an env-provider secret; ``isolation: none``."""

PROBE = r"""
import json, os, sys
names, paths = json.loads(sys.argv[1]), json.loads(sys.argv[2])
found = {"leaks": [], "reached": [], "listed": {}, "comms": []}
for pid in (p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
    try:
        found["comms"].append(open(f"/proc/{pid}/comm").read().strip())
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        continue
    for part in ("environ", "cmdline"):
        try:
            fields = open(f"/proc/{pid}/{part}", "rb").read().split(b"\0")
        except OSError:
            continue
        for name in names:
            if any(f.startswith(name.encode() + b"=") or f == b"--token" for f in fields):
                found["leaks"].append(f"{name} in /proc/{pid}/{part}")
    if not any(f.endswith(b"launch-agent") for f in argv[:2]):
        continue
    try:  # the agent's memory, as a debugger of the same user reads it
        maps = open(f"/proc/{pid}/maps").read().split("\n")
        start = int(maps[0].split("-")[0], 16)
        with open(f"/proc/{pid}/mem", "rb") as mem:
            mem.seek(start)
            if mem.read(64):
                found["leaks"].append(f"memory of the agent, /proc/{pid}/mem")
    except (OSError, ValueError, IndexError):
        pass
for path in paths:
    try:
        if os.path.isdir(path):
            found["listed"][path] = sorted(os.listdir(path))
        else:
            open(path, "rb").read()
            found["reached"].append(path)
    except OSError:
        pass
print("probe " + json.dumps(found))
"""
"""What a hostile job does: list what of the agent and of other jobs it can reach.

It prints names and paths, never values (the agent's redactor would mask a
value, which would hide a leak)."""


def probe(names: list[str], paths: list[Path]) -> list[str]:
    """The probe as a job command: the agent's interpreter, which every sandbox has."""
    return [sys.executable, "-c", PROBE, json.dumps(names), json.dumps([str(p) for p in paths])]


async def probed(client: LaunchplaneClient, job_id: str) -> dict[str, Any]:
    line = await wait_for_line(client, job_id, lambda text: text.startswith("probe "))
    return json.loads(line.removeprefix("probe "))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real server process: (URL, data directory holding its admin-token file)."""
    data_dir = tmp_path / "data"
    with server_process(data_dir) as url:
        yield url, data_dir


@pytest.fixture
async def client(server: tuple[str, Path]) -> AsyncIterator[LaunchplaneClient]:
    url, data_dir = server
    admin = (data_dir / "admin-token").read_text().strip()
    async with LaunchplaneClient(url, admin) as http:
        await http.create_queue(PLAIN, {"resource": "local-process"})
        await http.create_queue(
            SECRET, {"resource": "local-process", "secrets": {"CANARY": f"env:{CANARY_SOURCE}"}}
        )
        await http.create_queue(
            OPEN,
            {
                "resource": "local-process",
                "resource_args": {"local-process": {"isolation": "none"}},
            },
        )
        yield http


async def token_for(client: LaunchplaneClient) -> str:
    return (await client.create_token("agent", [PLAIN, SECRET, OPEN]))["token"]


def agent_env(token: str, **extra: str) -> dict[str, str]:
    """The agent's environment: its token and the canary's source, as an operator sets them."""
    return subprocess_env(LAUNCHPLANE_TOKEN=token, **{CANARY_SOURCE: CANARY}, **extra)


async def test_job_reaches_neither_the_agent_nor_its_token_nor_another_job(
    server: tuple[str, Path], client: LaunchplaneClient
) -> None:
    """Before the sandbox, the probe read LAUNCHPLANE_TOKEN and the canary's source in the
    agent's /proc/<pid>/environ, the agent's memory, the other job's CANARY, and the files."""
    url, data_dir = server
    token = await token_for(client)
    work = data_dir / "work"
    async with agent_process(
        url, token, work, queues=[PLAIN, SECRET], agent_id="box", env=agent_env(token)
    ) as agent:
        await agent.wait_log("serving queue")
        # The victim: a job of another queue that holds the canary, running meanwhile.
        victim = await client.submit_job(
            SECRET, {"command": ["sh", "-c", "echo up; until [ -e stop ]; do sleep 0.05; done"]}
        )
        await wait_for_line(client, victim["id"], lambda line: line == "up")
        victim_run = work / f"{victim['id']}-1"
        names = ["LAUNCHPLANE_TOKEN", CANARY_SOURCE, "CANARY"]
        paths = [data_dir / "admin-token", data_dir, work, victim_run, victim_run / "record.json"]
        attacker = await client.submit_job(PLAIN, {"command": probe(names, paths)})
        found = await probed(client, attacker["id"])
        (victim_run / "stop").touch()
        assert (await wait_for_state(client, attacker["id"]))["state"] == "succeeded"
        await wait_for_state(client, victim["id"])

    assert found["leaks"] == []
    assert found["reached"] == []  # the admin token, the victim's record
    # The data and work directories are only the way to the job's own run directory:
    assert found["listed"] == {str(data_dir): ["work"], str(work): [f"{attacker['id']}-1"]}
    assert "launch-agent" not in found["comms"]  # the agent is not even in the job's /proc
    assert "sh" not in found["comms"]  # nor is the victim job
    assert CANARY not in "\n".join(await log_lines(client, attacker["id"]))


async def test_agent_token_is_never_inherited_even_when_a_queue_names_it(
    server: tuple[str, Path], client: LaunchplaneClient
) -> None:
    """A queue that passes LAUNCHPLANE_TOKEN through (an admin's slip) gets nothing: before
    the fix the job's environment held the agent's token."""
    url, data_dir = server
    token = await token_for(client)
    await client.update_queue(
        PLAIN, {"resource": "local-process", "passthrough_env": ["LAUNCHPLANE_TOKEN"]}
    )
    code = "import os; print('has-token' if 'LAUNCHPLANE_TOKEN' in os.environ else 'no-token')"
    async with agent_process(
        url, token, data_dir / "work", queues=[PLAIN], agent_id="box", env=agent_env(token)
    ):
        job = await client.submit_job(PLAIN, {"command": [sys.executable, "-c", code]})
        done = await wait_for_state(client, job["id"])
    assert done["state"] == "succeeded"
    assert await log_lines(client, job["id"]) == ["no-token"]


@pytest.mark.parametrize("queue", [PLAIN, OPEN], ids=["sandbox", "isolation-none"])
async def test_job_of_a_killed_agent_is_gone_before_the_next_attempt_starts(
    server: tuple[str, Path], client: LaunchplaneClient, queue: str
) -> None:
    """Issue 16: a silent job outlived its SIGKILLed agent and overlapped with attempt 2.

    The job writes nothing, so no broken pipe can end it: only dying with its
    agent does. It is looked for on the host after the agent is dead and
    before a new agent (same id and work directory) starts attempt 2.
    """
    url, data_dir = server
    token = await token_for(client)
    marker = unique_seconds(600)
    script = f'if [ "$LAUNCHPLANE_ATTEMPT" = 1 ]; then exec sleep {marker}; fi; echo attempt-2'
    options: dict[str, Any] = {"queues": [queue], "agent_id": "box", "env": agent_env(token)}
    async with agent_process(url, token, data_dir / "work", **options, log_name="a1.log") as a1:
        job = await client.submit_job(queue, {"command": ["sh", "-c", script]})
        await wait_for_state(client, job["id"], ["running"])
        attempt_1 = await find_process(marker, "sleep")
        await a1.kill()
    assert await wait_gone(attempt_1) >= 0, "attempt 1 outlived its agent"
    async with agent_process(url, token, data_dir / "work", **options, log_name="a2.log"):
        done = await wait_for_state(client, job["id"])
    assert (done["state"], done["attempt"]) == ("succeeded", 2)
    assert (await log_lines(client, job["id"]))[-1] == "attempt-2"


async def test_isolation_none_is_logged_loudly(
    server: tuple[str, Path], client: LaunchplaneClient
) -> None:
    url, data_dir = server
    token = await token_for(client)
    async with agent_process(
        url, token, data_dir / "work", queues=[OPEN], agent_id="box", env=agent_env(token)
    ) as agent:
        job = await client.submit_job(OPEN, {"command": ["echo", "ran"]})
        done = await wait_for_state(client, job["id"])
        log = await agent.wait_log("isolation: none")
    assert done["state"] == "succeeded"
    assert "WARNING" in log.split("isolation: none")[0].rsplit("\n", 1)[-1]
    lines = await log_lines(client, job["id"])
    assert lines[-1] == "ran"
    assert any(line.startswith("warning: local-process: isolation: none") for line in lines)


async def test_isolation_is_the_admins_choice_not_the_submitters(
    server: tuple[str, Path], client: LaunchplaneClient
) -> None:
    """A submitter cannot opt out of the sandbox, switch users or bind host paths."""
    url, _ = server
    for field, value in (("isolation", "none"), ("run_as", "nobody"), ("read_only_paths", ["/"])):
        submitter = (await client.create_token("submitter"))["token"]
        async with LaunchplaneClient(url, submitter, retries=0) as them:
            job = {"command": ["true"], "resource_args": {"local-process": {field: value}}}
            with pytest.raises(Exception) as refused:
                await them.submit_job(PLAIN, job)
        assert f"resource_args.local-process.{field}" in str(refused.value)


async def test_sandboxed_queue_without_bwrap_fails_with_the_install_command(
    server: tuple[str, Path], client: LaunchplaneClient, tmp_path: Path
) -> None:
    """The agent's PATH has no bwrap (a real condition: a host without the package)."""
    url, data_dir = server
    token = await token_for(client)
    bin_dir = tmp_path / "bin-without-bwrap"
    bin_dir.mkdir()
    (bin_dir / "true").symlink_to("/bin/true")
    env = agent_env(token, PATH=str(bin_dir))
    async with agent_process(
        url, token, data_dir / "work", queues=[PLAIN], agent_id="box", env=env
    ):
        job = await client.submit_job(PLAIN, {"command": ["true"]})
        done = await wait_for_state(client, job["id"])
    assert done["state"] == "failed"
    assert "apt-get install bubblewrap" in done["reason"]
    assert "isolation: none" in done["reason"]  # and the opt-out, named


@pytest.mark.skipif(os.geteuid() != 0, reason="run_as needs an agent running as root")
async def test_run_as_runs_the_job_as_that_user_with_no_capabilities(
    server: tuple[str, Path], client: LaunchplaneClient
) -> None:
    url, data_dir = server
    token = await token_for(client)
    args = {"local-process": {"run_as": "nobody"}}
    await client.update_queue(PLAIN, {"resource": "local-process", "resource_args": args})
    script = (
        'id -u; grep CapEff /proc/self/status; touch "$LAUNCHPLANE_OUTPUT_DIR/out" && echo wrote; '
        "touch /usr/h4-probe 2>/dev/null || echo usr-read-only"
    )
    async with agent_process(
        url, token, data_dir / "work", queues=[PLAIN], agent_id="box", env=agent_env(token)
    ):
        job = await client.submit_job(PLAIN, {"command": ["sh", "-c", script]})
        done = await wait_for_state(client, job["id"])
    assert done["state"] == "succeeded", done["reason"]
    lines = await log_lines(client, job["id"])
    assert lines == ["65534", "CapEff:\t0000000000000000", "wrote", "usr-read-only"]


def test_agent_process_is_not_dumpable() -> None:
    """``launch-agent`` starts with PR_SET_DUMPABLE 0 (what the CLI entry calls, in a fresh
    process: the kernel answers PR_GET_DUMPABLE for the calling process only)."""
    code = (
        "import ctypes; from launchplane.cli.agent import make_non_dumpable; "
        "assert make_non_dumpable(); print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0"


async def test_sandboxed_job_gets_sigterm_before_sigkill_on_cancel(
    server: tuple[str, Path], client: LaunchplaneClient
) -> None:
    """Cancel signals the job, not bwrap: bwrap dying of SIGTERM would SIGKILL the job at once,
    and a training job's checkpoint-on-SIGTERM handler would never run."""
    url, data_dir = server
    token = await token_for(client)
    # A cancel reaches the agent with its next heartbeat, every TTL / 3 (20 s by default).
    await client.update_queue(PLAIN, {"resource": "local-process", "lease_ttl_seconds": 6})
    # The handler takes a while, as a checkpoint does: bwrap's death would cut it short.
    script = (
        "trap 'sleep 1; echo checkpointed; exit 0' TERM; echo up; while true; do sleep 0.05; done"
    )
    async with agent_process(
        url, token, data_dir / "work", queues=[PLAIN], agent_id="box", env=agent_env(token)
    ):
        job = await client.submit_job(PLAIN, {"command": ["sh", "-c", script]})
        await wait_for_line(client, job["id"], lambda line: line == "up")
        await client.cancel_job(job["id"])
        done = await wait_for_state(client, job["id"])
    assert done["state"] == "cancelled"
    lines = await log_lines(client, job["id"])
    assert lines[0] == "up" and "checkpointed" in lines

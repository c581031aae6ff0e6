"""Tokens and files (issue 15): the local admin token never leaves this machine, agent ids
are bound to their agent token, and the data directory and its files are private.

Revocation and expiry are in test_token_revocation.py.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest
from kit import LAUNCH_AGENT, LAUNCHPLANE, QUEUE, free_port, server_process, subprocess_env

from launchplane.core.client import LaunchplaneClient, Unauthorized
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.settings import ServerSettings


def test_agent_does_not_send_local_admin_token_to_a_remote_server(tmp_path: Path) -> None:
    """Without --token, the agent refuses a non-loopback --server instead of sending it the file.

    Before the fix the agent read the admin-token file and tried to register
    with the remote server (192.0.2.1 is TEST-NET: it hangs until the timeout).
    """
    (tmp_path / "admin-token").write_text("canary-admin-token\n")
    os.chmod(tmp_path / "admin-token", 0o600)
    unset = ("LAUNCHPLANE_TOKEN", "LAUNCHPLANE_SERVER")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["LAUNCHPLANE_HOME"] = str(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from launchplane.cli import agent_main; agent_main()",
            "--server",
            "http://192.0.2.1:9",
            "--queue",
            "q",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "no token" in done.stderr
    assert "canary-admin-token" not in done.stdout + done.stderr


# -- agent ids are bound to their agent token ---------------------------------------------


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(settings=ServerSettings(data_dir=tmp_path / "data")) as srv:
        await srv.ensure_queue(QUEUE, {"resource": "local-process"})
        yield srv


@pytest.fixture
async def admin(server: EmbeddedServer) -> AsyncIterator[LaunchplaneClient]:
    async with LaunchplaneClient(server.url, server.admin_token, retries=0) as client:
        yield client


async def agent_token(admin: LaunchplaneClient, name: str) -> dict[str, Any]:
    return await admin.create_token("agent", [QUEUE], name)


async def refused(call: Awaitable[object]) -> str:
    """The message of the 403 that ``call`` must end in."""
    with pytest.raises(Unauthorized) as caught:
        await call
    assert caught.value.status == 403, caught.value
    return caught.value.message


@pytest.mark.anyio
async def test_a_stolen_agent_token_cannot_pose_as_another_agent_of_its_queue(
    server: EmbeddedServer, admin: LaunchplaneClient
) -> None:
    """Before the fix, any agent token of a queue could register under another agent's id,
    get its leases back and complete its job with a forged record."""
    victim_token = (await agent_token(admin, "victim"))["token"]
    thief_token = (await agent_token(admin, "thief"))["token"]
    job = await admin.submit_job(QUEUE, {"command": ["true"]})
    async with (
        LaunchplaneClient(server.url, victim_token, retries=0) as victim,
        LaunchplaneClient(server.url, thief_token, retries=0) as thief,
    ):
        await victim.register_agent("victim-1", queues=[QUEUE])
        lease = await victim.claim(QUEUE, "victim-1", wait=5)
        assert lease is not None

        message = await refused(thief.register_agent("victim-1", queues=[QUEUE]))
        assert "registered with another agent token" in message and "--agent-id" in message
        await refused(thief.claim(QUEUE, "victim-1", wait=0))
        await refused(thief.heartbeat("victim-1", [lease.lease_id]))
        await refused(thief.post_event(lease.lease_id, "running"))
        await refused(thief.append_logs(lease.lease_id, ["forged log line"]))
        forged = thief.complete(lease.lease_id, "succeeded", exit_code=0, record={"forged": 1})
        assert "not registered with this agent token" in await refused(forged)
        await refused(thief.release(lease.lease_id, "stolen"))
        # Under its own id the thief renews nothing of the victim's.
        beat = await thief.heartbeat("thief-1", [lease.lease_id])
        assert beat["stale"] == [lease.lease_id]

        assert (await admin.get_job(job["id"]))["state"] == "claimed"
        await victim.append_logs(lease.lease_id, ["real line"])
        done = await victim.complete(lease.lease_id, "succeeded", exit_code=0, record={"r": 1})
        assert done["state"] == "succeeded"
    assert await admin.get_record(job["id"]) == {"r": 1}


@pytest.mark.anyio
async def test_a_new_token_takes_over_the_id_of_a_revoked_one_with_its_leases(
    server: EmbeddedServer, admin: LaunchplaneClient
) -> None:
    """Rotating a leaked agent token: revoke it, give the agent a new one, same agent id."""
    old = await agent_token(admin, "old")
    new = await agent_token(admin, "new")
    await admin.submit_job(QUEUE, {"command": ["true"]})
    async with (
        LaunchplaneClient(server.url, old["token"], retries=0) as before,
        LaunchplaneClient(server.url, new["token"], retries=0) as after,
    ):
        lease = await before.claim(QUEUE, "gpu-box", wait=5)
        assert lease is not None
        await refused(after.register_agent("gpu-box", queues=[QUEUE]))
        await admin.revoke_token(old["id"])
        held = await after.register_agent("gpu-box", queues=[QUEUE])
        assert [h.lease_id for h in held] == [lease.lease_id]
        await after.complete(lease.lease_id, "succeeded", exit_code=0, record={})
        # One token may serve several agent ids (a pool sharing it: one principal).
        assert await after.register_agent("gpu-box-2", queues=[QUEUE]) == []


# -- files: the data directory, the database and the token file ----------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_server_creates_its_data_directory_0700_and_its_files_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    with server_process(data_dir):
        assert mode(tmp_path / "new") == mode(data_dir) == 0o700
        files = sorted(data_dir.iterdir())
        assert {f.name for f in files} >= {"admin-token", "launchplane.db"}
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}


def test_an_agent_that_creates_the_data_directory_first_makes_it_0700(tmp_path: Path) -> None:
    """Before the fix the agent made it 0755, and the server then put a 0644 database in it."""
    home = tmp_path / "home" / "launchplane"
    env = subprocess_env(LAUNCHPLANE_HOME=str(home))
    # Nothing listens on the server port: the agent retries until it is stopped.
    nowhere = f"http://127.0.0.1:{free_port()}"
    agent = subprocess.Popen(
        [LAUNCH_AGENT, "--server", nowhere, "--token", "x", "--queue", QUEUE],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (home / "work").exists():
            assert agent.poll() is None and time.monotonic() < deadline, "no work directory"
            time.sleep(0.05)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    assert mode(tmp_path / "home") == mode(home) == 0o700
    with server_process(home):
        assert mode(home / "launchplane.db") == 0o600
        assert mode(home / "admin-token") == 0o600


def test_the_server_warns_about_a_data_directory_others_may_read(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    done = subprocess.run(
        [LAUNCHPLANE, "db", "upgrade", "--data-dir", str(data_dir)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "readable by other users (mode 0755)" in done.stderr
    assert f"chmod 700 {data_dir}" in done.stderr
    assert mode(data_dir / "launchplane.db") == 0o600


def test_the_server_refuses_an_admin_token_file_it_did_not_write(tmp_path: Path) -> None:
    """A 0644 token file someone left (readable by all) must not become the admin token."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    planted = data_dir / "admin-token"
    planted.write_text("lp_planted-canary\n")
    planted.chmod(0o644)
    done = subprocess.run(
        [LAUNCHPLANE, "server", "--port", str(free_port()), "--data-dir", str(data_dir)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"token file {planted} has mode 0644" in done.stderr
    assert f"chmod 600 {planted}" in done.stderr
    assert "Traceback" not in done.stderr and "lp_planted-canary" not in done.stderr

"""The queue server is killed (SIGKILL) and restarted while agents hold running jobs.

``launchplane server`` runs as users run it, a separate process on SQLite; the
agents back off while it is gone, reconnect, and deliver what their jobs
printed meanwhile. No job is lost, none runs twice, no log line is lost or
doubled. (PostgreSQL restarts are covered by the store's own suite.)
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest
from chaoskit import (
    BIN,
    agent_process,
    agent_token,
    eventually,
    log_lines,
    subprocess_env,
    wait_for_line,
    wait_for_state,
)
from kit import free_port

from launchplane.core.client import LaunchplaneClient

pytestmark = pytest.mark.anyio

QUEUE = "restart"
TTL = 20.0
"""Longer than a restart takes: the leases must survive it (nothing is re-queued)."""


class ServerProcess:
    """``launchplane server`` on a fixed port and data directory, started and killed at will."""

    def __init__(self, data_dir: Path, log_file: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        self.process: anyio.abc.Process | None = None

    async def start(self) -> None:
        command = [str(BIN / "launchplane"), "server", "--port", str(self.port)]
        with self.log_file.open("ab") as output:
            self.process = process = await anyio.open_process(
                [*command, "--data-dir", str(self.data_dir)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                env=subprocess_env(),
            )

        async def up() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"server exited: {self.log_file.read_text()}")
            try:
                async with httpx.AsyncClient() as http:
                    health = await http.get(self.url + "/api/v1/health", timeout=1)
                    return health.status_code == 200
            except httpx.TransportError:
                return False

        await eventually(up, 30, "the server to answer")

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()


@pytest.fixture
async def server_process(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(tmp_path / "server", tmp_path / "server.log")
    try:
        yield server
    finally:
        await server.kill()


async def test_server_killed_and_restarted_while_agents_hold_jobs(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    server = server_process
    # The sandboxed jobs see the gate files through the queue's read_only_paths.
    gate = tmp_path / "gate"
    gate.mkdir()
    a, b = gate / "a-may-print", gate / "b-may-finish"
    script = (
        f"echo before; while [ ! -e {a} ]; do sleep 0.05; done; echo during; "
        f"while [ ! -e {b} ]; do sleep 0.05; done; echo after"
    )
    await server.start()
    admin_token = (server.data_dir / "admin-token").read_text().strip()
    async with LaunchplaneClient(server.url, admin_token) as admin:
        local_args = {"local-process": {"read_only_paths": [str(gate)]}}
        config = {
            "resource": "local-process",
            "lease_ttl_seconds": TTL,
            "resource_args": local_args,
        }
        await admin.create_queue(QUEUE, config)
        token = await agent_token(admin, [QUEUE])
        # Spare slots: each agent also has a claim waiting when the server dies.
        options = {"queues": [QUEUE], "args": ["--max-jobs", "5"]}
        async with (
            agent_process(server.url, token, tmp_path / "w1", agent_id="w1", **options) as w1,
            agent_process(server.url, token, tmp_path / "w2", agent_id="w2", **options) as w2,
        ):
            jobs = [
                (await admin.submit_job(QUEUE, {"command": ["sh", "-c", script]}))["id"]
                for _ in range(4)
            ]
            for job_id in jobs:
                await wait_for_line(admin, job_id, lambda line: line == "before")
            await server.kill()
            a.touch()  # the jobs print while the server is gone; the agents keep the lines
            await w1.wait_log("unreachable")
            await w2.wait_log("unreachable")
            await server.start()
            for job_id in jobs:
                await wait_for_line(admin, job_id, lambda line: line == "during")
            b.touch()
            late = (await admin.submit_job(QUEUE, {"command": ["echo", "late"]}))["id"]
            done = [await wait_for_state(admin, job_id) for job_id in [*jobs, late]]
            logs = {job_id: await log_lines(admin, job_id) for job_id in jobs}
            listed = await admin.list_jobs(QUEUE)
            for agent in (w1, w2):
                await agent.wait_log("reachable again")

    assert sorted(job["id"] for job in listed) == sorted([*jobs, late]), "no job lost or added"
    assert {(job["state"], job["attempt"]) for job in done} == {("succeeded", 1)}
    for job in done:
        assert [e["state"] for e in job["events"]].count("claimed") == 1, "never ran twice"
    assert all(lines == ["before", "during", "after"] for lines in logs.values()), logs

"""Restarting the server under running agents: no job lost, none run twice, on each backend.

The server is a real process on a fixed port, restarted on the same
database twice while ``launch-agent`` processes hold leases: once cleanly
(SIGTERM), once as a crash (SIGKILL). Agents must ride it out: retry with
backoff and keep their leases (a starting server renews every live lease,
since nobody could heartbeat while it was down), then report their jobs.
Each job appends a line to a marker file of its own, so a job that ran twice
would show.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from kit import LAUNCH_AGENT, subprocess_env
from storekit import QUEUE, ServerProcess

from launchplane.core.client import ClientError, LaunchplaneClient

pytestmark = pytest.mark.anyio

AGENTS = 3
JOBS = 16
LEASE_TTL = 10.0
"""Heartbeats every ~3 s; a restarted server renews every live lease for one TTL."""


async def jobs_in(client: LaunchplaneClient, state: str) -> list[dict[str, Any]]:
    """The jobs in ``state``; [] while the server is down."""
    with contextlib.suppress(ClientError):
        return await client.list_jobs(queue=QUEUE, state=state, limit=JOBS)
    return []


async def wait_running(client: LaunchplaneClient, count: int) -> None:
    with anyio.fail_after(60):
        while len(await jobs_in(client, "running")) < count:
            await anyio.sleep(0.1)


async def test_agents_ride_out_server_restarts(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    server = server_process
    # Each run notes its attempt in its own output/ (a sandboxed job writes nowhere else).
    script = 'echo "$LAUNCHPLANE_ATTEMPT" >> "$LAUNCHPLANE_OUTPUT_DIR/attempt"; sleep 1.5'
    async with LaunchplaneClient(server.url, server.admin_token) as admin:
        await admin.create_queue(
            QUEUE, {"resource": "local-process", "lease_ttl_seconds": LEASE_TTL}
        )
        token = (await admin.create_token("agent", [QUEUE]))["token"]
        jobs = [
            (await admin.submit_job(QUEUE, {"command": ["sh", "-c", script]}))["id"]
            for _ in range(JOBS)
        ]
        logs = [tmp_path / f"agent-{n}.log" for n in range(AGENTS)]
        agents = []
        for n, log_file in enumerate(logs):
            command = [LAUNCH_AGENT, "--server", server.url, "--token", token, "--queue", QUEUE]
            command += ["--work-dir", str(tmp_path / f"work-{n}"), "--max-jobs", "2"]
            with log_file.open("wb") as log:
                agents.append(
                    subprocess.Popen(command, stdout=log, stderr=log, env=subprocess_env())
                )
        held: set[str] = set()
        try:
            for how in (signal.SIGTERM, signal.SIGKILL):
                await wait_running(admin, AGENTS)
                held |= {job["id"] for job in await jobs_in(admin, "running")}
                server.stop(how)
                await anyio.sleep(1.0)  # agents notice: heartbeats and claims fail
                await anyio.to_thread.run_sync(server.start)
                done = len(await jobs_in(admin, "succeeded"))
                with anyio.fail_after(60):  # agents are back at work before the next outage
                    while len(await jobs_in(admin, "succeeded")) < done + AGENTS:
                        await anyio.sleep(0.1)
            with anyio.fail_after(120):
                while (
                    len(await jobs_in(admin, "succeeded")) + len(await jobs_in(admin, "failed"))
                    < JOBS
                ):
                    await anyio.sleep(0.2)
            finals = [await admin.get_job(job_id) for job_id in jobs]
        finally:
            for process in agents:
                process.terminate()
            for process in agents:
                await anyio.to_thread.run_sync(process.wait)

    assert Counter(job["state"] for job in finals) == {"succeeded": JOBS}, [
        (job["id"], job["state"], job["reason"]) for job in finals if job["state"] != "succeeded"
    ]
    runs = {
        job_id: [
            line
            for marker in tmp_path.glob(f"work-*/{job_id}-*/output/attempt")
            for line in marker.read_text().split()
        ]
        for job_id in jobs
    }
    assert {job_id: len(lines) for job_id, lines in runs.items() if len(lines) != 1} == {}, (
        "every job ran exactly once"
    )
    across = [job for job in finals if job["id"] in held]
    assert len(across) >= AGENTS, "jobs were running while the server restarted"
    for job in across:
        claims = [event for event in job["events"] if event["state"] == "claimed"]
        assert (job["attempt"], len(claims)) == (1, 1), "held across the restart"
    for log_file in logs:
        assert "Traceback" not in log_file.read_text()

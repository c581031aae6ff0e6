"""Claim exclusivity under load, on each backend: every job runs once, none is lost.

Many agents claim and complete short jobs as fast as they can against a real
server process; every lease handed out is recorded. A job claimed twice, a
job never finished, a second attempt or any 5xx fails the test. The default
size keeps each backend well under a minute on two cores;
``LAUNCHPLANE_STRESS=1`` runs far more (README, "Stress runs").
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest
from kit import LAUNCH_AGENT, subprocess_env
from storekit import QUEUE, STRESS, ServerProcess, submit_many

from launchplane.core.client import FINAL_STATES, LaunchplaneClient
from launchplane.server.store import Store

pytestmark = pytest.mark.anyio

AGENTS, JOBS = (50, 10_000) if STRESS else (20, 400)
PROCESS_AGENTS, PROCESS_JOBS = (8, 400) if STRESS else (4, 40)


async def setup_queue(server: ServerProcess) -> str:
    """Create the queue; an agent token for it."""
    async with LaunchplaneClient(server.url, server.admin_token) as admin:
        await admin.create_queue(QUEUE, {"resource": "local-process"})
        return (await admin.create_token("agent", [QUEUE]))["token"]


@pytest.mark.timeout(1200 if STRESS else 300)
async def test_many_agents_claim_every_job_exactly_once(server_process: ServerProcess) -> None:
    token = await setup_queue(server_process)
    store = Store(server_process.db_url)
    await store.open()
    try:
        # Queued straight into the database: this test is about claims, not submits.
        job_ids = await submit_many(store, JOBS)
        leases: list[tuple[str, str, int]] = []
        finished = anyio.Event()

        async def agent(n: int) -> None:
            async with LaunchplaneClient(server_process.url, token, retries=0) as client:
                while not finished.is_set():
                    lease = await client.claim(QUEUE, f"agent-{n}", wait=0.5)
                    if lease is None:
                        continue
                    leases.append((lease.job_id, lease.lease_id, lease.attempt))
                    await client.complete(lease.lease_id, "succeeded", exit_code=0)
                    if len(leases) == JOBS:
                        finished.set()

        started = time.perf_counter()
        async with anyio.create_task_group() as tasks:
            for n in range(AGENTS):
                tasks.start_soon(agent, n)
            await finished.wait()
            elapsed = time.perf_counter() - started
        print(
            f"\n{store.backend}: {AGENTS} agents claimed and completed {JOBS} jobs in "
            f"{elapsed:.1f}s ({JOBS / elapsed:.0f} jobs/s)"
        )
        claimed = Counter(job_id for job_id, _, _ in leases)
        assert [job for job, times in claimed.items() if times > 1] == [], "claimed twice"
        assert set(claimed) == set(job_ids), "every job claimed"
        assert {attempt for _, _, attempt in leases} == {1}
        jobs = await store.list_jobs(queue=QUEUE, limit=JOBS + 1)
        assert Counter(job.state for job in jobs) == {"succeeded": JOBS}
    finally:
        await store.close()


async def test_real_agent_processes_run_every_job_once(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    token = await setup_queue(server_process)
    async with LaunchplaneClient(server_process.url, server_process.admin_token) as admin:
        jobs = [
            (await admin.submit_job(QUEUE, {"command": ["true"]}))["id"]
            for _ in range(PROCESS_JOBS)
        ]
        agents: list[subprocess.Popen[bytes]] = []
        logs = [tmp_path / f"agent-{n}.log" for n in range(PROCESS_AGENTS)]
        for n, log_file in enumerate(logs):
            command = [LAUNCH_AGENT, "--server", server_process.url, "--token", token]
            command += ["--queue", QUEUE, "--work-dir", str(tmp_path / f"work-{n}")]
            with log_file.open("wb") as log:
                agents.append(
                    subprocess.Popen(
                        [*command, "--max-jobs", "4"], stdout=log, stderr=log, env=subprocess_env()
                    )
                )
        try:
            with anyio.fail_after(120):
                for job_id in jobs:
                    while (await admin.get_job(job_id))["state"] not in FINAL_STATES:
                        await anyio.sleep(0.1)
        finally:
            for process in agents:
                process.terminate()
            for process in agents:
                await anyio.to_thread.run_sync(process.wait)
        finals = [await admin.get_job(job_id) for job_id in jobs]
    assert Counter(job["state"] for job in finals) == {"succeeded": PROCESS_JOBS}
    assert {job["attempt"] for job in finals} == {1}
    claims = Counter(
        event["details"]["agent_id"]
        for job in finals
        for event in job["events"]
        if event["state"] == "claimed"
    )
    assert sum(claims.values()) == PROCESS_JOBS, "one claim per job"
    assert len(claims) > 1, f"the work was shared between agents: {claims}"
    for log_file in logs:
        assert "Traceback" not in log_file.read_text()

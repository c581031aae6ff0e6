"""Long-poll waiters live only as long as their requests: the hub's memory stays bounded.

A log read with ``wait=`` holds a waiter in the hub while it waits. It must let
go however the request ends - a 404 for a job that does not exist, a timeout,
a client that hangs up - or every such read leaves one behind for good
(issue 16: 20,000 reads of unknown ids grew a server by 26 MiB). 20,000
against a server process, with its RSS, are in test_server_process.py.
"""

from __future__ import annotations

import time
from functools import partial

import anyio
import pytest
from kit import QUEUE, eventually
from serverkit import flood_of_unknown_reads

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.hub import job_key

pytestmark = pytest.mark.anyio

READS = 500


async def test_reads_of_unknown_jobs_are_refused_at_once_and_leave_no_waiter(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    token = await server.create_token("submitter", name="flood")
    started = time.perf_counter()
    await flood_of_unknown_reads(server.url, token, READS)
    print(f"\n{READS} reads of unknown jobs in {time.perf_counter() - started:.1f} s")
    assert server.state.hub.waiter_count() == 0


async def test_a_read_that_times_out_leaves_no_waiter(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    jobs = [await submitter.submit_job(QUEUE, {"entry_point": "train.py"}) for _ in range(3)]
    async with anyio.create_task_group() as reading:
        for job in jobs * 20:  # several reads share one job's waiter
            reading.start_soon(submitter.read_logs, job["id"], 0, 0.3)
    assert server.state.hub.waiter_count() == 0


async def test_a_follower_that_hangs_up_lets_go_of_its_waiter(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    job = await submitter.submit_job(QUEUE, {"entry_point": "train.py"})
    key = job_key(job["id"])

    async def waiting() -> bool:
        return server.state.hub.waiting(key)

    async def gone() -> bool:
        return not server.state.hub.waiting(key)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(submitter.read_logs, job["id"], wait=60))
        await eventually(waiting, 10, "the read to wait")
        tasks.cancel_scope.cancel()  # the client hangs up
    # Well before the 60 s the read asked for: the server saw the hang-up.
    await eventually(gone, 5, "the waiter to go")
    assert server.state.hub.waiter_count() == 0

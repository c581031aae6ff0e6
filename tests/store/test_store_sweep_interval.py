"""``launchplane server --sweep-interval``: how soon a lost agent's lease is noticed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import pytest
from storekit import LAUNCHPLANE, QUEUE, ServerProcess, sqlite_url

from launchplane.core.client import LaunchplaneClient

pytestmark = pytest.mark.anyio

TTL = 0.3


@pytest.mark.parametrize(("interval", "requeued"), [("0.1", True), ("60", False)])
async def test_the_sweep_interval_decides_when_an_expired_lease_is_ended(
    tmp_path: Path, interval: str, requeued: bool
) -> None:
    """Without the flag a 0.3 s lease is swept every 0.1 s; the flag fixes the period."""
    with ServerProcess(
        sqlite_url(tmp_path), tmp_path / "server", "--sweep-interval", interval
    ) as server:
        async with LaunchplaneClient(server.url, server.admin_token) as admin:
            await admin.create_queue(QUEUE, {"resource": "local-process", "lease_ttl_seconds": TTL})
            job = await admin.submit_job(QUEUE, {})
            token = (await admin.create_token("agent", queues=[QUEUE]))["token"]
            async with LaunchplaneClient(server.url, token) as agent:
                assert await agent.claim(QUEUE, "lost-agent", wait=5) is not None
            await anyio.sleep(TTL + 1.5)  # the agent never heartbeats
            state = (await admin.get_job(job["id"]))["state"]
    assert state == ("queued" if requeued else "claimed")


def test_a_sweep_interval_below_the_minimum_is_refused() -> None:
    done = subprocess.run(
        [LAUNCHPLANE, "server", "--sweep-interval", "0"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "--sweep-interval" in done.stderr and "0.05" in done.stderr

"""Late lines: an ended lease's run output, stored at the log's end with its attempt, once.

An agent down longer than its lease's TTL finds, when it starts again, output
its run wrote that the server never got; the job may have run again elsewhere
meanwhile. ``append_late_logs`` stores those lines under the ended lease, and
every lease numbers its lines itself (``leases.log_position``), so neither the
late lines nor the live lease's own batches are taken for repeats of the
other's, on both backends.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import httpx
import pytest
from storekit import QUEUE, submit_many

from launchplane.core.client import LaunchplaneClient, Unauthorized
from launchplane.core.client import StaleLease as ClientStaleLease
from launchplane.server import tables as t
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.problems import Forbidden, NotFound, StaleLease
from launchplane.server.schemas import MAX_SEQ, AgentRegister, CompleteIn
from launchplane.server.store import Store

pytestmark = pytest.mark.anyio


async def configure(store: Store, **config: Any) -> None:
    await store.update_queue(QUEUE, {"resource": "local-process", **config}, [])


async def tagged(store: Store, job_id: str) -> list[tuple[int, str]]:
    return [(line.attempt, line.line) for line in (await store.read_logs(job_id, 0)).lines]


async def expire(store: Store, lease_id: str, ago: timedelta = timedelta(seconds=1)) -> None:
    """The lease expired ``ago`` (its agent stopped heartbeating); the sweeper has seen it."""
    async with store._write() as tx:
        await tx.conn.execute(
            t.leases.update()
            .where(t.leases.c.lease_id == lease_id)
            .values(expires_at=t.utcnow() - ago)
        )
    assert await store.sweep() == 1


async def test_late_lines_go_to_the_log_end_with_their_attempt_once(store: Store) -> None:
    await configure(store, max_attempts=3)
    (job_id,) = await submit_many(store, 1)
    first = await store.claim(QUEUE, "a1")
    assert first is not None
    await store.append_logs(first.lease_id, ["1: one"], first_seq=first.log_count + 1)
    with pytest.raises(StaleLease, match="is live"):
        await store.append_late_logs(first.lease_id, ["1: two"], first_seq=2)
    await expire(store, first.lease_id)  # a1 is down longer than the TTL: the job runs again
    second = await store.claim(QUEUE, "a2")
    assert second is not None and second.log_count == 1
    await store.append_logs(second.lease_id, ["2: one"], first_seq=2)

    # a1 is back: what its run wrote after "1: one", numbered on in its lease's numbering.
    assert await store.append_late_logs(first.lease_id, ["1: two", "1: three"], 2) == (4, 3)
    assert await store.append_late_logs(first.lease_id, ["1: two", "1: three"], 2) == (4, 3)
    assert await store.append_late_logs(first.lease_id, ["1: three", "1: four"], 3) == (5, 4)
    assert await store.append_late_logs(first.lease_id, [], 1) == (5, 4), "asks where it is"

    # The live lease's next batch is not a repeat, though the job's log has grown past it.
    assert await store.append_logs(second.lease_id, ["2: two"], first_seq=3) == 6
    assert await store.append_logs(second.lease_id, ["2: two"], first_seq=3) == 6
    (held,) = await store.register_agent(AgentRegister(agent_id="a2", queues=[QUEUE]))
    assert held.log_count == 3, "a lease handed back goes on in its own numbering"
    await store.complete(second.lease_id, CompleteIn(state="succeeded", exit_code=0))

    # The job has ended: the late lines of attempt 1 are still taken.
    assert await store.append_late_logs(first.lease_id, ["1: five"], 5) == (7, 5)
    assert await tagged(store, job_id) == [
        (1, "1: one"),
        (2, "2: one"),
        (1, "1: two"),
        (1, "1: three"),
        (1, "1: four"),
        (2, "2: two"),
        (1, "1: five"),
    ]
    page = await store.read_logs(job_id, 0)
    assert page.done and page.next == 7, "followers see the late lines, then the end"
    with pytest.raises(NotFound):
        await store.append_late_logs("l-unknown", ["x"], 1)


async def test_late_lines_of_a_long_ended_lease_are_refused(store: Store) -> None:
    await submit_many(store, 1)
    lease = await store.claim(QUEUE, "a1")
    assert lease is not None
    await expire(store, lease.lease_id, ago=timedelta(days=8))
    with pytest.raises(StaleLease, match="more than 7 days ago"):
        await store.append_late_logs(lease.lease_id, ["late"], 1)


async def test_late_lines_are_refused_under_another_agent_token(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    await server.ensure_queue(QUEUE, {"resource": "local-process", "lease_ttl_seconds": 0.2})
    job = await submitter.submit_job(QUEUE, {})
    mine = await server.create_token("agent", queues=[QUEUE])
    other = await server.create_token("agent", queues=[QUEUE])
    async with (
        LaunchplaneClient(server.url, mine) as agent,
        LaunchplaneClient(server.url, other) as stranger,
    ):
        lease = await agent.claim(QUEUE, "a1", wait=5)
        assert lease is not None
        with pytest.raises(ClientStaleLease):
            await agent.append_late_logs(lease.lease_id, ["too early"], 1)
        await anyio.sleep(0.5)  # expired (and swept)
        with pytest.raises(Unauthorized) as refused:
            await stranger.append_late_logs(lease.lease_id, ["not yours"], 1)
        assert refused.value.status == 403
        assert await agent.append_late_logs(lease.lease_id, ["mine"], 1) == 1
        assert await agent.append_late_logs(lease.lease_id, ["mine"], 1) == 1
        # Over the server's line limits: refused as any log batch is, nothing stored.
        async with httpx.AsyncClient() as raw:
            response = await raw.post(
                f"{server.url}/leases/{lease.lease_id}/late-logs",
                json={"lines": ["x" * (2 << 20)], "first_seq": 2},
                headers={"Authorization": f"Bearer {mine}"},
            )
        assert response.status_code in (413, 422)
    page = await submitter.read_logs(job["id"])
    assert [(line["attempt"], line["line"]) for line in page["lines"]] == [(1, "mine")]


async def test_the_store_refuses_another_holder_directly(store: Store) -> None:
    """The ownership check itself (a token id that does not own the lease's agent id)."""
    await submit_many(store, 1)
    lease = await store.claim(QUEUE, "a1")
    assert lease is not None
    await expire(store, lease.lease_id)
    with pytest.raises(Forbidden):
        await store.append_late_logs(lease.lease_id, ["x"], 1, holder=12345)


async def test_a_batch_numbered_far_past_a_gap_is_stored_once(store: Store) -> None:
    """A lease's numbering may jump (lines given up on) up to MAX_SEQ: the position holds it."""
    (job_id,) = await submit_many(store, 1)
    lease = await store.claim(QUEUE, "a1")
    assert lease is not None
    far = MAX_SEQ - 1
    assert await store.append_logs(lease.lease_id, ["far", "end"], first_seq=far) == 2
    assert await store.append_logs(lease.lease_id, ["far", "end"], first_seq=far) == 2
    await expire(store, lease.lease_id)
    assert await store.append_late_logs(lease.lease_id, [], 1) == (2, far + 1)
    assert await tagged(store, job_id) == [(1, "far"), (1, "end")]

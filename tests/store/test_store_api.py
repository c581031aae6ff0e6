"""The Store API, identical on SQLite and PostgreSQL: claims, leases, the sweeper, retries.

Concurrency tests open a second :class:`Store` on the same database: that is
what a second server process is to the database (its own pool, its own
write lock), without the cost of starting one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from storekit import QUEUE, submit_many

from launchplane.server.problems import StaleLease
from launchplane.server.schemas import CompleteIn, EventIn
from launchplane.server.store import Store

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def second_store(store: Store) -> AsyncIterator[Store]:
    other = Store(store.url)
    await other.open()
    try:
        yield other
    finally:
        await other.close()


async def configure(store: Store, **config: Any) -> None:
    await store.update_queue(QUEUE, {"resource": "local-process", **config}, [])


def failed(*, infrastructure: bool = False, exit_code: int | None = 1) -> CompleteIn:
    return CompleteIn(
        state="failed",
        exit_code=exit_code,
        stage="run",
        reason="boom",
        infrastructure_failure=infrastructure,
    )


async def test_claims_take_the_oldest_job_and_count_attempts(store: Store) -> None:
    ids = await submit_many(store, 3)
    leases = [await store.claim(QUEUE, "a1") for _ in ids]
    assert [lease.job_id for lease in leases if lease] == ids
    assert {lease.attempt for lease in leases if lease} == {1}
    assert await store.claim(QUEUE, "a1") is None

    job = await store.get_job(ids[0])
    assert (job.state, job.attempt, job.agent_id) == ("claimed", 1, "a1")
    assert [(e.state, e.attempt) for e in job.events] == [("queued", 0), ("claimed", 1)]


async def test_complete_is_final_answered_again_and_fences_everything_else(store: Store) -> None:
    (job_id,) = await submit_many(store, 1)
    lease = await store.claim(QUEUE, "a1")
    assert lease is not None
    await store.post_event(lease.lease_id, EventIn(state="running"))
    assert await store.append_logs(lease.lease_id, ["one", "two"]) == 2
    done = CompleteIn(state="succeeded", exit_code=0, record={"ok": True})
    first = await store.complete(lease.lease_id, done)
    again = await store.complete(lease.lease_id, done)
    assert (first.state, again.state, first.exit_code) == ("succeeded", "succeeded", 0)
    assert await store.get_record(job_id) == {"ok": True}
    with pytest.raises(StaleLease):
        await store.post_event(lease.lease_id, EventIn(state="running"))
    with pytest.raises(StaleLease):
        await store.append_logs(lease.lease_id, ["late"])
    with pytest.raises(StaleLease):
        await store.release(lease.lease_id, None)
    page = await store.read_logs(job_id, 0)
    assert ([line.line for line in page.lines], page.done) == (["one", "two"], True)


async def test_expired_leases_are_requeued_until_max_attempts_then_agent_lost(
    store: Store,
) -> None:
    await configure(store, lease_ttl_seconds=0.05, max_attempts=2)
    (job_id,) = await submit_many(store, 1)
    for attempt in (1, 2):
        lease = await store.claim(QUEUE, f"agent-{attempt}")
        assert lease is not None and lease.attempt == attempt
        await store.post_event(lease.lease_id, EventIn(state="running"))
        await anyio.sleep(0.1)
        assert await store.sweep() == 1
        beat = await store.heartbeat(f"agent-{attempt}", [lease.lease_id])
        assert beat.stale == [lease.lease_id]
        with pytest.raises(StaleLease):
            await store.complete(lease.lease_id, CompleteIn(state="succeeded"))

    job = await store.get_job(job_id)
    assert (job.state, job.reason, job.failure_stage, job.attempt) == (
        "failed",
        "agent lost",
        "running",
        2,
    )
    history = [(e.state, e.attempt, e.reason) for e in job.events]
    assert history == [
        ("queued", 0, None),
        ("claimed", 1, None),
        ("running", 1, None),
        ("queued", 1, "lease expired: agent lost (attempt 1 of 2)"),
        ("claimed", 2, None),
        ("running", 2, None),
        ("failed", 2, "agent lost"),
    ]


async def test_sweepers_of_several_servers_requeue_each_expired_lease_once(store: Store) -> None:
    await configure(store, lease_ttl_seconds=0.05)
    ids = await submit_many(store, 30)
    for _ in ids:
        assert await store.claim(QUEUE, "doomed") is not None
    await anyio.sleep(0.1)
    ended: list[int] = []
    async with second_store(store) as other:

        async def sweep(target: Store) -> None:
            for _ in range(3):
                ended.append(await target.sweep())

        async with anyio.create_task_group() as tasks:
            for target in (store, other, store, other):
                tasks.start_soon(sweep, target)
    assert sum(ended) == len(ids)
    for job_id in ids:
        job = await store.get_job(job_id)
        requeues = [e for e in job.events if e.state == "queued" and e.attempt == 1]
        assert (job.state, len(requeues)) == ("queued", 1), job.events


async def test_claimers_on_two_servers_never_share_a_job(store: Store) -> None:
    ids = await submit_many(store, 150)
    claimed: list[str] = []
    async with second_store(store) as other:

        async def claimer(target: Store, name: str) -> None:
            while (lease := await target.claim(QUEUE, name)) is not None:
                claimed.append(lease.job_id)

        async with anyio.create_task_group() as tasks:
            for n in range(8):
                tasks.start_soon(claimer, (store, other)[n % 2], f"agent-{n}")
    assert sorted(claimed) == sorted(ids), "every job claimed exactly once"


async def test_heartbeat_renews_only_the_callers_live_leases(store: Store) -> None:
    await configure(store, lease_ttl_seconds=30, max_attempts=3)
    await submit_many(store, 2)
    mine = await store.claim(QUEUE, "a1")
    theirs = await store.claim(QUEUE, "a2")
    assert mine is not None and theirs is not None
    await store.post_event(mine.lease_id, EventIn(state="running"))
    beat = await store.heartbeat("a1", [mine.lease_id, theirs.lease_id, "l-unknown"])
    assert (beat.renewed, beat.stale) == ([mine.lease_id], [theirs.lease_id, "l-unknown"])
    assert beat.lease_ttl_seconds == 30
    await store.cancel_job(mine.job_id)
    assert (await store.heartbeat("a1", [mine.lease_id])).cancel == [mine.lease_id]


async def test_infrastructure_failures_are_retried_after_the_backoff(store: Store) -> None:
    await configure(store, retry={"max_attempts": 3, "backoff_seconds": 0.3})
    (job_id,) = await submit_many(store, 1)
    lease = await store.claim(QUEUE, "a1")
    assert lease is not None
    job = await store.complete(lease.lease_id, failed(infrastructure=True, exit_code=None))
    assert (job.state, job.attempt, job.exit_code, job.reason) == ("queued", 1, None, None)
    assert await store.claim(QUEUE, "a2") is None, "not before the backoff ends"
    assert 0 < (await store.sweep_due_in(job.updated_at)) <= 0.3  # type: ignore[operator]

    await anyio.sleep(0.35)
    assert await store.sweep() == 0  # makes it claimable and wakes the queue
    second = await store.claim(QUEUE, "a2")
    assert second is not None and (second.job_id, second.attempt) == (job_id, 2)
    final = await store.complete(second.lease_id, CompleteIn(state="succeeded", exit_code=0))
    assert (final.state, final.attempt, final.exit_code, final.reason) == (
        "succeeded",
        2,
        0,
        None,
    )
    history = [(e.state, e.attempt, e.details) for e in final.events]
    assert history[2] == ("failed", 1, {"infrastructure_failure": True})
    assert history[3][:2] == ("queued", 1) and "not_before" in history[3][2]
    assert history[-1] == ("succeeded", 2, {"exit_code": 0})
    assert "infrastructure failure (attempt 1 of 3)" in (final.events[3].reason or "")


async def test_retry_policy_limits_and_user_failures(store: Store) -> None:
    await configure(store, retry={"max_attempts": 2})
    await submit_many(store, 2)
    user = await store.claim(QUEUE, "a1")
    infra = await store.claim(QUEUE, "a1")
    assert user is not None and infra is not None
    assert (await store.complete(user.lease_id, failed())).state == "failed", "user code: final"
    assert (await store.complete(infra.lease_id, failed(infrastructure=True))).state == "queued"
    again = await store.claim(QUEUE, "a1")
    assert again is not None and again.attempt == 2
    last = await store.complete(again.lease_id, failed(infrastructure=True))
    assert (last.state, last.attempt, last.exit_code) == ("failed", 2, 1), "max_attempts used up"

    await configure(store, retry={"max_attempts": 2, "include_user_failures": True})
    (job_id,) = await submit_many(store, 1)
    lease = await store.claim(QUEUE, "a1")
    assert lease is not None
    assert (await store.complete(lease.lease_id, failed())).state == "queued"
    lease = await store.claim(QUEUE, "a1")
    assert lease is not None
    await store.cancel_job(job_id)
    cancelled = await store.complete(lease.lease_id, failed(infrastructure=True))
    assert cancelled.state == "failed", "a job with a pending cancel is never retried"


async def test_lost_agents_wait_for_the_retry_backoff_too(store: Store) -> None:
    await configure(store, lease_ttl_seconds=0.05, retry={"backoff_seconds": 0.5})
    await submit_many(store, 1)
    assert await store.claim(QUEUE, "a1") is not None
    await anyio.sleep(0.1)
    assert await store.sweep() == 1
    assert await store.claim(QUEUE, "a2") is None
    await anyio.sleep(0.5)
    await store.sweep()
    lease = await store.claim(QUEUE, "a2")
    assert lease is not None and lease.attempt == 2


async def test_release_requeues_at_once_and_cancel_of_a_queued_job_is_final(
    store: Store,
) -> None:
    first, second = await submit_many(store, 2)
    lease = await store.claim(QUEUE, "a1")
    assert lease is not None and lease.job_id == first
    await store.release(lease.lease_id, "shutting down")
    await store.release(lease.lease_id, "shutting down")  # a retry is answered
    again = await store.claim(QUEUE, "a2")
    assert again is not None and (again.job_id, again.attempt) == (first, 2)

    cancelled = await store.cancel_job(second)
    assert (cancelled.state, cancelled.reason) == ("cancelled", "cancelled before it started")
    assert await store.claim(QUEUE, "a2") is None
    counts = Counter(e.state for e in (await store.get_job(first)).events)
    assert counts == {"queued": 2, "claimed": 2}


async def test_a_starting_server_renews_leases_its_outage_let_expire(store: Store) -> None:
    await configure(store, lease_ttl_seconds=0.2)
    await submit_many(store, 2)
    held = await store.claim(QUEUE, "a1")
    assert held is not None
    await anyio.sleep(0.3)  # expired while "the server was down": nobody swept it
    assert await store.renew_all_leases() == 1
    assert await store.sweep() == 0
    assert (await store.heartbeat("a1", [held.lease_id])).renewed == [held.lease_id]

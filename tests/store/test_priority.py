"""Priorities (W&B's four): claims take the highest first, the oldest within one, on each backend.

The store suite's fixtures run every test here on SQLite and PostgreSQL. The
priority comes from the resolved job (queue default < job < overrides) and
the body's ``priority``, applied as a last override layer; the claim order
is served by one index, whose use is checked in the query plan; databases
from before priorities are migrated with the priorities their jobs named.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from kit import claim_now
from sqlalchemy import Connection, insert, text
from storekit import QUEUE, ServerProcess

from launchplane.core.client import LaunchplaneClient, ValidationFailed
from launchplane.server import db
from launchplane.server import tables as t
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.store import Store
from launchplane.server.store.jobs import PRIORITY_RANK
from launchplane.server.store.leases import claim_candidate

pytestmark = pytest.mark.anyio

# Submitted in this order; claims must come out critical, high, medium (None too), low,
# oldest first within each.
MIXED = ["low", "medium", "critical", None, "high", "low", "critical", "high", "medium"]


def claim_order(priorities: list[str | None]) -> list[int]:
    """The indexes of ``priorities`` in the order claims must take them."""
    rank = {name: PRIORITY_RANK[name or "medium"] for name in priorities}
    return sorted(range(len(priorities)), key=lambda i: (rank[priorities[i]], i))


async def submit(store: Store, priority: str | None, queue: str = QUEUE) -> str:
    version = (await store.get_queue(queue)).version
    job, _ = await store.submit_job(
        queue=queue,
        queue_version=version,
        spec={},
        overrides=[],
        template_variables={},
        resolved={"priority": priority},
    )
    return job.id


async def test_claims_take_the_highest_priority_first_and_the_oldest_within_one(
    store: Store,
) -> None:
    ids = [await submit(store, priority) for priority in MIXED]
    claimed = []
    while (lease := await store.claim(QUEUE, "a1")) is not None:
        claimed.append(lease.job_id)
    assert claimed == [ids[i] for i in claim_order(MIXED)]
    shown = [(await store.get_job(job_id)).priority for job_id in ids]
    assert shown == [name or "medium" for name in MIXED]
    assert [job.priority for job in await store.list_jobs(queue=QUEUE)] == shown[::-1]


async def test_a_released_job_keeps_its_place_in_its_priority(store: Store) -> None:
    first, second = await submit(store, "high"), await submit(store, "high")
    await submit(store, "critical")
    critical = await store.claim(QUEUE, "a1")
    lease = await store.claim(QUEUE, "a1")
    assert critical is not None and lease is not None and lease.job_id == first
    await submit(store, "high")
    await store.release(lease.lease_id, "agent stopping")
    again = await store.claim(QUEUE, "a2")
    assert again is not None and (again.job_id, again.attempt) == (first, 2)
    after = await store.claim(QUEUE, "a2")
    assert after is not None and after.job_id == second


async def test_the_claim_query_is_served_by_its_index_without_a_sort(store: Store) -> None:
    """With enough rows that a plan matters: one index scan, no sort step, on each backend."""
    now = datetime.now(UTC)
    rows = [
        {
            "id": f"j-plan-{i:05d}",
            "queue": QUEUE,
            "state": "queued" if i % 3 else "succeeded",
            "attempt": 0,
            "spec": {},
            "overrides": [],
            "template_variables": {},
            "queue_version": 1,
            "resolved": {},
            "priority": i % 4,
            "cancel_requested": False,
            "log_count": 0,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(3000)
    ]
    async with store._write() as tx:
        await tx.conn.execute(insert(t.jobs), rows)
        await tx.conn.execute(text("ANALYZE"))
        compiled = claim_candidate(QUEUE, now).compile(
            tx.conn.sync_connection, compile_kwargs={"literal_binds": True}
        )
        if tx.conn.dialect.name == "sqlite":
            explained = await tx.conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
            plan = [row[-1] for row in explained]
            assert any("USING INDEX ix_jobs_claim" in step for step in plan), plan
            assert not any("TEMP B-TREE" in step for step in plan), plan
        else:
            plan = [row[0] for row in await tx.conn.execute(text(f"EXPLAIN {compiled}"))]
            assert any("Index Scan using ix_jobs_claim" in step for step in plan), plan
            assert not any("Sort" in step for step in plan), plan
    lease = await store.claim(QUEUE, "a1")
    assert lease is not None and lease.job_id == "j-plan-00004"  # the first critical queued


# -- over HTTP: where a job's priority comes from ------------------------------------------


async def test_priority_from_queue_default_job_overrides_and_the_body(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    await server.ensure_queue("prio", {"resource": "local-process", "priority": "low"})
    cases: list[tuple[dict[str, Any], list[dict[str, Any]], Any, str]] = [
        ({}, [], None, "low"),  # the queue's default
        ({"priority": "high"}, [], None, "high"),
        ({"priority": 1}, [{"priority": "critical"}], None, "critical"),
        ({"priority": "high"}, [{"priority": "critical"}], "medium", "medium"),
        ({}, [], 0, "critical"),  # W&B's number
        ({}, [], "HIGH", "high"),
    ]
    for job, overrides, priority, expected in cases:
        shown = await submitter.submit_job("prio", job, overrides, priority=priority)
        assert (shown["priority"], shown["resolved"]["priority"]) == (expected, expected)
        if priority is not None:  # the body's priority is stored as the last override layer
            assert shown["overrides"] == [*overrides, {"priority": expected}]
        again = await submitter.get_job(shown["id"])
        assert again["priority"] == expected

    await server.ensure_queue("plain", {"resource": "local-process"})
    shown = await submitter.submit_job("plain", {})
    assert (shown["priority"], shown["resolved"]["priority"], shown["overrides"]) == (
        "medium",
        None,
        [],
    )


async def test_a_locked_priority_and_an_unknown_one_are_refused_naming_priority(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    await server.ensure_queue(
        "locked", {"resource": "local-process", "priority": "low", "locked": ["priority"]}
    )
    with pytest.raises(ValidationFailed) as refused:
        await submitter.submit_job("locked", {}, priority="critical")
    assert [e["path"] for e in refused.value.errors] == ["priority"]
    assert "locked by the queue config" in refused.value.errors[0]["message"]
    assert "the request's priority" in refused.value.errors[0]["message"]
    with pytest.raises(ValidationFailed, match="priority"):
        await submitter.submit_job("locked", {"priority": "high"})
    assert (await submitter.submit_job("locked", {}))["priority"] == "low"

    for wrong in ("urgent", 4, -1, True, 1.5):
        with pytest.raises(ValidationFailed) as refused:
            await submitter.submit_job(QUEUE, {}, priority=wrong)
        assert any("priority" in e["path"] for e in refused.value.errors), refused.value.errors
    assert await submitter.list_jobs(queue=QUEUE) == []  # nothing refused was queued


async def test_claims_over_http_follow_the_body_priority(
    submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    ids = [(await submitter.submit_job(QUEUE, {}, priority=p))["id"] for p in MIXED]
    claimed = [(await claim_now(agent)).job_id for _ in ids]
    assert claimed == [ids[i] for i in claim_order(MIXED)]


# -- a real server on loopback ------------------------------------------------------------


async def test_a_server_process_orders_claims_by_priority(server_process: ServerProcess) -> None:
    """``launchplane server`` as deployed, the public client's ``submit_job(priority=)``."""
    async with LaunchplaneClient(server_process.url, server_process.admin_token) as admin:
        await admin.create_queue("gpu", {"resource": "local-process", "priority": "medium"})
        submit_token = (await admin.create_token("submitter"))["token"]
        agent_token = (await admin.create_token("agent", ["gpu"]))["token"]
    priorities: list[Any] = ["low", 3, None, "critical", 1, "medium", "Critical"]
    names = ["low", "low", None, "critical", "high", "medium", "critical"]
    async with LaunchplaneClient(server_process.url, submit_token, retries=0) as submitter:
        jobs = [await submitter.submit_job("gpu", {}, priority=p) for p in priorities]
        assert [job["priority"] for job in jobs] == [name or "medium" for name in names]
    async with LaunchplaneClient(server_process.url, agent_token, retries=0) as agent:
        claimed = [(await claim_now(agent, "gpu")).job_id for _ in jobs]
        assert await agent.claim("gpu", "agent-1", wait=0) is None
    assert claimed == [jobs[i]["id"] for i in claim_order(names)]


# -- databases from before priorities ---------------------------------------------------


async def test_an_old_database_is_migrated_with_the_priorities_its_jobs_named(
    db_url: str,
) -> None:
    """At revision 0002 a job could already name a priority in its resolved job: the
    migration gives it that rank (top-level ``priority`` only), every other job medium."""

    def to_0002(conn: Connection) -> None:
        command.upgrade(db._alembic_config(conn), "0002")

    engine = db.create_engine(db_url)
    now = datetime.now(UTC)
    resolved = [
        {"priority": "low"},
        {"hyperparameters": {"priority": "critical"}},  # not the job's priority
        {"priority": None},
        {"priority": "high"},
        {},
        {"priority": "critical", "name": "x"},
    ]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(to_0002)
            config = {"config": {}, "version": 1, "created_at": now}
            queue = {"name": QUEUE, "warnings": [], "updated_at": now, **config}
            await conn.execute(insert(t.queues).values(**queue))
            await conn.execute(insert(t.queue_versions).values(name=QUEUE, **config))
            for index, document in enumerate(resolved):
                await conn.execute(
                    insert(t.jobs).values(  # no priority: the column does not exist yet
                        id=f"j-old-{index}",
                        queue=QUEUE,
                        state="queued",
                        spec={},
                        overrides=[],
                        template_variables={},
                        queue_version=1,
                        resolved=document,
                        created_at=now.replace(microsecond=index),
                        updated_at=now,
                    )
                )
    finally:
        await engine.dispose()

    state = await db.upgrade(db_url)
    assert state.current == "0002"
    store = Store(db_url)
    await store.open()
    try:
        shown = [(await store.get_job(f"j-old-{i}")).priority for i in range(len(resolved))]
        assert shown == ["low", "medium", "medium", "high", "medium", "critical"]
        claimed = []
        while (lease := await store.claim(QUEUE, "a1")) is not None:
            claimed.append(lease.job_id)
        assert claimed == [f"j-old-{i}" for i in (5, 3, 1, 2, 4, 0)]
        # Jobs submitted after the upgrade take their place among the migrated ones.
        assert (await store.get_job(await submit(store, "high"))).priority == "high"
    finally:
        await store.close()


def test_the_default_rank_is_mediums() -> None:
    """``jobs.priority``'s server default (rows inserted without one) must be medium's rank."""
    default = t.jobs.c.priority.server_default
    assert default is not None and str(default.arg) == str(PRIORITY_RANK["medium"])

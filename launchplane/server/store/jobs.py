"""Jobs: submit, read, cancel; their events, logs and run records.

The module-level helpers (:func:`locked_job`, :func:`add_event`,
:func:`requeue`, :func:`end_job`, :func:`job_model`) are how the lease and
sweeper families write a job too: what a decision of
:mod:`launchplane.server.lifecycle` means in rows is said once, here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import Row, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from launchplane.core.spec import DEFAULT_PRIORITY, PRIORITIES
from launchplane.core.states import FINAL_STATES, QUEUED
from launchplane.server import lifecycle
from launchplane.server import tables as t
from launchplane.server.hub import job_key, queue_key
from launchplane.server.problems import NotFound
from launchplane.server.schemas import Event, Job, LogLine, LogPage
from launchplane.server.store.base import StoreBase, Tx, new_id

LOG_INSERT_ROWS = 250
"""Lines per INSERT when a log batch is stored; the event loop serves other requests between
two. A batch can hold ~350,000 short lines (a 1 MiB body): as one statement it held the loop
for seconds (SQLite runs on the loop's thread, and SQLAlchemy prepares every row's
parameters there on both backends), so ``/health`` and every other call waited. A chunk of
250 takes a few ms (``bench/health_under_load.py``)."""

NUL = "\x00"
PRIORITY_RANK = {name: rank for rank, name in enumerate(PRIORITIES)}
"""``jobs.priority``: claims take the lowest rank first (0 critical .. 3 low, W&B's numbers)."""


class JobStore(StoreBase):
    async def find_job_by_key(self, scope: str, key: str) -> Job | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(t.jobs).where(
                        t.jobs.c.idempotency_scope == scope, t.jobs.c.idempotency_key == key
                    )
                )
            ).first()
            return None if row is None else await job_model(conn, row)

    async def submit_job(
        self,
        *,
        queue: str,
        queue_version: int,
        spec: dict[str, Any],
        overrides: list[dict[str, Any]],
        template_variables: dict[str, Any],
        resolved: dict[str, Any],
        idempotency_scope: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Job, bool]:
        """Insert a queued job; with a key already used, return that job and ``False``.

        ``resolved`` is the job resolved against ``queue_version`` of the
        queue: what every attempt of it runs (agents receive it in their lease);
        its ``priority`` (None: medium) places the job in the claim order.
        The unique constraint on (scope, key) decides between concurrent
        submits with one key: the loser's insert fails and it reads back the
        winner's job.
        """
        now = t.utcnow()
        job = Job(
            id=new_id("j"),
            queue=queue,
            state=QUEUED,
            attempt=0,
            created_at=now,
            updated_at=now,
            spec=spec,
            overrides=overrides,
            template_variables=template_variables,
            queue_version=queue_version,
            resolved=resolved,
            priority=resolved.get("priority") or DEFAULT_PRIORITY,
            agent_id=None,
            exit_code=None,
            failure_stage=None,
            reason=None,
            cancel_requested=False,
            events=[Event(state=QUEUED, attempt=0, at=now)],
        )
        try:
            async with self._write() as tx:
                await tx.conn.execute(
                    insert(t.jobs).values(
                        **job.model_dump(exclude={"events", "priority"}),
                        priority=PRIORITY_RANK[job.priority],
                        log_count=0,
                        idempotency_scope=idempotency_scope if idempotency_key else None,
                        idempotency_key=idempotency_key,
                    )
                )
                await add_event(tx.conn, job.id, 0, QUEUED, at=now)
                tx.notify(queue_key(queue))
        except IntegrityError:
            if idempotency_key is None or idempotency_scope is None:
                raise
            existing = await self.find_job_by_key(idempotency_scope, idempotency_key)
            if existing is None:
                raise
            return existing, False
        return job, True

    async def get_job(self, job_id: str, *, events: bool = True) -> Job:
        async with self._read() as conn:
            row = (await conn.execute(select(t.jobs).where(t.jobs.c.id == job_id))).first()
            if row is None:
                raise NotFound(f"job '{job_id}' not found")
            return await job_model(conn, row, events=events)

    async def list_jobs(
        self, *, queue: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[Job]:
        query = select(t.jobs).order_by(t.jobs.c.created_at.desc(), t.jobs.c.id).limit(limit)
        if queue:
            query = query.where(t.jobs.c.queue == queue)
        if state:
            query = query.where(t.jobs.c.state == state)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [_job(row, []) for row in rows]

    async def cancel_job(self, job_id: str) -> Job:
        """Cancel a queued job at once; flag an active one for its agent's next heartbeat."""
        async with self._write() as tx:
            row = await locked_job(tx.conn, job_id)
            now = t.utcnow()
            decision = lifecycle.on_cancel_request(row)
            if isinstance(decision, lifecycle.End):
                await tx.conn.execute(
                    update(t.jobs)
                    .where(t.jobs.c.id == job_id)
                    .values(
                        state=decision.state,
                        reason=decision.reason,
                        not_before=None,
                        updated_at=now,
                    )
                )
                await add_event(
                    tx.conn,
                    job_id,
                    row.attempt,
                    decision.state,
                    reason=decision.event_reason or decision.reason,
                    at=now,
                )
                tx.notify(job_key(job_id))
            elif isinstance(decision, lifecycle.FlagCancel):
                await tx.conn.execute(
                    update(t.jobs)
                    .where(t.jobs.c.id == job_id)
                    .values(cancel_requested=True, updated_at=now)
                )
                await add_event(
                    tx.conn, job_id, row.attempt, row.state, reason=decision.reason, at=now
                )
                tx.notify(job_key(job_id), local=True)
        return await self.get_job(job_id)

    async def get_record(self, job_id: str) -> dict[str, Any]:
        async with self._read() as conn:
            row = (
                await conn.execute(select(t.records.c.record).where(t.records.c.job_id == job_id))
            ).first()
            if row is None:
                exists = (
                    await conn.execute(select(t.jobs.c.id).where(t.jobs.c.id == job_id))
                ).first()
                what = "has no run record yet" if exists else "not found"
                raise NotFound(f"job '{job_id}' {what}")
        return row.record

    async def read_logs(self, job_id: str, after: int, limit: int = 1000) -> LogPage:
        async with self._read() as conn:
            # The job is read before its lines: once it is final no line can follow.
            job = (
                await conn.execute(
                    select(t.jobs.c.state, t.jobs.c.log_count).where(t.jobs.c.id == job_id)
                )
            ).first()
            if job is None:
                raise NotFound(f"job '{job_id}' not found")
            rows = (
                await conn.execute(
                    select(t.log_lines.c.seq, t.log_lines.c.line)
                    .where(t.log_lines.c.job_id == job_id, t.log_lines.c.seq > after)
                    .order_by(t.log_lines.c.seq)
                    .limit(limit)
                )
            ).all()
        lines = [LogLine(seq=row.seq, line=row.line) for row in rows]
        last = lines[-1].seq if lines else after
        done = job.state in FINAL_STATES and last >= job.log_count
        return LogPage(lines=lines, next=last, done=done)


# -- writing a job, for every family -------------------------------------------------


async def locked_job(conn: AsyncConnection, job_id: str) -> Row[Any]:
    row = (
        await conn.execute(select(t.jobs).where(t.jobs.c.id == job_id).with_for_update())
    ).first()
    if row is None:
        raise NotFound(f"job '{job_id}' not found")
    return row


async def insert_log_lines(
    conn: AsyncConnection, job_id: str, attempt: int, first: int, lines: Sequence[str]
) -> None:
    """Store ``lines`` with seqs from ``first`` on, in chunks of :data:`LOG_INSERT_ROWS`.

    All in the caller's transaction, so a batch is stored whole or not at all;
    other requests run between chunks (a write on SQLite waits for the
    store's write lock, which this transaction holds, as it would anyway).
    """
    for start in range(0, len(lines), LOG_INSERT_ROWS):
        if start:
            await anyio.sleep(0)
        chunk = lines[start : start + LOG_INSERT_ROWS]
        await conn.execute(
            insert(t.log_lines),
            [
                # NUL cannot be stored in a PostgreSQL text column.
                {
                    "job_id": job_id,
                    "seq": seq,
                    "attempt": attempt,
                    "line": line.replace(NUL, "\ufffd"),
                }
                for seq, line in enumerate(chunk, start=first + start)
            ],
        )


async def add_event(
    conn: AsyncConnection,
    job_id: str,
    attempt: int,
    state: str,
    *,
    at: datetime,
    stage: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        insert(t.events).values(
            job_id=job_id,
            attempt=attempt,
            state=state,
            stage=stage,
            reason=reason,
            details=details,
            at=at,
        )
    )


async def requeue(tx: Tx, job: Row[Any], decision: lifecycle.Requeue, now: datetime) -> None:
    """Put an active job back on its queue, as ``decision`` says.

    What the last attempt left (exit code, stage, reason) is cleared: a job's
    fields describe its latest attempt, its events every attempt. With a
    backoff the job is not claimable before ``now + backoff``; the sweeper
    wakes the queue's claimers then.
    """
    backoff = decision.backoff
    not_before = now + timedelta(seconds=backoff) if backoff > 0 else None
    await tx.conn.execute(
        update(t.jobs)
        .where(t.jobs.c.id == job.id)
        .values(
            state=QUEUED,
            agent_id=None,
            exit_code=None,
            failure_stage=None,
            reason=None,
            not_before=not_before,
            updated_at=now,
        )
    )
    details = None if not_before is None else {"not_before": not_before.isoformat()}
    await add_event(
        tx.conn, job.id, job.attempt, QUEUED, reason=decision.reason, details=details, at=now
    )
    tx.notify(job_key(job.id))
    if not_before is None:
        tx.notify(queue_key(job.queue))


async def end_job(tx: Tx, job: Row[Any], decision: lifecycle.End, now: datetime) -> None:
    """End an active job without its agent; the stage it was in is its failure stage."""
    await tx.conn.execute(
        update(t.jobs)
        .where(t.jobs.c.id == job.id)
        .values(
            state=decision.state, reason=decision.reason, failure_stage=job.state, updated_at=now
        )
    )
    await add_event(
        tx.conn,
        job.id,
        job.attempt,
        decision.state,
        stage=job.state,
        reason=decision.event_reason or decision.reason,
        at=now,
    )
    tx.notify(job_key(job.id))


async def job_model(conn: AsyncConnection, row: Row[Any], *, events: bool = True) -> Job:
    """The API's Job of a ``jobs`` row, with its events unless ``events`` is false."""
    found: list[Event] = []
    if events:
        result = await conn.execute(
            select(t.events).where(t.events.c.job_id == row.id).order_by(t.events.c.id)
        )
        found = [
            Event(
                state=e.state,
                stage=e.stage,
                reason=e.reason,
                attempt=e.attempt,
                at=e.at,
                details=e.details,
            )
            for e in result
        ]
    return _job(row, found)


def _job(row: Row[Any], found: list[Event]) -> Job:
    return Job(
        id=row.id,
        queue=row.queue,
        state=row.state,
        attempt=row.attempt,
        created_at=row.created_at,
        updated_at=row.updated_at,
        spec=row.spec,
        overrides=row.overrides,
        template_variables=row.template_variables,
        queue_version=row.queue_version,
        resolved=row.resolved,
        priority=PRIORITIES[row.priority],
        agent_id=row.agent_id,
        exit_code=row.exit_code,
        failure_stage=row.failure_stage,
        reason=row.reason,
        cancel_requested=row.cancel_requested,
        events=found,
    )

"""Jobs: submit, read, cancel; their events, logs and run records.

The module-level helpers (:func:`locked_job`, :func:`add_event`,
:func:`requeue`, :func:`end_job`, :func:`job_model`) are how the lease and
sweeper families write a job too: what a decision of
:mod:`launchplane.server.lifecycle` means in rows is said once, here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import LargeBinary, Row, and_, cast, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from launchplane.core.spec import DEFAULT_PRIORITY, PRIORITIES
from launchplane.core.states import FINAL_STATES, QUEUED
from launchplane.server import lifecycle
from launchplane.server import tables as t
from launchplane.server.hub import job_key, queue_key
from launchplane.server.limits import JOB_PAGE_BYTES, LOG_PAGE_BYTES
from launchplane.server.problems import Invalid, NotFound
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
        """The first page of :meth:`page_of_jobs`, without its cursor."""
        jobs, _ = await self.page_of_jobs(queue=queue, state=state, limit=limit)
        return jobs

    async def page_of_jobs(
        self,
        *,
        queue: str | None = None,
        state: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        max_bytes: int = JOB_PAGE_BYTES,
    ) -> tuple[list[Job], str | None]:
        """Newest first: up to ``limit`` jobs and about ``max_bytes`` of their documents.

        Always at least one job. The second value is the cursor of the next
        page (``None``: this was the last): keyset pagination on (created_at,
        id), so a page costs the same however deep it is and a job submitted
        meanwhile does not shift later pages. The byte cap is applied in the
        database (a running sum over the page's rows), so a page of huge jobs
        is never loaded whole to be cut here.
        """
        jobs = t.jobs
        query = select(
            jobs, func.count().over().label("available"), _page_bytes(self.backend)
        ).order_by(jobs.c.created_at.desc(), jobs.c.id)
        if queue:
            query = query.where(jobs.c.queue == queue)
        if state:
            query = query.where(jobs.c.state == state)
        if cursor is not None:
            created_at, job_id = decode_cursor(cursor)
            query = query.where(
                or_(
                    jobs.c.created_at < created_at,
                    and_(jobs.c.created_at == created_at, jobs.c.id > job_id),
                )
            )
        page = query.limit(limit + 1).subquery()
        before = func.sum(page.c.size).over(order_by=(page.c.created_at.desc(), page.c.id))
        running = select(page, (before - page.c.size).label("before")).subquery()
        fitting = (
            select(running)
            .where(running.c.before < max_bytes)
            .order_by(running.c.created_at.desc(), running.c.id)
            .limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(fitting)).all()
        more = bool(rows) and rows[0].available > len(rows)
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
        return [_job(row, []) for row in rows], next_cursor

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

    async def read_logs(
        self, job_id: str, after: int, limit: int = 1000, max_bytes: int = LOG_PAGE_BYTES
    ) -> LogPage:
        """Lines after ``after``: up to ``limit`` of them and about ``max_bytes`` of text.

        Always at least one line when there is one, so a line of any size is
        readable; the cap is a running sum in the database over the page's
        rows, so a page of 1 MB lines is never loaded whole to be cut here.
        """
        lines_table = t.log_lines
        size = _byte_length(self.backend, lines_table.c.line)
        page = (
            select(lines_table.c.seq, lines_table.c.attempt, lines_table.c.line, size.label("size"))
            .where(lines_table.c.job_id == job_id, lines_table.c.seq > after)
            .order_by(lines_table.c.seq)
            .limit(limit)
            .subquery()
        )
        before = func.sum(page.c.size).over(order_by=page.c.seq) - page.c.size
        running = select(page.c.seq, page.c.attempt, page.c.line, before.label("before")).subquery()
        fitting = (
            select(running.c.seq, running.c.attempt, running.c.line)
            .where(running.c.before < max_bytes)
            .order_by(running.c.seq)
        )
        async with self._read() as conn:
            # The job is read before its lines: once it is final no line can follow.
            job = (
                await conn.execute(
                    select(t.jobs.c.state, t.jobs.c.log_count).where(t.jobs.c.id == job_id)
                )
            ).first()
            if job is None:
                raise NotFound(f"job '{job_id}' not found")
            rows = (await conn.execute(fitting)).all()
        lines = [LogLine(seq=row.seq, attempt=row.attempt, line=row.line) for row in rows]
        last = lines[-1].seq if lines else after
        done = job.state in FINAL_STATES and last >= job.log_count
        return LogPage(lines=lines, next=last, done=done)


def _byte_length(backend: str, column: Any) -> Any:
    """The UTF-8 size of a text column, in SQL (SQLite's ``length`` of text counts characters)."""
    if backend == "postgresql":
        return func.octet_length(column)
    return func.length(cast(column, LargeBinary))


def _page_bytes(backend: str) -> Any:
    """About what a job weighs in a list answer: its stored documents."""
    jobs = t.jobs
    documents = (jobs.c.spec, jobs.c.resolved, jobs.c.overrides, jobs.c.template_variables)
    total = _byte_length(backend, documents[0])
    for column in documents[1:]:
        total = total + _byte_length(backend, column)
    return total.label("size")


def encode_cursor(created_at: datetime, job_id: str) -> str:
    """The opaque ``cursor`` of ``GET /jobs``: where the next page starts."""
    raw = json.dumps([created_at.isoformat(), job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position a cursor names; Invalid (naming ``cursor``) for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, job_id = json.loads(raw)
        return datetime.fromisoformat(created_at), str(job_id)
    except (ValueError, TypeError):
        raise Invalid(
            "invalid cursor: pass the 'next' of a previous page unchanged",
            [{"path": "cursor", "message": "not a cursor of this server"}],
        ) from None


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

"""All database access of the queue server, behind one class.

The HTTP layer calls :class:`Store` methods and never writes SQL. Queries are
SQLAlchemy Core, and one code path serves both backends (``db.py``): SQLite,
the embedded default, and PostgreSQL, which several server processes share.
What differs per backend is isolated:

* **Write serialisation.** SQLite allows one writer; a process-wide
  ``asyncio.Lock`` around write transactions keeps this process's writers
  from ever meeting ``SQLITE_BUSY``. PostgreSQL needs no lock: rows are.
* **Row locks.** Every write that decides from a row it read first takes
  that row ``FOR UPDATE`` (a lease before acting on it, a job before
  cancelling it). SQLite ignores the clause (its lock already covers the
  transaction); on PostgreSQL it is what makes fencing hold between server
  processes: a lease that another process expired is seen expired.
* **Claims** (:meth:`Store._next_job`): the oldest claimable job, taken
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent claimers pass each
  other instead of queueing on one row; a conditional ``UPDATE ...
  WHERE state='queued'`` on both.
* **Wake-ups.** Every write notifies the :class:`~launchplane.server.hub.Hub`
  after commit, which wakes long-polls in this process. On PostgreSQL the keys
  that matter elsewhere (a queue has work, a job ended) are also sent with
  ``pg_notify`` inside the transaction, so other server processes hear them
  exactly at commit (``listener.py``). Log appends and intermediate states
  are not broadcast: each NOTIFY takes a cluster-wide lock at commit, and
  followers on other processes see those within the poll interval.
* **Upserts**: ``INSERT ... ON CONFLICT`` of each dialect (:func:`_upsert`).

The sweeper (:meth:`Store.sweep`) may run in every server process at once:
it takes expired leases ``FOR UPDATE SKIP LOCKED`` and ends each with a
conditional update, so a lease is expired (and its job re-queued) once.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
from pydantic import ValidationError
from sqlalchemy import Row, Select, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from launchplane.core.spec import QueueConfig, RetryPolicy
from launchplane.server import db
from launchplane.server import tables as t
from launchplane.server.hub import Hub, job_key, queue_key
from launchplane.server.listener import CHANNEL, PgListener
from launchplane.server.problems import Conflict, NotFound, StaleLease
from launchplane.server.schemas import (
    ACTIVE_STATES,
    FINAL_STATES,
    Agent,
    AgentRegister,
    CompleteIn,
    Event,
    EventIn,
    HeartbeatResponse,
    Job,
    Lease,
    LogLine,
    LogPage,
    Queue,
)

DEFAULT_LEASE_TTL = float(QueueConfig.model_fields["lease_ttl_seconds"].default)
DEFAULT_MAX_ATTEMPTS = int(QueueConfig.model_fields["max_attempts"].default)
AGENT_LOST = "agent lost"
_NOTIFY = text("SELECT pg_notify(:channel, key) FROM unnest(CAST(:keys AS TEXT[])) AS key")


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


@dataclass(frozen=True)
class TokenInfo:
    id: int
    role: str
    name: str | None
    queues: tuple[str, ...]


@dataclass(frozen=True)
class LeaseInfo:
    """What the auth layer needs to know about a lease before letting a call through."""

    lease_id: str
    job_id: str
    queue: str
    agent_id: str


@dataclass
class _Tx:
    conn: AsyncConnection
    keys: set[str] = field(default_factory=set)
    broadcast: set[str] = field(default_factory=set)

    def notify(self, *keys: str, local: bool = False) -> None:
        """Wake the waiters of ``keys`` at commit; in every server process unless ``local``."""
        self.keys.update(keys)
        if not local:
            self.broadcast.update(keys)


class Store:
    """The database behind the API; every method is one short transaction."""

    def __init__(self, url: str, hub: Hub | None = None) -> None:
        self.url = url
        self.hub = hub or Hub()
        self._engine: AsyncEngine | None = None
        self._write_lock: asyncio.Lock | contextlib.nullcontext[None] = contextlib.nullcontext()
        self._configs: dict[tuple[str, int], dict[str, Any]] = {}
        self.listener: PgListener | None = None

    # -- lifecycle -----------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("Store.open() has not been called")
        return self._engine

    @property
    def is_open(self) -> bool:
        return self._engine is not None

    @property
    def backend(self) -> db.Backend:
        return db.backend_of(self.url)

    async def open(self) -> None:
        """Connect and bring the schema to this version (``db.ensure_schema`` says when not)."""
        engine = db.create_engine(self.url)
        try:
            await db.ensure_schema(engine)
        except BaseException:
            await engine.dispose()
            raise
        if self.backend == "sqlite":
            self._write_lock = asyncio.Lock()
        self._engine = engine

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def listen(self, stop: anyio.Event) -> None:
        """Until ``stop``: feed other server processes' notifications into the hub.

        PostgreSQL only (``listener.py``); on SQLite every write happens in
        this process and has already notified the hub, so this returns at once.
        """
        if self.backend != "postgresql":
            return
        _, params = self.engine.dialect.create_connect_args(self.engine.url)
        self.listener = PgListener(dict(params), self.hub)
        await self.listener.run(stop)

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[_Tx]:
        """One write transaction; waiters are woken only once it has committed."""
        async with self._write_lock, self.engine.connect() as conn:
            await conn.execution_options(**db.WRITE)
            async with conn.begin():
                tx = _Tx(conn)
                yield tx
                if tx.broadcast and conn.dialect.name == "postgresql":
                    # Delivered by PostgreSQL at commit, and only if it commits.
                    await conn.execute(_NOTIFY, {"channel": CHANNEL, "keys": sorted(tx.broadcast)})
        self.hub.notify(*tx.keys)

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    # -- tokens --------------------------------------------------------------

    async def add_token(
        self, token_hash: str, role: str, name: str | None, queues: Sequence[str]
    ) -> None:
        async with self._write() as tx:
            await tx.conn.execute(
                insert(t.tokens).values(
                    token_hash=token_hash,
                    role=role,
                    name=name,
                    queues=list(queues),
                    created_at=t.utcnow(),
                )
            )

    async def find_token(self, token_hash: str) -> TokenInfo | None:
        async with self._read() as conn:
            row = (
                await conn.execute(select(t.tokens).where(t.tokens.c.token_hash == token_hash))
            ).first()
        if row is None:
            return None
        return TokenInfo(row.id, row.role, row.name, tuple(row.queues))

    # -- queues --------------------------------------------------------------

    async def create_queue(self, name: str, config: dict[str, Any], warnings: list[str]) -> Queue:
        now = t.utcnow()
        try:
            async with self._write() as tx:
                await tx.conn.execute(
                    insert(t.queues).values(
                        name=name,
                        config=config,
                        version=1,
                        warnings=warnings,
                        created_at=now,
                        updated_at=now,
                    )
                )
                await tx.conn.execute(
                    insert(t.queue_versions).values(
                        name=name, version=1, config=config, created_at=now
                    )
                )
        except IntegrityError:
            raise Conflict(f"queue '{name}' already exists") from None
        return await self.get_queue(name)

    async def update_queue(self, name: str, config: dict[str, Any], warnings: list[str]) -> Queue:
        now = t.utcnow()
        async with self._write() as tx:
            row = (
                await tx.conn.execute(select(t.queues.c.version).where(t.queues.c.name == name))
            ).first()
            if row is None:
                raise NotFound(f"queue '{name}' not found")
            version = row.version + 1
            await tx.conn.execute(
                update(t.queues)
                .where(t.queues.c.name == name)
                .values(config=config, version=version, warnings=warnings, updated_at=now)
            )
            await tx.conn.execute(
                insert(t.queue_versions).values(
                    name=name, version=version, config=config, created_at=now
                )
            )
        return await self.get_queue(name)

    async def get_queue(self, name: str) -> Queue:
        async with self._read() as conn:
            row = (await conn.execute(select(t.queues).where(t.queues.c.name == name))).first()
        if row is None:
            raise NotFound(f"queue '{name}' not found")
        return _queue(row)

    async def list_queues(self) -> list[Queue]:
        async with self._read() as conn:
            rows = (await conn.execute(select(t.queues).order_by(t.queues.c.name))).all()
        return [_queue(row) for row in rows]

    async def _load_config(self, conn: AsyncConnection, name: str, version: int) -> dict[str, Any]:
        """The queue config as it was at ``version``: immutable, so cached for good."""
        cached = self._configs.get((name, version))
        if cached is not None:
            return cached
        row = (
            await conn.execute(
                select(t.queue_versions.c.config).where(
                    t.queue_versions.c.name == name, t.queue_versions.c.version == version
                )
            )
        ).first()
        if row is None:
            raise NotFound(f"queue '{name}' version {version} not found")
        self._configs[(name, version)] = row.config
        return row.config

    # -- jobs ----------------------------------------------------------------

    async def find_job_by_key(self, scope: str, key: str) -> Job | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(t.jobs).where(
                        t.jobs.c.idempotency_scope == scope, t.jobs.c.idempotency_key == key
                    )
                )
            ).first()
            return None if row is None else await self._job(conn, row)

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

        The unique constraint on (scope, key) decides between concurrent
        submits with one key: the loser's insert fails and it reads back the
        winner's job.
        """
        now = t.utcnow()
        job = Job(
            id=new_id("j"),
            queue=queue,
            state="queued",
            attempt=0,
            created_at=now,
            updated_at=now,
            spec=spec,
            overrides=overrides,
            template_variables=template_variables,
            queue_version=queue_version,
            resolved=resolved,
            agent_id=None,
            exit_code=None,
            failure_stage=None,
            reason=None,
            cancel_requested=False,
            events=[Event(state="queued", attempt=0, at=now)],
        )
        try:
            async with self._write() as tx:
                await tx.conn.execute(
                    insert(t.jobs).values(
                        **job.model_dump(exclude={"events"}),
                        log_count=0,
                        idempotency_scope=idempotency_scope if idempotency_key else None,
                        idempotency_key=idempotency_key,
                    )
                )
                await _add_event(tx.conn, job.id, 0, "queued", at=now)
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
            return await self._job(conn, row, events=events)

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
            row = await _locked_job(tx.conn, job_id)
            now = t.utcnow()
            if row.state == "queued":
                await tx.conn.execute(
                    update(t.jobs)
                    .where(t.jobs.c.id == job_id)
                    .values(
                        state="cancelled",
                        reason="cancelled before it started",
                        not_before=None,
                        updated_at=now,
                    )
                )
                await _add_event(
                    tx.conn, job_id, row.attempt, "cancelled", reason="cancelled by user", at=now
                )
                tx.notify(job_key(job_id))
            elif row.state in ACTIVE_STATES and not row.cancel_requested:
                await tx.conn.execute(
                    update(t.jobs)
                    .where(t.jobs.c.id == job_id)
                    .values(cancel_requested=True, updated_at=now)
                )
                await _add_event(
                    tx.conn, job_id, row.attempt, row.state, reason="cancel requested", at=now
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

    # -- agents --------------------------------------------------------------

    async def register_agent(self, agent: AgentRegister) -> list[Lease]:
        """Record the agent and return the live leases it still holds (for re-adoption)."""
        now = t.utcnow()
        values = {
            "host": agent.host,
            "queues": agent.queues,
            "version": agent.version,
            "plugins": agent.plugins,
            "last_heartbeat": now,
        }
        async with self._write() as tx:
            await _upsert_agent(tx.conn, agent.agent_id, values, now)
            rows = (
                await tx.conn.execute(
                    _lease_query()
                    .where(
                        t.leases.c.agent_id == agent.agent_id,
                        t.leases.c.active.is_(True),
                        t.leases.c.expires_at > now,
                    )
                    .order_by(t.leases.c.created_at)
                )
            ).all()
            return [await self._lease(tx.conn, row) for row in rows]

    async def list_agents(self) -> list[Agent]:
        async with self._read() as conn:
            rows = (await conn.execute(select(t.agents).order_by(t.agents.c.agent_id))).all()
        return [
            Agent(
                agent_id=row.agent_id,
                host=row.host,
                queues=row.queues,
                version=row.version,
                plugins=row.plugins,
                last_heartbeat=row.last_heartbeat,
                registered_at=row.registered_at,
            )
            for row in rows
        ]

    # -- leases --------------------------------------------------------------

    async def claim(self, queue: str, agent_id: str) -> Lease | None:
        """Claim the oldest claimable job of ``queue`` for ``agent_id``; ``None`` if there is none.

        One transaction notes that the agent is alive (a claim counts as much
        as a heartbeat), takes the job, inserts its lease and records the
        event, so a claim is all or nothing. ``NotFound`` if the queue does
        not exist (asked only when there was no job, which is the rare case).
        """
        async with self._write() as tx:
            now = t.utcnow()
            await _upsert_agent(tx.conn, agent_id, {"last_heartbeat": now}, now)
            job = await self._next_job(tx.conn, queue, agent_id, now)
            if job is None:
                exists = select(t.queues.c.name).where(t.queues.c.name == queue)
                if (await tx.conn.execute(exists)).first() is None:
                    raise NotFound(f"queue '{queue}' not found")
                return None
            config = await self._load_config(tx.conn, job.queue, job.queue_version)
            ttl = _lease_ttl(config)
            lease_id = new_id("l")
            expires_at = now + timedelta(seconds=ttl)
            await tx.conn.execute(
                insert(t.leases).values(
                    lease_id=lease_id,
                    job_id=job.id,
                    queue=job.queue,
                    attempt=job.attempt,
                    agent_id=agent_id,
                    ttl_seconds=ttl,
                    expires_at=expires_at,
                    active=True,
                    created_at=now,
                )
            )
            await _add_event(
                tx.conn, job.id, job.attempt, "claimed", details={"agent_id": agent_id}, at=now
            )
            tx.notify(job_key(job.id), local=True)
            return Lease(
                lease_id=lease_id,
                job_id=job.id,
                attempt=job.attempt,
                queue=job.queue,
                queue_version=job.queue_version,
                queue_config=config,
                spec=job.spec,
                overrides=job.overrides,
                template_variables=job.template_variables,
                lease_ttl_seconds=ttl,
                expires_at=expires_at,
                cancel_requested=job.cancel_requested,
                log_count=job.log_count,
            )

    async def _next_job(
        self, conn: AsyncConnection, queue: str, agent_id: str, now: datetime
    ) -> Row[Any] | None:
        """Mark the oldest claimable job claimed and return its row (attempt incremented).

        PostgreSQL locks the candidate and skips rows other claimers hold, so
        the conditional update below always wins there. On SQLite the write
        lock already excludes other claimers; the condition is a backstop.
        """
        candidate = (
            select(t.jobs.c.id)
            .where(
                t.jobs.c.queue == queue,
                t.jobs.c.state == "queued",
                (t.jobs.c.not_before.is_(None)) | (t.jobs.c.not_before <= now),
            )
            .order_by(t.jobs.c.created_at, t.jobs.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        job_id = (await conn.execute(candidate)).scalar()
        if job_id is None:
            return None
        claimed = await conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job_id, t.jobs.c.state == "queued")
            .values(
                state="claimed",
                agent_id=agent_id,
                attempt=t.jobs.c.attempt + 1,
                not_before=None,
                updated_at=now,
            )
            .returning(*t.jobs.c)
        )
        return claimed.first()

    async def heartbeat(self, agent_id: str, lease_ids: Iterable[str]) -> HeartbeatResponse:
        """Renew every live lease of the agent; report the stale ones and cancel requests."""
        wanted = list(dict.fromkeys(lease_ids))
        renewed: set[str] = set()
        cancel: list[str] = []
        ttls: list[float] = []
        async with self._write() as tx:
            now = t.utcnow()
            await _upsert_agent(tx.conn, agent_id, {"last_heartbeat": now}, now)
            rows: dict[str, Row[Any]] = {}
            if wanted:
                result = await tx.conn.execute(
                    select(
                        t.leases.c.lease_id,
                        t.leases.c.agent_id,
                        t.leases.c.active,
                        t.leases.c.expires_at,
                        t.leases.c.ttl_seconds,
                        t.jobs.c.cancel_requested,
                    )
                    .join(t.jobs, t.jobs.c.id == t.leases.c.job_id)
                    .where(t.leases.c.lease_id.in_(wanted))
                )
                rows = {row.lease_id: row for row in result}
            by_ttl: dict[float, list[str]] = {}
            for lease_id in wanted:
                row = rows.get(lease_id)
                if row is not None and _live(row, now) and row.agent_id == agent_id:
                    by_ttl.setdefault(row.ttl_seconds, []).append(lease_id)
            for ttl, ids in by_ttl.items():
                # Conditional: a sweeper in another process may have expired one meanwhile.
                result = await tx.conn.execute(
                    update(t.leases)
                    .where(t.leases.c.lease_id.in_(ids), t.leases.c.active.is_(True))
                    .values(expires_at=now + timedelta(seconds=ttl))
                    .returning(t.leases.c.lease_id)
                )
                kept = set(result.scalars())
                renewed |= kept
                ttls.extend(ttl for _ in kept)
        for lease_id in wanted:
            if lease_id in renewed and rows[lease_id].cancel_requested:
                cancel.append(lease_id)
        return HeartbeatResponse(
            renewed=[lease_id for lease_id in wanted if lease_id in renewed],
            stale=[lease_id for lease_id in wanted if lease_id not in renewed],
            cancel=cancel,
            lease_ttl_seconds=min(ttls, default=DEFAULT_LEASE_TTL),
        )

    async def lease_info(self, lease_id: str) -> LeaseInfo:
        async with self._read() as conn:
            row = (
                await conn.execute(select(t.leases).where(t.leases.c.lease_id == lease_id))
            ).first()
        if row is None:
            raise NotFound(f"lease '{lease_id}' not found")
        return LeaseInfo(row.lease_id, row.job_id, row.queue, row.agent_id)

    async def post_event(self, lease_id: str, body: EventIn) -> None:
        async with self._write() as tx:
            lease = await _live_lease(tx.conn, lease_id)
            now = t.utcnow()
            await tx.conn.execute(
                update(t.jobs)
                .where(t.jobs.c.id == lease.job_id)
                .values(state=body.state, updated_at=now)
            )
            await _add_event(
                tx.conn,
                lease.job_id,
                lease.attempt,
                body.state,
                stage=body.stage,
                reason=body.reason,
                details=body.details,
                at=now,
            )
            tx.notify(job_key(lease.job_id), local=True)

    async def append_logs(
        self, lease_id: str, lines: Sequence[str], first_seq: int | None = None
    ) -> int:
        """Store lines with consecutive seqs; returns the seq of the last line stored.

        ``first_seq`` is the seq the sender numbered the first line with. A
        batch sent again because its answer was lost then overlaps what the
        log holds, and only the lines past the log's end are stored. (A
        ``first_seq`` past the end means lines in between were given up on:
        the batch is appended as it is.)
        """
        async with self._write() as tx:
            lease = await _live_lease(tx.conn, lease_id)
            if first_seq is not None or not lines:
                stored = int(
                    (
                        await tx.conn.execute(
                            select(t.jobs.c.log_count)
                            .where(t.jobs.c.id == lease.job_id)
                            .with_for_update()
                        )
                    ).scalar_one()
                )
                if first_seq is not None:
                    lines = lines[max(0, stored - first_seq + 1) :]
                if not lines:
                    return stored
            # The UPDATE takes the job's row lock, so concurrent appends get disjoint seqs.
            count = (
                await tx.conn.execute(
                    update(t.jobs)
                    .where(t.jobs.c.id == lease.job_id)
                    .values(log_count=t.jobs.c.log_count + len(lines))
                    .returning(t.jobs.c.log_count)
                )
            ).scalar_one()
            first = count - len(lines) + 1
            await tx.conn.execute(
                insert(t.log_lines),
                [
                    {"job_id": lease.job_id, "seq": seq, "attempt": lease.attempt, "line": text}
                    # NUL cannot be stored in a PostgreSQL text column.
                    for seq, text in enumerate(
                        (line.replace("\x00", "\ufffd") for line in lines), start=first
                    )
                ],
            )
            # Followers elsewhere catch up within the poll interval (module docstring).
            tx.notify(job_key(lease.job_id), local=True)
            return int(count)

    async def complete(self, lease_id: str, body: CompleteIn) -> Job:
        """Finish the job of a live lease, or re-queue it when its queue's retry policy says so.

        A retried completion (the agent lost the answer) is answered, not refused.
        """
        async with self._write() as tx:
            lease = await _live_lease(tx.conn, lease_id, accept_outcome="completed")
            if lease.active:
                now = t.utcnow()
                await tx.conn.execute(
                    update(t.leases)
                    .where(t.leases.c.lease_id == lease_id)
                    .values(active=False, outcome="completed")
                )
                job = await _locked_job(tx.conn, lease.job_id)
                config = await self._load_config(tx.conn, job.queue, job.queue_version)
                infrastructure = body.infrastructure_failure
                details: dict[str, Any] = {}
                if body.exit_code is not None:
                    details["exit_code"] = body.exit_code
                if infrastructure:
                    details["infrastructure_failure"] = True
                await _add_event(
                    tx.conn,
                    job.id,
                    lease.attempt,
                    body.state,
                    stage=body.stage,
                    reason=body.reason,
                    details=details or None,
                    at=now,
                )
                retry = _retry(config, body.state, infrastructure, job)
                if retry is not None:
                    policy, what = retry
                    why = f"retrying after {what} (attempt {job.attempt} of {policy.max_attempts})"
                    await _requeue(tx, job, why, now, backoff=policy.backoff_seconds)
                else:
                    await tx.conn.execute(
                        update(t.jobs)
                        .where(t.jobs.c.id == job.id)
                        .values(
                            state=body.state,
                            exit_code=body.exit_code,
                            failure_stage=body.stage,
                            reason=body.reason,
                            updated_at=now,
                        )
                    )
                    await _upsert(
                        tx.conn,
                        t.records,
                        {"job_id": job.id},
                        {"record": body.record, "created_at": now},
                    )
                    tx.notify(job_key(job.id))
            return await self._job(tx.conn, await _locked_job(tx.conn, lease.job_id))

    async def release(self, lease_id: str, reason: str | None) -> None:
        """Give a job back: it is queued again at once (or cancelled, if that was asked)."""
        async with self._write() as tx:
            lease = await _live_lease(tx.conn, lease_id, accept_outcome="released")
            if not lease.active:
                return
            await tx.conn.execute(
                update(t.leases)
                .where(t.leases.c.lease_id == lease_id)
                .values(active=False, outcome="released")
            )
            job = await _locked_job(tx.conn, lease.job_id)
            why = f"released by agent: {reason}" if reason else "released by agent"
            await _requeue(tx, job, why, t.utcnow())

    async def sweep(self) -> int:
        """End expired leases; make retried jobs whose backoff ended claimable.

        The job of an expired lease is re-queued (after the queue's retry
        backoff, if it has one), or failed as ``agent lost`` once it used
        ``max_attempts`` attempts, or cancelled if a cancel was pending. Safe
        to run in several processes at once (module docstring). Returns the
        number of leases it ended.
        """
        async with self._write() as tx:
            now = t.utcnow()
            rows = (
                await tx.conn.execute(
                    select(t.leases.c.lease_id, t.leases.c.attempt.label("lease_attempt"), t.jobs)
                    .join(t.jobs, t.jobs.c.id == t.leases.c.job_id)
                    .where(t.leases.c.active.is_(True), t.leases.c.expires_at < now)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            ended = 0
            for row in rows:
                result = await tx.conn.execute(
                    update(t.leases)
                    .where(t.leases.c.lease_id == row.lease_id, t.leases.c.active.is_(True))
                    .values(active=False, outcome="expired")
                )
                if result.rowcount != 1:
                    continue  # ended meanwhile (completed, released, another sweeper)
                ended += 1
                if row.state in FINAL_STATES or row.attempt != row.lease_attempt:
                    continue  # the job has moved on without this lease
                config = await self._load_config(tx.conn, row.queue, row.queue_version)
                max_attempts = int(config.get("max_attempts") or DEFAULT_MAX_ATTEMPTS)
                if row.cancel_requested or row.attempt >= max_attempts:
                    await _finish(tx, row, now)
                else:
                    why = f"lease expired: {AGENT_LOST} (attempt {row.attempt} of {max_attempts})"
                    policy = _retry_policy(config)
                    backoff = policy.backoff_seconds if policy is not None else 0.0
                    await _requeue(tx, row, why, now, backoff=backoff)
            # Backoffs that ended: wake the queues' claimers (who check not_before
            # themselves; this only spares them waiting for an unrelated wake-up).
            due = (
                await tx.conn.execute(
                    select(t.jobs.c.id, t.jobs.c.queue)
                    .where(t.jobs.c.not_before <= now)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if due:
                await tx.conn.execute(
                    update(t.jobs)
                    .where(t.jobs.c.id.in_([row.id for row in due]))
                    .values(not_before=None)
                )
                tx.notify(*{queue_key(row.queue) for row in due})
        return ended

    async def renew_all_leases(self) -> int:
        """Give every live lease a full TTL from now; the number renewed.

        Run when a server starts: while it was down its agents could not
        heartbeat, and expiring their leases now would re-run jobs that are
        running fine. A lease whose agent really is gone expires one TTL later.
        """
        async with self._write() as tx:
            now = t.utcnow()
            ttls = (
                await tx.conn.execute(
                    select(t.leases.c.ttl_seconds).where(t.leases.c.active.is_(True)).distinct()
                )
            ).scalars()
            renewed = 0
            for ttl in list(ttls):
                until = now + timedelta(seconds=ttl)
                result = await tx.conn.execute(
                    update(t.leases)
                    .where(
                        t.leases.c.active.is_(True),
                        t.leases.c.ttl_seconds == ttl,
                        t.leases.c.expires_at < until,
                    )
                    .values(expires_at=until)
                )
                renewed += result.rowcount
        return renewed

    async def sweep_due_in(self, now: datetime) -> float | None:
        """Seconds until the sweeper has work that cannot wait for its regular pass.

        That is the shortest live lease TTL / 3 (so expiry is noticed within a
        third of a TTL) or the end of the earliest retry backoff; ``None`` if neither.
        """
        async with self._read() as conn:
            ttl, due = (
                await conn.execute(
                    select(
                        select(func.min(t.leases.c.ttl_seconds))
                        .where(t.leases.c.active.is_(True))
                        .scalar_subquery(),
                        select(func.min(t.jobs.c.not_before)).scalar_subquery(),
                    )
                )
            ).one()
        candidates = [] if ttl is None else [float(ttl) / 3]
        if due is not None:
            candidates.append((due - now).total_seconds())
        return min(candidates, default=None)

    # -- row mapping ---------------------------------------------------------

    async def _job(self, conn: AsyncConnection, row: Row[Any], *, events: bool = True) -> Job:
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

    async def _lease(self, conn: AsyncConnection, row: Row[Any]) -> Lease:
        """A Lease from a row of ``leases`` joined with ``jobs``."""
        return Lease(
            lease_id=row.lease_id,
            job_id=row.job_id,
            attempt=row.attempt,
            queue=row.queue,
            queue_version=row.queue_version,
            queue_config=await self._load_config(conn, row.queue, row.queue_version),
            spec=row.spec,
            overrides=row.overrides,
            template_variables=row.template_variables,
            lease_ttl_seconds=row.ttl_seconds,
            expires_at=row.expires_at,
            cancel_requested=row.cancel_requested,
            log_count=row.log_count,
        )


def _queue(row: Row[Any]) -> Queue:
    return Queue(
        name=row.name,
        config=row.config,
        version=row.version,
        warnings=row.warnings,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


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
        agent_id=row.agent_id,
        exit_code=row.exit_code,
        failure_stage=row.failure_stage,
        reason=row.reason,
        cancel_requested=row.cancel_requested,
        events=found,
    )


def _lease_ttl(config: dict[str, Any]) -> float:
    value = config.get("lease_ttl_seconds")
    return float(value) if isinstance(value, int | float) and value > 0 else DEFAULT_LEASE_TTL


def _live(row: Row[Any], now: datetime) -> bool:
    return bool(row.active) and row.expires_at > now


async def _live_lease(
    conn: AsyncConnection, lease_id: str, *, accept_outcome: str | None = None
) -> Row[Any]:
    """The lease row, locked, if it may still act; ``accept_outcome`` lets a retry through.

    The lock (PostgreSQL) makes the check and the caller's writes one step
    against a sweeper or another call on the same lease in another process.
    """
    row = (
        await conn.execute(
            select(t.leases).where(t.leases.c.lease_id == lease_id).with_for_update()
        )
    ).first()
    if row is None:
        raise NotFound(f"lease '{lease_id}' not found")
    if accept_outcome is not None and not row.active and row.outcome == accept_outcome:
        return row
    if not _live(row, t.utcnow()):
        why = row.outcome or "expired"
        raise StaleLease(f"lease '{lease_id}' is no longer valid ({why}): stop this workload")
    return row


async def _locked_job(conn: AsyncConnection, job_id: str) -> Row[Any]:
    row = (
        await conn.execute(select(t.jobs).where(t.jobs.c.id == job_id).with_for_update())
    ).first()
    if row is None:
        raise NotFound(f"job '{job_id}' not found")
    return row


async def _add_event(
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


async def _requeue(
    tx: _Tx, job: Row[Any], reason: str, now: datetime, *, backoff: float = 0.0
) -> None:
    """Put an active job back on its queue, or cancel it if a cancel was pending.

    What the last attempt left (exit code, stage, reason) is cleared: a job's
    fields describe its latest attempt, its events every attempt. With a
    ``backoff`` the job is not claimable before ``now + backoff``; the sweeper
    wakes the queue's claimers then.
    """
    if job.cancel_requested:
        await _finish(tx, job, now, agent_lost=False)
        return
    not_before = now + timedelta(seconds=backoff) if backoff > 0 else None
    await tx.conn.execute(
        update(t.jobs)
        .where(t.jobs.c.id == job.id)
        .values(
            state="queued",
            agent_id=None,
            exit_code=None,
            failure_stage=None,
            reason=None,
            not_before=not_before,
            updated_at=now,
        )
    )
    details = None if not_before is None else {"not_before": not_before.isoformat()}
    await _add_event(tx.conn, job.id, job.attempt, "queued", reason=reason, details=details, at=now)
    tx.notify(job_key(job.id))
    if not_before is None:
        tx.notify(queue_key(job.queue))


def _retry_policy(config: dict[str, Any]) -> RetryPolicy | None:
    """The queue's ``retry`` policy; one that does not parse (a template left in it) is none."""
    raw = config.get("retry")
    if raw is None:
        return None
    try:
        return RetryPolicy.model_validate(raw)
    except ValidationError:
        return None


def _retry(
    config: dict[str, Any], state: str, infrastructure: bool, job: Row[Any]
) -> tuple[RetryPolicy, str] | None:
    """The policy and the kind of failure when a reported outcome is retried, else ``None``.

    Only failures are retried: an infrastructure failure (the agent says so:
    image pull, eviction, a node that went away) whenever the queue has a
    ``retry`` policy, a failure of the user's code only when the policy sets
    ``include_user_failures``; a cancelled job never. ``retry.max_attempts``
    counts every attempt of the job, lost-agent re-queues included.
    """
    policy = _retry_policy(config)
    if policy is None or state != "failed" or job.cancel_requested:
        return None
    if job.attempt >= policy.max_attempts:
        return None
    if infrastructure:
        return policy, "an infrastructure failure"
    if policy.include_user_failures:
        return policy, "a failure"
    return None


async def _finish(tx: _Tx, job: Row[Any], now: datetime, *, agent_lost: bool = True) -> None:
    """End a job whose agent is gone: cancelled if that was asked, else failed."""
    if job.cancel_requested:
        state, reason = "cancelled", "cancelled" + (f" ({AGENT_LOST})" if agent_lost else "")
    else:
        state, reason = "failed", AGENT_LOST
    await tx.conn.execute(
        update(t.jobs)
        .where(t.jobs.c.id == job.id)
        .values(state=state, reason=reason, failure_stage=job.state, updated_at=now)
    )
    await _add_event(tx.conn, job.id, job.attempt, state, stage=job.state, reason=reason, at=now)
    tx.notify(job_key(job.id))


async def _upsert_agent(
    conn: AsyncConnection, agent_id: str, values: dict[str, Any], now: datetime
) -> None:
    defaults = {"host": "", "queues": [], "version": "", "plugins": {}, "registered_at": now}
    await _upsert(conn, t.agents, {"agent_id": agent_id}, values, defaults)


async def _upsert(
    conn: AsyncConnection,
    table: Any,
    key: dict[str, Any],
    values: dict[str, Any],
    defaults: dict[str, Any] | None = None,
) -> None:
    """INSERT ... ON CONFLICT DO UPDATE: one statement, race-free on both engines."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    statement = dialect_insert(table).values(**{**(defaults or {}), **key, **values})
    await conn.execute(statement.on_conflict_do_update(index_elements=list(key), set_=values))


def _lease_query() -> Select[Any]:
    """Leases joined with their jobs: the columns a :class:`Lease` is made of."""
    return select(
        t.leases.c.lease_id,
        t.leases.c.job_id,
        t.leases.c.attempt,
        t.leases.c.queue,
        t.leases.c.ttl_seconds,
        t.leases.c.expires_at,
        t.jobs.c.queue_version,
        t.jobs.c.spec,
        t.jobs.c.overrides,
        t.jobs.c.template_variables,
        t.jobs.c.cancel_requested,
        t.jobs.c.log_count,
    ).join(t.jobs, t.jobs.c.id == t.leases.c.job_id)

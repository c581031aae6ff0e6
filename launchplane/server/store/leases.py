"""Agents and their leases: register, claim, heartbeat, and every call made under a lease.

A claim is a lease on one job: the agent that holds it reports the job's
events, log lines and end under it, and renews it by heartbeat. Every lease
call is fenced: a lease that expired, was released or was superseded is
refused (:class:`~launchplane.server.problems.StaleLease`, a 409), and its
agent stops the workload.

Claims (:meth:`LeaseStore._next_job`) take the claimable job of the highest
priority, the oldest within it (one index, ``ix_jobs_claim``, serves the
whole order), ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent
claimers pass each other instead of queueing on one row; a conditional
``UPDATE ... WHERE state='queued'`` on both backends. The lease hands the
agent the job as the server resolved it at submit (``jobs.resolved``) and the
queue version that was: the agent never resolves it again.

Agent ids are bound to agent tokens (``agents.token_id``): the first agent
token that registers, claims or heartbeats under an id owns it while that
token is valid; another token using the id is refused (403), and a call under
a lease (events, logs, complete, release) is refused unless the lease's agent
id is the caller's. One token may own several ids (a pool of agents that share
it: they are one principal); a revoked or expired token's ids can be taken
over by a new token (re-adopting their leases). Admin tokens bind nothing and
may act as any agent. The ``holder`` argument of these methods is the calling
agent token's id; ``None`` (admins, direct store use) checks nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from launchplane.core.lease import LATE_LINES_WINDOW
from launchplane.core.states import CLAIMED, QUEUED
from launchplane.server import lifecycle
from launchplane.server import tables as t
from launchplane.server.hub import job_key
from launchplane.server.problems import Forbidden, NotFound, StaleLease
from launchplane.server.schemas import (
    Agent,
    AgentRegister,
    CompleteIn,
    EventIn,
    HeartbeatResponse,
    Job,
    Lease,
)
from launchplane.server.store.base import StoreBase, Tx, new_id, upsert
from launchplane.server.store.jobs import (
    add_event,
    end_job,
    insert_log_lines,
    job_model,
    locked_job,
    requeue,
)


@dataclass(frozen=True)
class LeaseInfo:
    """What the auth layer needs to know about a lease before letting a call through."""

    lease_id: str
    job_id: str
    queue: str
    agent_id: str


class LeaseStore(StoreBase):
    # -- agents --------------------------------------------------------------

    async def register_agent(self, agent: AgentRegister, holder: int | None = None) -> list[Lease]:
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
            await _upsert_agent(tx.conn, agent.agent_id, values, now, holder)
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
            return [_lease(row) for row in rows]

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

    async def claim(self, queue: str, agent_id: str, holder: int | None = None) -> Lease | None:
        """Claim the next job of ``queue`` for ``agent_id``; ``None`` if there is none.

        The next job: the highest priority first, the oldest within one.

        One transaction notes that the agent is alive (a claim counts as much
        as a heartbeat), takes the job, inserts its lease and records the
        event, so a claim is all or nothing. ``NotFound`` if the queue does
        not exist (asked only when there was no job, which is the rare case).
        """
        async with self._write() as tx:
            now = t.utcnow()
            await _upsert_agent(tx.conn, agent_id, {"last_heartbeat": now}, now, holder)
            job = await self._next_job(tx.conn, queue, agent_id, now)
            if job is None:
                exists = select(t.queues.c.name).where(t.queues.c.name == queue)
                if (await tx.conn.execute(exists)).first() is None:
                    raise NotFound(f"queue '{queue}' not found")
                return None
            config = await self._load_config(tx.conn, job.queue, job.queue_version)
            ttl = lifecycle.lease_ttl(config)
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
                    log_position=job.log_count,
                    created_at=now,
                )
            )
            await add_event(
                tx.conn, job.id, job.attempt, CLAIMED, details={"agent_id": agent_id}, at=now
            )
            tx.notify(job_key(job.id), local=True)
            return Lease(
                lease_id=lease_id,
                job_id=job.id,
                attempt=job.attempt,
                queue=job.queue,
                queue_version=job.queue_version,
                resolved=job.resolved,
                lease_ttl_seconds=ttl,
                expires_at=expires_at,
                cancel_requested=job.cancel_requested,
                log_count=job.log_count,
            )

    async def _next_job(
        self, conn: AsyncConnection, queue: str, agent_id: str, now: datetime
    ) -> Row[Any] | None:
        """Mark the next claimable job claimed and return its row (attempt incremented).

        Highest priority (lowest ``jobs.priority``) first, then oldest: a retried
        job keeps its place (its ``created_at``) once its backoff ends.

        PostgreSQL locks the candidate and skips rows other claimers hold, so
        the conditional update below always wins there. On SQLite the write
        lock already excludes other claimers; the condition is a backstop.
        """
        job_id = (await conn.execute(claim_candidate(queue, now))).scalar()
        if job_id is None:
            return None
        claimed = await conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job_id, t.jobs.c.state == QUEUED)
            .values(
                state=CLAIMED,
                agent_id=agent_id,
                attempt=t.jobs.c.attempt + 1,
                not_before=None,
                updated_at=now,
            )
            .returning(*t.jobs.c)
        )
        return claimed.first()

    async def heartbeat(
        self, agent_id: str, lease_ids: Iterable[str], holder: int | None = None
    ) -> HeartbeatResponse:
        """Renew every live lease of the agent; report the stale ones and cancel requests."""
        wanted = list(dict.fromkeys(lease_ids))
        renewed: set[str] = set()
        cancel: list[str] = []
        ttls: list[float] = []
        async with self._write() as tx:
            now = t.utcnow()
            await _upsert_agent(tx.conn, agent_id, {"last_heartbeat": now}, now, holder)
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
            lease_ttl_seconds=min(ttls, default=lifecycle.DEFAULT_LEASE_TTL),
        )

    async def lease_info(self, lease_id: str) -> LeaseInfo:
        async with self._read() as conn:
            row = (
                await conn.execute(select(t.leases).where(t.leases.c.lease_id == lease_id))
            ).first()
        if row is None:
            raise NotFound(f"lease '{lease_id}' not found")
        return LeaseInfo(row.lease_id, row.job_id, row.queue, row.agent_id)

    async def post_event(self, lease_id: str, body: EventIn, holder: int | None = None) -> None:
        async with self._write() as tx:
            lease = await _live_lease(tx.conn, lease_id, holder)
            now = t.utcnow()
            moved = await tx.conn.execute(
                update(t.jobs)
                .where(
                    t.jobs.c.id == lease.job_id,
                    t.jobs.c.state.in_(lifecycle.preceding(body.state)),
                )
                .values(state=body.state, updated_at=now)
            )
            if moved.rowcount != 1:  # a live lease's job is active: a backstop, not a path
                raise StaleLease(f"lease '{lease_id}': its job cannot become {body.state} now")
            await add_event(
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
        self,
        lease_id: str,
        lines: Sequence[str],
        first_seq: int | None = None,
        holder: int | None = None,
    ) -> int:
        """Store lines of a live lease at the log's end; returns the seq of the last line stored.

        ``first_seq`` is the seq the sender numbered the first line with, in the
        lease's own numbering (see :func:`_store_lines`): a batch sent again
        because its answer was lost overlaps what the lease has stored, and
        only the lines past it are stored.
        """
        async with self._write() as tx:
            lease = await _live_lease(tx.conn, lease_id, holder)
            last, _ = await _store_lines(tx, lease, lines, first_seq)
            return last

    async def append_late_logs(
        self, lease_id: str, lines: Sequence[str], first_seq: int, holder: int | None = None
    ) -> tuple[int, int]:
        """Store lines a lease's run wrote that its agent could not send while it lived.

        For a lease that has ended (expired, released, completed; its job may
        have run again elsewhere, or ended), up to :data:`LATE_LINES_WINDOW`
        after its last expiry time: the lines go to the log's end with the
        lease's attempt, deduplicated as :meth:`append_logs` does, by the
        lease's own numbering. A live lease is refused (409: its lines go
        through :meth:`append_logs`), as is one ended longer ago (409).
        Returns the seq of the log's last line and the lease's log position
        (the seq, in its numbering, of its last line stored: an empty batch
        asks for it).
        """
        async with self._write() as tx:
            lease = await _own_lease(tx.conn, lease_id, holder)
            now = t.utcnow()
            if _live(lease, now):
                raise StaleLease(
                    f"lease '{lease_id}' is live: send its lines to /leases/{lease_id}/logs"
                )
            if now - lease.expires_at > LATE_LINES_WINDOW:
                raise StaleLease(
                    f"lease '{lease_id}' ended more than {LATE_LINES_WINDOW.days} days ago: "
                    "its late lines are no longer taken"
                )
            return await _store_lines(tx, lease, lines, first_seq)

    async def complete(self, lease_id: str, body: CompleteIn, holder: int | None = None) -> Job:
        """Finish the job of a live lease, or re-queue it when its queue's retry policy says so.

        A retried completion (the agent lost the answer) is answered, not refused.
        """
        async with self._write() as tx:
            lease = await _live_lease(tx.conn, lease_id, holder, accept_outcome="completed")
            if lease.active:
                now = t.utcnow()
                await tx.conn.execute(
                    update(t.leases)
                    .where(t.leases.c.lease_id == lease_id)
                    .values(active=False, outcome="completed")
                )
                job = await locked_job(tx.conn, lease.job_id)
                config = await self._load_config(tx.conn, job.queue, job.queue_version)
                infrastructure = body.infrastructure_failure
                details: dict[str, Any] = {}
                if body.exit_code is not None:
                    details["exit_code"] = body.exit_code
                if infrastructure:
                    details["infrastructure_failure"] = True
                await add_event(
                    tx.conn,
                    job.id,
                    lease.attempt,
                    body.state,
                    stage=body.stage,
                    reason=body.reason,
                    details=details or None,
                    at=now,
                )
                again = lifecycle.on_completion(job, config, body.state, infrastructure)
                if again is not None:
                    await requeue(tx, job, again, now)
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
                    await upsert(
                        tx.conn,
                        t.records,
                        {"job_id": job.id},
                        {"record": body.record, "created_at": now},
                    )
                    tx.notify(job_key(job.id))
            return await job_model(tx.conn, await locked_job(tx.conn, lease.job_id))

    async def release(self, lease_id: str, reason: str | None, holder: int | None = None) -> None:
        """Give a job back: it is queued again at once (or cancelled, if that was asked)."""
        async with self._write() as tx:
            lease = await _live_lease(tx.conn, lease_id, holder, accept_outcome="released")
            if not lease.active:
                return
            await tx.conn.execute(
                update(t.leases)
                .where(t.leases.c.lease_id == lease_id)
                .values(active=False, outcome="released")
            )
            job = await locked_job(tx.conn, lease.job_id)
            decision = lifecycle.on_release(job, reason)
            if isinstance(decision, lifecycle.Requeue):
                await requeue(tx, job, decision, t.utcnow())
            else:
                await end_job(tx, job, decision, t.utcnow())


def claim_candidate(queue: str, now: datetime) -> Select[Any]:
    """The id of the job a claim on ``queue`` takes: highest priority, then oldest.

    ``ix_jobs_claim`` (queue, state, priority, created_at, id) serves its
    filter and its whole ORDER BY, so the first index entry that passes the
    backoff filter is the answer: no sort, however many jobs are queued
    (tests/store/test_priority.py checks the plan on both backends).
    """
    return (
        select(t.jobs.c.id)
        .where(
            t.jobs.c.queue == queue,
            t.jobs.c.state == QUEUED,
            (t.jobs.c.not_before.is_(None)) | (t.jobs.c.not_before <= now),
        )
        .order_by(t.jobs.c.priority, t.jobs.c.created_at, t.jobs.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


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
        t.jobs.c.resolved,
        t.jobs.c.cancel_requested,
        t.leases.c.log_position,
    ).join(t.jobs, t.jobs.c.id == t.leases.c.job_id)


def _lease(row: Row[Any]) -> Lease:
    """A Lease from a row of :func:`_lease_query`."""
    return Lease(
        lease_id=row.lease_id,
        job_id=row.job_id,
        attempt=row.attempt,
        queue=row.queue,
        queue_version=row.queue_version,
        resolved=row.resolved,
        lease_ttl_seconds=row.ttl_seconds,
        expires_at=row.expires_at,
        cancel_requested=row.cancel_requested,
        log_count=row.log_position,
    )


async def _store_lines(
    tx: Tx, lease: Row[Any], lines: Sequence[str], first_seq: int | None
) -> tuple[int, int]:
    """Append a lease's batch to the job's log; the seq of the log's last line and the
    lease's new log position.

    Each lease numbers its lines itself, from the job's ``log_count`` at its claim
    on (``leases.log_position`` is the number of its last line stored): the seqs
    the lines get in the log are the same as long as nothing else is appended
    meanwhile, which late lines of another, ended lease may be. A batch whose
    ``first_seq`` the position has passed is a repeat, in part or whole: only its
    lines past the position are stored. A ``first_seq`` beyond it means lines in
    between were given up on: the batch is stored whole and the position jumps to
    its end, so a repeat of it is still known. Without ``first_seq``, every line
    is stored.
    """
    position = int(lease.log_position)  # the caller locked the row: no batch moves it meanwhile
    if first_seq is None:
        first_seq = position + 1
    lines = lines[max(0, position - first_seq + 1) :]
    if not lines:
        count = (
            await tx.conn.execute(select(t.jobs.c.log_count).where(t.jobs.c.id == lease.job_id))
        ).scalar_one()
        return int(count), position
    position = max(position, first_seq - 1) + len(lines)
    await tx.conn.execute(
        update(t.leases).where(t.leases.c.lease_id == lease.lease_id).values(log_position=position)
    )
    # The UPDATE takes the job's row lock, so concurrent appends get disjoint seqs.
    count = (
        await tx.conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == lease.job_id)
            .values(log_count=t.jobs.c.log_count + len(lines))
            .returning(t.jobs.c.log_count)
        )
    ).scalar_one()
    await insert_log_lines(tx.conn, lease.job_id, lease.attempt, count - len(lines) + 1, lines)
    # Followers elsewhere catch up within the poll interval (see store/base.py).
    tx.notify(job_key(lease.job_id), local=True)
    return int(count), position


def _live(row: Row[Any], now: datetime) -> bool:
    return bool(row.active) and row.expires_at > now


async def _live_lease(
    conn: AsyncConnection,
    lease_id: str,
    holder: int | None = None,
    *,
    accept_outcome: str | None = None,
) -> Row[Any]:
    """The lease row, locked, if it may still act; ``accept_outcome`` lets a retry through.

    The lock (PostgreSQL) makes the check and the caller's writes one step
    against a sweeper or another call on the same lease in another process.
    ``Forbidden`` when ``holder`` (an agent token) does not own the lease's agent id.
    """
    row = await _own_lease(conn, lease_id, holder)
    if accept_outcome is not None and not row.active and row.outcome == accept_outcome:
        return row
    if not _live(row, t.utcnow()):
        why = row.outcome or "expired"
        raise StaleLease(f"lease '{lease_id}' is no longer valid ({why}): stop this workload")
    return row


async def _own_lease(conn: AsyncConnection, lease_id: str, holder: int | None) -> Row[Any]:
    """The lease row, locked, live or not; ``Forbidden`` when ``holder`` (an agent token)
    does not own the lease's agent id, ``NotFound`` for an unknown lease."""
    owner = (
        select(t.agents.c.token_id)
        .where(t.agents.c.agent_id == t.leases.c.agent_id)
        .scalar_subquery()
        .label("owner")
    )
    row = (
        await conn.execute(
            select(t.leases, owner)
            .where(t.leases.c.lease_id == lease_id)
            .with_for_update(of=t.leases)
        )
    ).first()
    if row is None:
        raise NotFound(f"lease '{lease_id}' not found")
    if holder is not None and row.owner != holder:
        raise Forbidden(
            f"lease '{lease_id}' is held by agent '{row.agent_id}', which is not registered "
            "with this agent token: an agent token acts only on its own agents' leases"
        )
    return row


async def _upsert_agent(
    conn: AsyncConnection,
    agent_id: str,
    values: dict[str, Any],
    now: datetime,
    holder: int | None = None,
) -> None:
    """Record the agent; bind its id to ``holder`` (an agent token) or refuse (see the
    module docstring). One statement: two tokens racing for a new id cannot both win."""
    defaults = {"host": "", "queues": [], "version": "", "plugins": {}, "registered_at": now}
    if holder is None:
        await upsert(conn, t.agents, {"agent_id": agent_id}, values, defaults)
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    owner_valid = exists().where(
        t.tokens.c.id == t.agents.c.token_id,
        t.tokens.c.revoked_at.is_(None),
        t.tokens.c.expires_at.is_(None) | (t.tokens.c.expires_at > now),
    )
    bound = {**values, "token_id": holder}
    statement = dialect_insert(t.agents).values(**{**defaults, "agent_id": agent_id, **bound})
    statement = statement.on_conflict_do_update(
        index_elements=["agent_id"],
        set_=bound,
        where=t.agents.c.token_id.is_(None)
        | (t.agents.c.token_id == holder)
        | ~owner_valid.correlate(t.agents),
    ).returning(t.agents.c.agent_id)
    if (await conn.execute(statement)).first() is None:
        raise Forbidden(
            f"agent id '{agent_id}' is registered with another agent token: give each agent "
            "its own id (--agent-id) or share one token between them; to move the id to this "
            "token, revoke the other one (launchplane token revoke ID)"
        )

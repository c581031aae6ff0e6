"""The sweeper's queries: expired leases, ended backoffs, and leases renewed at start-up.

:meth:`SweeperStore.sweep` may run in every server process at once (``app.py``
runs it on a timer, waking earlier when :meth:`SweeperStore.sweep_due_in`
says so): it takes expired leases ``FOR UPDATE SKIP LOCKED`` and ends each
with a conditional update, so a lease is expired (and its job re-queued)
once. What becomes of the job is :func:`launchplane.server.lifecycle.on_lease_expired`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from launchplane.server import lifecycle
from launchplane.server import tables as t
from launchplane.server.hub import queue_key
from launchplane.server.store.base import StoreBase
from launchplane.server.store.jobs import end_job, requeue


class SweeperStore(StoreBase):
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
                config = await self._load_config(tx.conn, row.queue, row.queue_version)
                decision = lifecycle.on_lease_expired(row, row.lease_attempt, config)
                if isinstance(decision, lifecycle.Requeue):
                    await requeue(tx, row, decision, now)
                elif isinstance(decision, lifecycle.End):
                    await end_job(tx, row, decision, now)
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

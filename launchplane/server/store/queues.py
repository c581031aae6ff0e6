"""Queues and their config versions.

Every create or update writes a new row of ``queue_versions`` next to the
queue's current config: a version is never changed again, and a job keeps
the version it was resolved against (``jobs.queue_version``) for all its
attempts, so an update applies to jobs submitted after it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from launchplane.server import tables as t
from launchplane.server.problems import Conflict, NotFound
from launchplane.server.schemas import Queue
from launchplane.server.store.base import StoreBase


class QueueStore(StoreBase):
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
        """The next version of the queue; jobs already queued keep the version they have."""
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


def _queue(row: Row[Any]) -> Queue:
    return Queue(
        name=row.name,
        config=row.config,
        version=row.version,
        warnings=row.warnings,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )

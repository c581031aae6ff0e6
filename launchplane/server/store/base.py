"""The store's connection and transaction plumbing, which every table family shares.

One code path serves both backends (``db.py``): SQLite, the embedded
default, and PostgreSQL, which several server processes share. What differs
per backend is isolated here and in the few queries that say so:

* **Write serialisation.** SQLite allows one writer; a process-wide
  ``asyncio.Lock`` around write transactions (:meth:`StoreBase._write`) keeps
  this process's writers from ever meeting ``SQLITE_BUSY``. PostgreSQL needs
  no lock: rows are.
* **Row locks.** Every write that decides from a row it read first takes
  that row ``FOR UPDATE`` (a lease before acting on it, a job before
  cancelling it). SQLite ignores the clause (its lock already covers the
  transaction); on PostgreSQL it is what makes fencing hold between server
  processes: a lease that another process expired is seen expired.
* **Wake-ups.** Every write notifies the :class:`~launchplane.server.hub.Hub`
  after commit, which wakes long-polls in this process. On PostgreSQL the keys
  that matter elsewhere (a queue has work, a job ended) are also sent with
  ``pg_notify`` inside the transaction, so other server processes hear them
  exactly at commit (``listener.py``). Log appends and intermediate states
  are not broadcast (``_Tx.notify(local=True)``): each NOTIFY takes a
  cluster-wide lock at commit, and followers on other processes see those
  within the poll interval.
* **Upserts**: ``INSERT ... ON CONFLICT`` of each dialect (:func:`upsert`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from launchplane.server import db
from launchplane.server import tables as t
from launchplane.server.hub import Hub
from launchplane.server.listener import CHANNEL, PgListener
from launchplane.server.problems import NotFound

_NOTIFY = text("SELECT pg_notify(:channel, key) FROM unnest(CAST(:keys AS TEXT[])) AS key")


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


@dataclass
class Tx:
    """One write transaction: its connection and the hub keys to wake at commit."""

    conn: AsyncConnection
    keys: set[str] = field(default_factory=set)
    broadcast: set[str] = field(default_factory=set)

    def notify(self, *keys: str, local: bool = False) -> None:
        """Wake the waiters of ``keys`` at commit; in every server process unless ``local``."""
        self.keys.update(keys)
        if not local:
            self.broadcast.update(keys)


class StoreBase:
    """The engine, its transactions, and the cache of immutable queue config versions."""

    def __init__(self, url: str, hub: Hub | None = None) -> None:
        self.url = url
        self.hub = hub or Hub()
        self._engine: AsyncEngine | None = None
        self._write_lock: asyncio.Lock | contextlib.nullcontext[None] = contextlib.nullcontext()
        self._configs: dict[tuple[str, int], dict[str, Any]] = {}
        self.listener: PgListener | None = None

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
    async def _write(self) -> AsyncIterator[Tx]:
        """One write transaction; waiters are woken only once it has committed."""
        async with self._write_lock, self.engine.connect() as conn:
            await conn.execution_options(**db.WRITE)
            async with conn.begin():
                tx = Tx(conn)
                yield tx
                if tx.broadcast and conn.dialect.name == "postgresql":
                    # Delivered by PostgreSQL at commit, and only if it commits.
                    await conn.execute(_NOTIFY, {"channel": CHANNEL, "keys": sorted(tx.broadcast)})
        self.hub.notify(*tx.keys)

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def _load_config(self, conn: AsyncConnection, name: str, version: int) -> dict[str, Any]:
        """The queue config as it was at ``version``: immutable, so cached for good.

        The lifecycle rules of a job read the version it was resolved
        against (``jobs.queue_version``), which is why every family needs it.
        """
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


async def upsert(
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

"""SQLite for the embedded server, run on the event loop's own thread.

aiosqlite (SQLAlchemy's async SQLite driver) runs every call on a thread of
its own: a statement is four round trips between that thread and the event
loop (cursor, execute, fetch, close), each a queue hand-off and a self-pipe
wake-up. Measured with ``bench/server_calls.py``, those hand-offs cost the
server more CPU than everything else it does for a job: 49 ms of server CPU
per job with the thread, 27 ms without it.

A local SQLite file answers a statement of this server in microseconds, so
:class:`InlineConnection` keeps aiosqlite's interface (SQLAlchemy's dialect
drives it unchanged) and runs each call directly. What that trades away: a
statement blocks the event loop while it runs. That is the right trade here
because the statements are short (single rows by key, pages of at most a
thousand lines), this process's writers never wait on each other (the
store's write lock), and no other process writes the file (one server per
SQLite database; see ``db.py``). Only a write lock held by another process,
such as a ``launchplane db upgrade`` run against a live server, would make a
statement wait, for up to the connection's ``busy_timeout``.

The one large write is a big log batch (up to ~350,000 short lines in one 1
MiB body). The store inserts it in chunks of a few ms and yields between
them (``store/jobs.py``); its COMMIT, which writes every page the batch
dirtied to the WAL (~150 ms for such a batch), runs on a worker thread once a
transaction has inserted :data:`OFFLOAD_ROWS` rows. SQLite releases the GIL
while it commits, so the loop goes on serving; only the awaiting
transaction uses that connection meanwhile. Moving every insert of a big
batch to the thread instead was measured worse (``bench/health_under_load.py``:
batch 5.2 s instead of 2.9 s, /health max unchanged): binding parameters
holds the GIL, and the loop then waits for it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Generator, Sized
from typing import Any

import aiosqlite

OFFLOAD_ROWS = 2_000
"""Rows inserted in one transaction past which its COMMIT (or ROLLBACK) leaves the loop."""


class _InlineCalls:
    """Stands in for aiosqlite's queue to its thread: a call put here runs at once.

    SQLAlchemy's dialect puts calls on that queue itself (to set the
    isolation level), so the queue has to exist and deliver.
    """

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to the awaiting caller, as aiosqlite does
            if future is not None:
                future.set_exception(exc)
        else:
            if future is not None:
                future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection without its thread (see the module docstring)."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _InlineCalls()  # type: ignore[assignment]
        self._rows_written = 0
        """Rows inserted by executemany since the last COMMIT or ROLLBACK."""

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._connection is None:
            raise ValueError("Connection closed")
        name = getattr(fn, "__name__", "")
        if name == "executemany" and len(args) > 1 and isinstance(args[1], Sized):
            self._rows_written += len(args[1])
        elif name in ("commit", "rollback"):
            heavy, self._rows_written = self._rows_written >= OFFLOAD_ROWS, 0
            if heavy:
                return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self) -> Generator[Any, None, InlineConnection]:
        return self._connect().__await__()

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


def connector(path: str) -> Callable[[], InlineConnection]:
    """An ``async_creator`` for ``create_async_engine``: a new inline connection to ``path``."""

    def connect() -> InlineConnection:
        # Not bound to a thread: the event loop serialises every use of a connection.
        return InlineConnection(
            lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        )

    return connect

"""The embedded SQLite driver runs statements on the event loop's thread (sqlite_inline.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from launchplane.server import db

pytestmark = pytest.mark.anyio


async def test_sqlite_statements_run_without_a_driver_thread(tmp_path: Path) -> None:
    before = threading.active_count()
    engine = db.create_engine(f"sqlite:///{tmp_path / 'inline.db'}")
    try:
        async with engine.connect() as conn:
            await conn.execution_options(**db.WRITE)
            async with conn.begin():
                await conn.execute(text("CREATE TABLE t (n INTEGER)"))
                await conn.execute(text("INSERT INTO t VALUES (1), (2)"))
            # aiosqlite would have started one thread per pooled connection by now.
            assert threading.active_count() == before
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
            rows = (await conn.execute(text("SELECT n FROM t ORDER BY n"))).scalars().all()
    finally:
        await engine.dispose()
    assert mode == "wal"
    assert rows == [1, 2]


async def test_a_failed_write_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    """Connections return to the pool without a reset, so a write must end its own transaction."""
    engine = db.create_engine(f"sqlite:///{tmp_path / 'inline.db'}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
        for _ in range(2):
            try:
                async with engine.connect() as conn:
                    await conn.execution_options(**db.WRITE)
                    async with conn.begin():
                        await conn.execute(text("INSERT INTO t VALUES (1)"))
                        await conn.execute(text("INSERT INTO t VALUES (1)"))  # duplicate key
            except Exception as exc:
                assert "UNIQUE" in str(exc)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0
    finally:
        await engine.dispose()

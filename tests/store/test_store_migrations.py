"""Schema migrations: ``launchplane db upgrade`` and the server's start-up policy, per backend."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from kit import subprocess_env
from sqlalchemy import Connection, inspect, text
from storekit import LAUNCHPLANE

from launchplane.server import db
from launchplane.server import tables as t
from launchplane.server.db import SchemaError
from launchplane.server.store import Store
from launchplane.server.tables import metadata

pytestmark = pytest.mark.anyio


def schema_drift(conn: Connection) -> list[Any]:
    """What differs between the database and tables.py (tables, columns, types, indexes)."""
    return compare_metadata(MigrationContext.configure(conn), metadata)


async def inspect_db(url: str) -> tuple[set[str], list[Any], str | None]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            drift = await conn.run_sync(schema_drift)
            revision = await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision()
            )
    finally:
        await engine.dispose()
    return tables, drift, revision


async def migrate_to(url: str, revision: str, *, forget_version: bool = False) -> None:
    """Bring an empty database to an old ``revision``; optionally drop its version table
    (what a database made before migrations existed looks like)."""

    def run(conn: Connection) -> None:
        command.upgrade(db._alembic_config(conn), revision)
        if forget_version:
            conn.execute(text("DROP TABLE alembic_version"))

    engine = db.create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run)
    finally:
        await engine.dispose()


def launchplane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LAUNCHPLANE, *args], capture_output=True, text=True, env=subprocess_env(), timeout=60
    )


async def test_db_upgrade_on_an_empty_database_makes_exactly_the_expected_tables(
    db_url: str,
) -> None:
    done = await anyio.to_thread.run_sync(launchplane, "db", "upgrade", "--db", db_url)
    assert done.returncode == 0, done.stderr
    assert "upgraded from an empty database to revision" in done.stdout
    tables, drift, revision = await inspect_db(db_url)
    assert tables == set(metadata.tables) | {"alembic_version"}
    assert drift == [], "upgrade head must yield exactly what tables.py declares"
    assert revision is not None

    again = await anyio.to_thread.run_sync(launchplane, "db", "upgrade", "--db", db_url)
    assert again.returncode == 0 and f"is up to date (revision {revision})" in again.stdout


async def test_the_server_creates_an_empty_database_at_start(db_url: str) -> None:
    store = Store(db_url)
    await store.open()
    await store.close()
    _, drift, revision = await inspect_db(db_url)
    assert drift == [] and revision is not None


async def test_sqlite_is_upgraded_at_start_even_from_before_migrations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    await migrate_to(url, db.LEGACY_REVISION, forget_version=True)
    store = Store(url)
    await store.open()
    await store.create_queue("q", {}, [])
    await store.close()
    _, drift, revision = await inspect_db(url)
    assert drift == [] and revision is not None and revision != db.LEGACY_REVISION


@pytest.mark.postgres
async def test_postgres_server_refuses_an_old_schema_until_db_upgrade(
    pg_url: str, tmp_path: Path
) -> None:
    await migrate_to(pg_url, db.LEGACY_REVISION)
    refused = await anyio.to_thread.run_sync(
        launchplane, "server", "--db", pg_url, "--port", "0", "--data-dir", str(tmp_path)
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"error: the database schema is at revision {db.LEGACY_REVISION}, this server needs"
    )
    assert "run 'launchplane db upgrade --db URL'" in refused.stderr
    assert "Traceback" not in refused.stderr

    done = await anyio.to_thread.run_sync(launchplane, "db", "upgrade", "--db", pg_url)
    assert done.returncode == 0 and f"from revision {db.LEGACY_REVISION} to" in done.stdout
    store = Store(pg_url)
    await store.open()
    await store.close()


@pytest.mark.postgres
async def test_servers_starting_together_on_an_empty_postgres_migrate_once(pg_url: str) -> None:
    stores = [Store(pg_url) for _ in range(4)]
    with anyio.fail_after(30):  # without the advisory lock they deadlock on CREATE TABLE
        async with anyio.create_task_group() as tasks:
            for store in stores:
                tasks.start_soon(store.open)
    for store in stores:
        await store.close()
    _, drift, _ = await inspect_db(pg_url)
    assert drift == []


async def test_a_schema_from_a_newer_launchplane_is_refused(db_url: str) -> None:
    store = Store(db_url)
    await store.open()
    await store.close()
    engine = db.create_engine(db_url)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    await engine.dispose()
    with pytest.raises(SchemaError, match="revision 9999, which this launchplane does not know"):
        await Store(db_url).open()


def test_unusable_databases_are_one_line_errors(tmp_path: Path) -> None:
    for url, message in (
        ("mysql://root@localhost/x", "error: unsupported database URL 'mysql://root@localhost/x'"),
        ("postgresql://u:secret@127.0.0.1:1/x", "error: cannot open the database postgresql"),
        ("sqlite://", "error: unsupported SQLite URL 'sqlite+aiosqlite://': use sqlite:///PATH"),
        (f"sqlite:///{tmp_path}/x.db?mode=ro", "error: unsupported SQLite URL"),
    ):
        done = launchplane("db", "upgrade", "--db", url)
        assert done.returncode == 1
        assert done.stderr.startswith(message), done.stderr
        assert "secret" not in done.stderr and "Traceback" not in done.stderr


async def test_upgrading_to_lease_log_positions_keeps_each_lease_numbering_on(
    db_url: str,
) -> None:
    """0005: a lease goes on from the last line of its attempt, or the job's count if none."""
    await migrate_to(db_url, "0004")
    now = t.utcnow()
    engine = db.create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                t.queues.insert().values(name="q", config={}, version=1, warnings=[], **at(now))
            )
            job = {"queue": "q", "state": "running", "spec": {}, "overrides": {}}
            job |= {"template_variables": {}, "queue_version": 1, "resolved": {}}
            await conn.execute(
                t.jobs.insert().values(id="j", attempt=2, log_count=3, **job, **at(now))
            )
            for attempt, lease_id in ((1, "l1"), (2, "l2")):
                await conn.execute(
                    t.leases.insert().values(
                        lease_id=lease_id,
                        job_id="j",
                        queue="q",
                        attempt=attempt,
                        agent_id="a",
                        ttl_seconds=60,
                        expires_at=now,
                        active=attempt == 2,
                        created_at=now,
                    )
                )
            for seq, attempt in ((1, 1), (2, 1)):  # attempt 2 has stored nothing yet
                await conn.execute(
                    t.log_lines.insert().values(job_id="j", seq=seq, attempt=attempt, line="x")
                )
    finally:
        await engine.dispose()
    done = await anyio.to_thread.run_sync(launchplane, "db", "upgrade", "--db", db_url)
    assert done.returncode == 0, done.stderr
    engine = db.create_engine(db_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                t.leases.select().with_only_columns(t.leases.c.lease_id, t.leases.c.log_position)
            )
            positions = {row.lease_id: row.log_position for row in rows}
    finally:
        await engine.dispose()
    assert positions == {"l1": 2, "l2": 3}


def at(now: Any) -> dict[str, Any]:
    return {"created_at": now, "updated_at": now}

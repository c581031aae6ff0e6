"""Database engines and schema versions, per backend.

Two backends, told apart by the URL:

* **SQLite** (``sqlite+aiosqlite:///path``), the embedded default: one server
  process, WAL, writes serialised by the store, statements run on the event
  loop's thread (``sqlite_inline.py`` says why). Connections go back to the
  pool without a reset: a read holds no transaction, a write always ends its own.
* **PostgreSQL** (``postgresql+asyncpg://user@host/db``) when one machine is
  not enough: several server processes share the database; claims use
  ``FOR UPDATE SKIP LOCKED``, wake-ups ``LISTEN/NOTIFY`` (``listener.py``).

``postgresql://`` / ``postgres://`` and ``sqlite://`` are accepted and given
their async driver, since that is what people paste.

The schema is versioned with Alembic (``migrations/``). :func:`ensure_schema`
runs when a server starts; :func:`upgrade` is ``launchplane db upgrade``.
Start-up policy:

* SQLite is upgraded automatically: it belongs to this one server, and a user
  of the embedded default expects a new version to just work.
* An empty PostgreSQL database is initialised automatically (first start).
  One at an older revision is refused with a message asking for
  ``launchplane db upgrade``: other servers may still be running on it, so
  the operator decides when its schema changes.
* A database at a revision this code does not know (written by a newer
  launchplane) is refused on both backends.

Alembic is imported inside the functions that need it: the agent never
imports this module, and the server pays for it once at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from launchplane.core import paths
from launchplane.server import sqlite_inline

Backend = Literal["sqlite", "postgresql"]

LEGACY_REVISION = "0001"
"""The schema of servers from before migrations existed; such databases are adopted as it."""
MIGRATION_LOCK = 0x6C61756E6368
"""pg_advisory_xact_lock key: servers starting together migrate one at a time."""
POSTGRES_POOL = {"pool_size": 10, "max_overflow": 20}
"""Per server process. A claim holds a connection only for its short transactions, never
while it long-polls, so this serves hundreds of agents."""

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


class DatabaseError(Exception):
    """The database cannot be used (bad URL, missing driver, unreachable); says why in one line."""


class SchemaError(DatabaseError):
    """The database schema does not fit this server; the message says what to run."""


def normalize_url(url: str) -> str:
    """The async-driver form of ``url``; DatabaseError for a URL of another database."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None
    if parsed is None or parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseError(
            f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    if "+" not in parsed.drivername:
        parsed = parsed.set(drivername=_DRIVERS[parsed.drivername])
    return parsed.render_as_string(hide_password=False)


def backend_of(url: str) -> Backend:
    """Which backend a URL names (anything but PostgreSQL is taken for SQLite here;
    :func:`normalize_url` refuses the others when the engine is made)."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    return "postgresql" if scheme in ("postgresql", "postgres") else "sqlite"


def display_url(url: str | URL) -> str:
    """The URL for messages: the password masked."""
    return make_url(url).render_as_string(hide_password=True)


def create_engine(url: str) -> AsyncEngine:
    """An engine configured for its backend (see the module docstring)."""
    url = normalize_url(url)
    if backend_of(url) == "postgresql":
        try:
            return create_async_engine(
                url,
                **POSTGRES_POOL,
                connect_args={"server_settings": {"application_name": "launchplane-server"}},
            )
        except ImportError:
            raise DatabaseError(
                "PostgreSQL needs the asyncpg driver: pip install 'launchplane[postgres]'"
            ) from None
    database = make_url(url).database
    if not database or database == ":memory:" or make_url(url).query:
        raise DatabaseError(
            f"unsupported SQLite URL {display_url(url)!r}: use sqlite:///PATH "
            "(a file, without ?options; an in-memory database would lose every job at exit)"
        )
    paths.private_file(Path(database))  # 0600, not the umask's 0644 (SQLite would create it)
    engine = create_async_engine(
        url, async_creator=sqlite_inline.connector(database), pool_reset_on_return=None
    )
    event.listen(engine.sync_engine, "connect", _sqlite_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers run beside the writer; busy_timeout waits out other processes.

    ``isolation_level = None`` stops the driver from opening transactions on its
    own (it would skip DDL, so a failed migration could be left half done);
    :func:`_sqlite_begin` opens write transactions instead, exactly where
    SQLAlchemy begins them.
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA busy_timeout=10000",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
    ):
        cursor.execute(pragma)
    cursor.close()


WRITE = {"launchplane_write": True}
"""Execution options of a write transaction: on SQLite it begins IMMEDIATE (see below)."""


def _sqlite_begin(connection: Connection) -> None:
    """A write transaction takes the write lock at once, waiting (busy_timeout) if need be.

    A deferred one that has read first cannot become a writer once another
    connection has committed: SQLite fails it with "database is locked" at
    once, busy_timeout or not. Reads run without a transaction (each
    statement sees the latest commit), which spares them two round trips to
    the driver's thread.
    """
    if connection.get_execution_options().get("launchplane_write", False):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


# -- schema ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaState:
    current: str | None
    """The database's revision; None when it has none (empty, or from before migrations)."""
    head: str
    """The revision this code needs."""
    legacy: bool
    """Tables from before migrations existed, without a revision."""


async def ensure_schema(engine: AsyncEngine) -> SchemaState:
    """Make the schema fit this server at start, or raise SchemaError (module docstring)."""
    return await _migrate(engine, explicit=False)


async def upgrade(url: str) -> SchemaState:
    """``launchplane db upgrade``: bring the database to ``head``; how it was before."""
    engine = create_engine(url)
    try:
        return await _migrate(engine, explicit=True)
    finally:
        await engine.dispose()


async def _migrate(engine: AsyncEngine, *, explicit: bool) -> SchemaState:
    try:
        async with engine.connect() as conn:
            await conn.execution_options(**WRITE)  # before begin(): it decides how to begin
            async with conn.begin():
                if conn.dialect.name == "postgresql":
                    # Transaction-scoped: released at commit, and alembic reads the
                    # version only after it holds the lock.
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                    )
                return await conn.run_sync(_migrate_sync, explicit)
    except (OSError, DBAPIError) as exc:
        # The driver's own message: SQLAlchemy's adds a link and the failing statement.
        cause = getattr(exc, "orig", None) or exc
        raise DatabaseError(f"cannot open the database {display_url(engine.url)}: {cause}") from exc


def _migrate_sync(conn: Connection, explicit: bool) -> SchemaState:
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = _alembic_config(conn)
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    assert head is not None, "launchplane ships at least one migration"
    current = MigrationContext.configure(conn).get_current_revision()
    legacy = current is None and "jobs" in inspect(conn).get_table_names()
    state = SchemaState(current=current, head=head, legacy=legacy)
    if current == head:
        return state
    if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
        raise SchemaError(
            f"the database schema is at revision {current}, which this launchplane does not "
            f"know (it needs {head}): it was upgraded by a newer launchplane; upgrade this one"
        )
    empty = current is None and not legacy
    if not (explicit or empty or conn.dialect.name == "sqlite"):
        raise SchemaError(
            f"the database schema is at revision {current or LEGACY_REVISION}, this server "
            f"needs {head}: run 'launchplane db upgrade --db URL' (servers still running "
            "on this database keep working on the old schema until they are upgraded)"
        )
    if legacy:
        command.stamp(config, LEGACY_REVISION)
    command.upgrade(config, "head")
    return state


def _alembic_config(conn: Connection) -> Any:
    """An Alembic config without an ini file; ``env.py`` migrates through ``conn``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "launchplane.server:migrations")
    config.attributes["connection"] = conn
    return config

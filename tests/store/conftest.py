"""The store conformance suite: the same tests against SQLite and PostgreSQL.

``db_url`` is parametrized over both backends: a SQLite file in the test's
tmp dir, and a fresh PostgreSQL database (``@pytest.mark.postgres``; skipped
locally without ``LAUNCHPLANE_TEST_DATABASE_URL``, a failure in CI). Every
fixture built on it (a bare :class:`Store`, an :class:`EmbeddedServer` and its
clients, the ``submitter`` and ``agent`` of tests/conftest.py) therefore runs
each test twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from storekit import QUEUE, ServerProcess, postgres_database, require_postgres, sqlite_url

from launchplane.server.embedded import EmbeddedServer
from launchplane.server.settings import ServerSettings
from launchplane.server.store import Store

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield sqlite_url(tmp_path)
        return
    require_postgres()
    with postgres_database() as url:
        yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """For tests of PostgreSQL-only behaviour (NOTIFY, several server processes)."""
    require_postgres()
    with postgres_database() as url:
        yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = Store(db_url)
    await store.open()
    await store.create_queue(QUEUE, {"resource": "local-process"}, [])
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def server(db_url: str, tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    settings = ServerSettings(data_dir=tmp_path / "data", db_url=db_url, sweep_interval=0.05)
    async with EmbeddedServer(settings=settings) as srv:
        await srv.ensure_queue(QUEUE, {"resource": "local-process"})
        yield srv


@pytest.fixture
def server_process(db_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """``launchplane server`` in its own process on ``db_url``, as deployed."""
    with ServerProcess(db_url, tmp_path / "server") as srv:
        yield srv

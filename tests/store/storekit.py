"""Helpers of the store conformance suite (fixtures live in conftest.py; shared ones in kit.py).

PostgreSQL comes from ``LAUNCHPLANE_TEST_DATABASE_URL`` (``scripts/services/postgres.sh``
prints it). Every test gets a database of its own, created from the server's
``postgres`` database and dropped afterwards, so tests never see each other's
rows and the suite may run while someone else uses the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from kit import BIN, QUEUE, free_port, require_service, subprocess_env
from sqlalchemy.engine import make_url

from launchplane.server.store import Store

PG_URL = os.environ.get("LAUNCHPLANE_TEST_DATABASE_URL", "")
DB_PREFIX = "lpstore"
LAUNCHPLANE = str(BIN / "launchplane")
STRESS = os.environ.get("LAUNCHPLANE_STRESS") == "1"
"""Opt-in stress sizes (README, "Stress runs")."""


# -- PostgreSQL databases ---------------------------------------------------------------


@functools.cache
def postgres_problem() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can (asked once per session)."""
    if not PG_URL:
        return "LAUNCHPLANE_TEST_DATABASE_URL is not set (scripts/services/postgres.sh prints it)"
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "asyncpg is not installed (pip install -e '.[test]')"
    try:
        asyncio.run(_admin("SELECT 1"))
    except Exception as exc:
        return f"cannot connect to {PG_URL}: {exc}"
    return None


async def _admin(*statements: str) -> list[Any]:
    import asyncpg

    url = make_url(PG_URL).set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False), timeout=5)
    try:
        return [await conn.fetch(statement) for statement in statements]
    finally:
        await conn.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty database for one test; its SQLAlchemy URL."""
    _drop_leftovers()
    name = f"{DB_PREFIX}_{os.getpid()}_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _drop_leftovers() -> None:
    """Databases of test sessions that were killed before they could drop them."""
    (rows,) = asyncio.run(
        _admin(f"SELECT datname FROM pg_database WHERE datname LIKE '{DB_PREFIX}\\_%'")
    )
    for row in rows:
        pid = int(row["datname"].split("_")[1])
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)'))


def require_postgres() -> None:
    problem = postgres_problem()
    require_service("PostgreSQL", problem is None, problem or "")


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'launchplane.db'}"


# -- store and HTTP helpers -------------------------------------------------------------


async def submit_many(store: Store, count: int, queue: str = QUEUE) -> list[str]:
    """Queue ``count`` empty jobs straight into the store (oldest first); their ids."""
    version = (await store.get_queue(queue)).version
    ids = []
    for _ in range(count):
        job, _ = await store.submit_job(
            queue=queue,
            queue_version=version,
            spec={},
            overrides=[],
            template_variables={},
            resolved={},
        )
        ids.append(job.id)
    return ids


class ServerProcess:
    """``launchplane server`` as users run it, on a fixed port so it can be restarted."""

    def __init__(self, db_url: str, data_dir: Path, *args: str, port: int | None = None) -> None:
        self.db_url = db_url
        self.data_dir = data_dir
        self.args = args
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [LAUNCHPLANE, "server", "--port", str(self.port), "--db", self.db_url]
        command += ["--data-dir", str(self.data_dir), "--log-level", "warning", *self.args]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, env=subprocess_env(), start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"server did not start: {self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

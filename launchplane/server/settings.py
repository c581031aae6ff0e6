"""Server settings: one small object passed to the app, the store and the sweeper.

Plain dataclass rather than environment-driven settings: the CLI and
``EmbeddedServer`` build it explicitly, and tests override single fields
(a fast sweep interval, a small body limit) without touching the process
environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from launchplane.core import paths
from launchplane.core.limits import MAX_BODY_BYTES
from launchplane.server.db import backend_of
from launchplane.server.limits import (
    BODY_TIMEOUT_SECONDS,
    HEADER_TIMEOUT_SECONDS,
    IDLE_TIMEOUT_SECONDS,
)

DB_FILE = "launchplane.db"
DEFAULT_POLL_INTERVAL = 2.0


@dataclass
class ServerSettings:
    data_dir: Path
    db_url: str | None = None
    """SQLAlchemy async URL; ``None`` means the SQLite file ``launchplane.db`` in ``data_dir``."""
    max_body_bytes: int = MAX_BODY_BYTES
    """Request bodies above this get 413 before any parsing. Agents size their log batches
    under the default (``launchplane.core.limits``) and re-split a batch a smaller limit
    refuses, so lowering it costs calls, never lines."""
    sweep_interval: float | None = None
    """Seconds between expired-lease sweeps; ``None``: min(5, shortest lease TTL / 3)."""
    max_wait_seconds: float = 120.0
    """Upper bound for the ``wait`` of long-poll calls (claim, log follow)."""
    poll_interval: float | None = None
    """PostgreSQL only: the longest a waiting claim or log follow goes without re-checking
    the database, in case a NOTIFY was lost (``None``: 2 s). SQLite needs none: every
    change is made by this process, which wakes its waiters directly."""
    header_timeout: float = HEADER_TIMEOUT_SECONDS
    """Seconds a connection has to send a complete request head (``limits.py``)."""
    body_timeout: float = BODY_TIMEOUT_SECONDS
    """Seconds a request has, after its head, to send its whole body (``limits.py``)."""
    idle_timeout: float = IDLE_TIMEOUT_SECONDS
    """Seconds a keep-alive connection may wait between requests before it is closed."""
    max_connections: int | None = None
    """Open client connections at most; ``None``: what the descriptor limit allows."""
    plugins: tuple[str, ...] = ()
    """``--plugins`` modules (``no:NAME`` blocks one) for the submit-time checks: the
    server validates a job's ``resource_args`` with its runner's model when that runner is
    installed here. Never instantiated to launch anything."""

    @classmethod
    def default(cls) -> ServerSettings:
        return cls(data_dir=paths.data_dir())

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite+aiosqlite:///{self.data_dir / DB_FILE}"

    @property
    def hub_poll_interval(self) -> float | None:
        """What caps a long-poll's wait between database checks (see ``hub.py``)."""
        if backend_of(self.database_url) == "sqlite":
            return None
        return self.poll_interval if self.poll_interval is not None else DEFAULT_POLL_INTERVAL

    @property
    def admin_token_path(self) -> Path:
        return paths.admin_token_path(self.data_dir)

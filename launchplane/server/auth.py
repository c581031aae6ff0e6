"""Bearer tokens: creation, hashing, the admin bootstrap token and role checks.

Only a token's SHA-256 hash is stored; the token itself is shown once.
Lookups go by the hash of the presented token, never by the token: whatever
timing reveals is about the hash of the caller's own guess, which says
nothing about any stored token (the usual reason for constant-time
comparison does not arise).

Every request looks its token up in the database (one indexed read): a token
revoked, expired or deleted there is refused on the very next request, by
every server process sharing the database, without a restart or a message
between servers. (A cache would need exactly such a message, and a
PostgreSQL NOTIFY arrives after the commit, not with it.)
``bench/dispatch_latency.py`` measured the cost; docs/security.md has it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from launchplane.core import paths
from launchplane.server import tables as t
from launchplane.server.problems import Forbidden, Unauthorized
from launchplane.server.store import Store, TokenInfo

log = logging.getLogger(__name__)

TOKEN_PREFIX = "lp_"
ALL_QUEUES = "*"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's role, name and (for agents) the queues it may serve."""

    token_id: int
    role: str
    name: str | None
    queues: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def require(self, *roles: str) -> None:
        """Admins may do everything; others only what their role allows."""
        if not self.is_admin and self.role not in roles:
            raise Forbidden(f"a {self.role} token may not do this (needs {' or '.join(roles)})")

    @property
    def all_queues(self) -> bool:
        """No queue restriction applies (admins, and agent tokens for ``*``)."""
        return self.role != "agent" or ALL_QUEUES in self.queues

    @property
    def holder(self) -> int | None:
        """The token agent ids are bound to (``store/leases.py``): an agent token's id;
        ``None`` for admins, who bind nothing and may act as any agent."""
        return self.token_id if self.role == "agent" else None

    def serves(self, queue: str) -> bool:
        """An agent token serves only the queues it names."""
        return self.all_queues or queue in self.queues

    def require_queue(self, queue: str) -> None:
        if not self.serves(queue):
            raise Forbidden(f"this agent token may not serve queue '{queue}'")


class TokenResolver:
    """Resolves bearer tokens to principals, reading the database on every request."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def principal(self, authorization: str | None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
        info = await self._store.find_token(hash_token(token.strip()))
        if info is None:
            raise Unauthorized("invalid token")
        refused = refusal(info, t.utcnow())
        if refused is not None:
            raise Unauthorized(refused)
        return Principal(info.id, info.role, info.name, info.queues)


def refusal(info: TokenInfo, now: datetime) -> str | None:
    """Why a known token may no longer be used (revoked, expired), or ``None``.

    Names the token by id and label, never by its value.
    """
    label = f"token {info.id}" + (f" ({info.name!r})" if info.name else "")
    fix = "ask an admin for a new one"
    if info.revoked_at is not None:
        return f"{label} was revoked at {info.revoked_at:%Y-%m-%d %H:%M:%S} UTC; {fix}"
    if info.expires_at is not None and info.expires_at <= now:
        return f"{label} expired at {info.expires_at:%Y-%m-%d %H:%M:%S} UTC; {fix}"
    return None


async def ensure_admin_token(store: Store, path: Path) -> str:
    """The admin token in ``path``, created (mode 0600) and registered on first start.

    A token file left by an earlier server is registered again if this
    database does not know it (a new ``--db`` with the same data directory),
    so the local CLI keeps working. A file that is not as this function writes
    it (``paths.token_file_problem``: say a 0644 file someone else left) is
    refused: whoever could read or plant it would be admin.
    """
    token = _read_token(path)
    if token is None:
        paths.private_dir(path.parent)
        token = new_token()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            # Another server on the same data directory won the race; use its token.
            token = _read_token(path)
            if token is None:
                raise RuntimeError(f"admin token file {path} is empty") from None
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(token + "\n")
    info = await store.find_token(hash_token(token))
    if info is None:
        await store.add_token(hash_token(token), "admin", "admin (local)", [])
    elif (refused := refusal(info, t.utcnow())) is not None:
        log.warning("the local admin token in %s cannot be used: %s", path, refused)
    return token


class UnsafeTokenFile(RuntimeError):
    """The admin-token file is not as the server writes it; the message names the fix."""


def _read_token(path: Path) -> str | None:
    problem = paths.token_file_problem(path)
    if problem is not None:
        raise UnsafeTokenFile(problem)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None

"""Bearer tokens: creation, hashing, the admin bootstrap token and role checks.

Only a token's SHA-256 hash is stored; the token itself is shown once.
Lookups go by the hash of the presented token, never by the token: whatever
timing reveals is about the hash of the caller's own guess, which says
nothing about any stored token (the usual reason for constant-time
comparison does not arise).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from launchplane.server.problems import Forbidden, Unauthorized
from launchplane.server.store import Store, TokenInfo

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

    def serves(self, queue: str) -> bool:
        """An agent token serves only the queues it names."""
        return self.all_queues or queue in self.queues

    def require_queue(self, queue: str) -> None:
        if not self.serves(queue):
            raise Forbidden(f"this agent token may not serve queue '{queue}'")


class TokenCache:
    """Resolves bearer tokens, remembering hits: tokens are never changed once created."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._known: dict[str, TokenInfo] = {}

    async def principal(self, authorization: str | None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
        digest = hash_token(token.strip())
        info = self._known.get(digest)
        if info is None:
            info = await self._store.find_token(digest)
            if info is None:
                raise Unauthorized("invalid token")
            self._known[digest] = info
        return Principal(info.id, info.role, info.name, info.queues)


async def ensure_admin_token(store: Store, path: Path) -> str:
    """The admin token in ``path``, created (mode 0600) and registered on first start.

    A token file left by an earlier server is registered again if this
    database does not know it (a new ``--db`` with the same data directory),
    so the local CLI keeps working.
    """
    token = _read_token(path)
    if token is None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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
    if await store.find_token(hash_token(token)) is None:
        await store.add_token(hash_token(token), "admin", "admin (local)", [])
    return token


def _read_token(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None

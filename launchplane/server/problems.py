"""Errors the server answers with, each carrying its HTTP status.

The store and the routes raise these; one exception handler in ``app.py``
renders every one of them in the API's single error format
(``{"detail": {"message", "errors": [{"path", "message"}]}}``).
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Sequence


class Problem(Exception):
    status = 500

    def __init__(self, message: str, errors: Sequence[dict[str, str]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.errors = list(errors)

    def body(self) -> dict[str, object]:
        return {"detail": {"message": self.message, "errors": self.errors}}


class Unauthorized(Problem):
    status = 401


class Forbidden(Problem):
    status = 403


class NotFound(Problem):
    status = 404


class Conflict(Problem):
    status = 409


class StaleLease(Conflict):
    """The lease expired, was released or belongs to another attempt: stop that workload."""


class Invalid(Problem):
    status = 422


class StorageFull(Problem):
    """The database's disk (or quota) is full: nothing can be written until space is freed.

    507 Insufficient Storage, not 500: it is not a bug, the request was not
    stored, and the same request succeeds once an operator frees space. The
    clients retry 5xx answers to idempotent calls, so an agent holds its
    events and completion until then rather than losing them.
    """

    status = 507


DISK_FULL_SQLSTATE = "53100"
"""PostgreSQL's ``disk_full`` (asyncpg's DiskFullError; SQLAlchemy's wrapper copies it)."""
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def storage_full(exc: BaseException) -> StorageFull | None:
    """The 507 for an error that says the disk is full, looking through its causes; else None.

    SQLite says so with ``SQLITE_FULL`` ("database or disk is full"), PostgreSQL
    with SQLSTATE 53100, a file write with ENOSPC/EDQUOT; SQLAlchemy wraps
    the driver's error (``.orig``) and asyncpg's adapter chains the original.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _says_full(current):
            return StorageFull(
                "the server's storage is full: nothing was stored; "
                "retry once an operator has freed disk space"
            )
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else current.__cause__ or current.__context__
        )
    return None


def _says_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return getattr(exc, "sqlstate", None) == DISK_FULL_SQLSTATE

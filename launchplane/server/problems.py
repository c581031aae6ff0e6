"""Errors the server answers with, each carrying its HTTP status.

The store and the routes raise these; one exception handler in ``app.py``
renders every one of them in the API's single error format
(``{"detail": {"message", "errors": [{"path", "message"}]}}``).
"""

from __future__ import annotations

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

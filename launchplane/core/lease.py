"""A lease as the agent holds it: one claimed job, parsed once from the server's answer.

:meth:`LaunchplaneClient.claim <launchplane.core.client.LaunchplaneClient.claim>`
and :meth:`~launchplane.core.client.LaunchplaneClient.register_agent` return
:class:`Lease` objects; the agent passes them around instead of the raw
answer. ``resolved`` is the job exactly as the server resolved it at submit,
against the queue config version ``queue_version``: the agent launches it as
it is, adding only launch-time facts (macros, secret values, the image), and
never resolves it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from launchplane.core.errors import ConfigError, from_validation_error
from launchplane.core.spec import ResolvedJob

LATE_LINES_WINDOW = timedelta(days=7)
"""How long after a lease's last expiry time the server takes its late lines
(``POST /leases/{id}/late-logs``): output an agent had not sent before it ended."""


class Lease(BaseModel):
    """One claimed job (``POST /queues/{name}/claim``, docs/api.md).

    Unknown keys of the answer are ignored, so a newer server can add some.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    lease_id: str
    job_id: str
    attempt: int
    """1 for the first try; a re-queued job's next claim has the next attempt."""
    queue: str
    queue_version: int
    """The queue config version ``resolved`` was resolved against (kept by every attempt)."""
    resolved: ResolvedJob
    lease_ttl_seconds: float
    """The lease expires this long after the last heartbeat that renewed it."""
    expires_at: datetime
    cancel_requested: bool = False
    """A cancel came before the claim: the agent stops the job at once."""
    log_count: int = 0
    """Where the lease's log numbering stands: the agent numbers its next line log_count + 1
    (at a claim, the lines in the job's log; for a lease handed back, its last line's number)."""

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Lease:
        """Parse a lease of the API; :class:`UnreadableLease` says why one does not parse."""
        try:
            return cls.model_validate(answer)
        except ValidationError as exc:
            raise UnreadableLease(
                answer.get("lease_id"),
                answer.get("job_id"),
                ConfigError(from_validation_error(exc, model=cls)),
            ) from None


class UnreadableLease(Exception):
    """The server handed out a lease this agent cannot read (a newer server's job format).

    ``lease_id`` and ``job_id`` are what could be read of it (``None`` if not
    even those), so the agent can fail that job with the reason instead of
    leaving it claimed.
    """

    def __init__(self, lease_id: Any, job_id: Any, problem: ConfigError) -> None:
        self.lease_id = lease_id if isinstance(lease_id, str) else None
        self.job_id = job_id if isinstance(job_id, str) else None
        self.problem = problem
        super().__init__(f"this agent cannot read the lease the server sent: {problem}")

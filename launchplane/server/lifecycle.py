"""The rules of a job's life on the queue server, with no SQL.

The store (``server/store/``) reads the rows involved, asks a function here
what happens next, and writes the answer in the same transaction. Keeping
the rules apart from the queries means they can be read in one place and
tested without a database (tests/server/test_lifecycle.py), and the SQL
only has to get the *writing* right.

The life of a job (state names: :mod:`launchplane.core.states`)::

    queued --claim--> claimed -> resolving -> building -> running --> succeeded
      ^  \\                     (active: an agent holds a lease)    \\-> failed
      |   \\--cancel--> cancelled                                    \\-> cancelled
      \\--- lease expired / released / retried (attempt + 1 at the next claim)

* A claim starts a new attempt (``attempt + 1``). ``max_attempts`` of the
  queue and ``retry.max_attempts`` count every attempt, whatever ended the
  previous ones.
* An agent that stops heartbeating loses its lease ("agent lost"): the job is
  queued again, after the retry policy's backoff if the queue has one, until
  it has used ``max_attempts`` attempts; then it fails as ``agent lost``.
* An agent that gives a job back (release: it is shutting down) has it
  queued again at once; that does not count against anything but the attempt.
* A reported failure is retried only under the queue's ``retry`` policy
  (:func:`retry`).
* A pending cancel wins over every re-queue: the job ends ``cancelled``.

Every rule reads the queue config *version the job was resolved against*
(``jobs.queue_version``), never the queue's current config: a job keeps the
version it was submitted with for all its attempts (docs/configuration.md,
"Queue versions").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from launchplane.core.spec import QueueConfig, RetryPolicy
from launchplane.core.states import (
    ACTIVE_STATES,
    CANCELLED,
    CLAIMED,
    FAILED,
    FINAL_STATES,
    JOB_STATES,
    QUEUED,
)

DEFAULT_LEASE_TTL = float(QueueConfig.model_fields["lease_ttl_seconds"].default)
DEFAULT_MAX_ATTEMPTS = int(QueueConfig.model_fields["max_attempts"].default)
AGENT_LOST = "agent lost"

_NEXT: Mapping[str, frozenset[str]] = {
    QUEUED: frozenset({CLAIMED, CANCELLED}),
    # An agent reports the stages it enters, in any order (a re-adopting agent
    # reports "resolving" again for a job that was "running").
    **{state: ACTIVE_STATES | FINAL_STATES | {QUEUED} for state in ACTIVE_STATES},
    **{state: frozenset() for state in FINAL_STATES},
}


class JobFacts(Protocol):
    """What the rules read of a job; a row of the ``jobs`` table has these attributes."""

    @property
    def state(self) -> str: ...

    @property
    def attempt(self) -> int: ...

    @property
    def cancel_requested(self) -> bool: ...


@dataclass(frozen=True)
class Requeue:
    """Put the job back on its queue, claimable again ``backoff`` seconds from now."""

    reason: str
    backoff: float = 0.0


@dataclass(frozen=True)
class End:
    """End the job now in ``state``; ``event_reason`` (default ``reason``) goes to its event."""

    state: str
    reason: str
    event_reason: str | None = None


@dataclass(frozen=True)
class FlagCancel:
    """An active job: tell its agent (at its next heartbeat) to stop it."""

    reason: str = "cancel requested"


def may_follow(current: str, new: str) -> bool:
    """Whether a job in ``current`` may move to ``new`` (see the module docstring)."""
    return new in _NEXT.get(current, frozenset())


def preceding(new: str) -> tuple[str, ...]:
    """The states a job may be in to move to ``new``, in lifecycle order."""
    return tuple(state for state in JOB_STATES if may_follow(state, new))


# -- the queue config's say (of the version the job was resolved against) -----------


def lease_ttl(config: Mapping[str, Any]) -> float:
    """Seconds a lease lives without a heartbeat."""
    value = config.get("lease_ttl_seconds")
    return float(value) if isinstance(value, int | float) and value > 0 else DEFAULT_LEASE_TTL


def max_attempts(config: Mapping[str, Any]) -> int:
    """Attempts a job may use before losing its agent fails it."""
    return int(config.get("max_attempts") or DEFAULT_MAX_ATTEMPTS)


def retry_policy(config: Mapping[str, Any]) -> RetryPolicy | None:
    """The queue's ``retry`` policy; one that does not parse (a template left in it) is none."""
    raw = config.get("retry")
    if raw is None:
        return None
    try:
        return RetryPolicy.model_validate(raw)
    except ValidationError:
        return None


def retry(
    config: Mapping[str, Any], state: str, infrastructure: bool, job: JobFacts
) -> tuple[RetryPolicy, str] | None:
    """The policy and the kind of failure when a reported outcome is retried, else ``None``.

    Only failures are retried: an infrastructure failure (the agent says so:
    image pull, eviction, a node that went away) whenever the queue has a
    ``retry`` policy, a failure of the user's code only when the policy sets
    ``include_user_failures``; a cancelled job never. ``retry.max_attempts``
    counts every attempt of the job, lost-agent re-queues included.
    """
    policy = retry_policy(config)
    if policy is None or state != FAILED or job.cancel_requested:
        return None
    if job.attempt >= policy.max_attempts:
        return None
    if infrastructure:
        return policy, "an infrastructure failure"
    if policy.include_user_failures:
        return policy, "a failure"
    return None


# -- what happens next ----------------------------------------------------------------


def on_cancel_request(job: JobFacts) -> End | FlagCancel | None:
    """A user cancels: a queued job ends at once, an active one is flagged for its agent.

    ``None``: nothing to do (the job is final, or its cancel is already pending).
    """
    if job.state == QUEUED:
        return End(CANCELLED, "cancelled before it started", event_reason="cancelled by user")
    if job.state in ACTIVE_STATES and not job.cancel_requested:
        return FlagCancel()
    return None


def on_release(job: JobFacts, reason: str | None) -> Requeue | End:
    """The agent gives the job back (it is shutting down): queued again at once."""
    if job.cancel_requested:
        return End(CANCELLED, "cancelled")
    return Requeue(f"released by agent: {reason}" if reason else "released by agent")


def on_lease_expired(
    job: JobFacts, lease_attempt: int, config: Mapping[str, Any]
) -> Requeue | End | None:
    """The agent of ``lease_attempt`` stopped heartbeating; ``None`` if the job moved on."""
    if job.state in FINAL_STATES or job.attempt != lease_attempt:
        return None
    if job.cancel_requested:
        return End(CANCELLED, f"cancelled ({AGENT_LOST})")
    allowed = max_attempts(config)
    if job.attempt >= allowed:
        return End(FAILED, AGENT_LOST)
    policy = retry_policy(config)
    return Requeue(
        f"lease expired: {AGENT_LOST} (attempt {job.attempt} of {allowed})",
        backoff=policy.backoff_seconds if policy is not None else 0.0,
    )


def on_completion(
    job: JobFacts, config: Mapping[str, Any], state: str, infrastructure: bool
) -> Requeue | None:
    """The agent reports the end: ``Requeue`` when the retry policy runs it again, else
    ``None`` (the job takes the reported state)."""
    decided = retry(config, state, infrastructure, job)
    if decided is None:
        return None
    policy, what = decided
    return Requeue(
        f"retrying after {what} (attempt {job.attempt} of {policy.max_attempts})",
        backoff=policy.backoff_seconds,
    )

"""The job lifecycle rules on their own: no database, no server (``server/lifecycle.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import get_args

import pytest

from launchplane.core import states
from launchplane.server import lifecycle
from launchplane.server.lifecycle import End, FlagCancel, Requeue
from launchplane.server.schemas import ActiveState, FinalState, JobState


@dataclass(frozen=True)
class Facts:
    state: str = "running"
    attempt: int = 1
    cancel_requested: bool = False


# -- state names ----------------------------------------------------------------------


def test_the_api_schema_names_exactly_the_shared_states() -> None:
    assert get_args(JobState) == states.JOB_STATES
    assert set(get_args(ActiveState)) == states.ACTIVE_STATES
    assert set(get_args(FinalState)) == states.FINAL_STATES
    assert states.ACTIVE_STATES | states.FINAL_STATES | {states.QUEUED} == set(states.JOB_STATES)


def test_the_rules_import_no_sql() -> None:
    probe = (
        "import json, sys\n"
        "import launchplane.server.lifecycle\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'"
        " or m.startswith('launchplane.server.store'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        ("queued", "claimed", True),
        ("queued", "cancelled", True),
        ("queued", "running", False),
        ("claimed", "resolving", True),
        ("running", "resolving", True),  # a re-adopting agent reports its stages again
        ("building", "queued", True),  # lost agent, release, retry
        ("running", "failed", True),
        ("succeeded", "queued", False),
        ("cancelled", "running", False),
        ("failed", "failed", False),
    ],
)
def test_which_state_may_follow_which(current: str, new: str, allowed: bool) -> None:
    assert lifecycle.may_follow(current, new) is allowed


def test_an_agent_event_may_only_move_an_active_job() -> None:
    assert lifecycle.preceding("running") == ("claimed", "resolving", "building", "running")
    assert "queued" not in lifecycle.preceding("running")
    assert not set(lifecycle.preceding("running")) & states.FINAL_STATES


# -- the queue config's say -----------------------------------------------------------


def test_lease_ttl_and_max_attempts_fall_back_to_the_queue_defaults() -> None:
    assert lifecycle.lease_ttl({}) == lifecycle.DEFAULT_LEASE_TTL == 60.0
    assert lifecycle.lease_ttl({"lease_ttl_seconds": 0.5}) == 0.5
    assert lifecycle.lease_ttl({"lease_ttl_seconds": "{{ttl}}"}) == 60.0
    assert lifecycle.max_attempts({}) == lifecycle.DEFAULT_MAX_ATTEMPTS == 3
    assert lifecycle.max_attempts({"max_attempts": 5}) == 5


def test_a_retry_policy_that_does_not_parse_is_none() -> None:
    assert lifecycle.retry_policy({}) is None
    assert lifecycle.retry_policy({"retry": {"max_attempts": "{{n}}"}}) is None
    policy = lifecycle.retry_policy({"retry": {"max_attempts": 2, "backoff_seconds": 1.5}})
    assert policy is not None and (policy.max_attempts, policy.backoff_seconds) == (2, 1.5)


def test_only_failures_are_retried_and_user_failures_only_when_asked() -> None:
    config = {"retry": {"max_attempts": 3}}
    assert lifecycle.retry(config, "failed", True, Facts(attempt=1)) is not None
    assert lifecycle.retry(config, "failed", False, Facts(attempt=1)) is None
    assert lifecycle.retry(config, "cancelled", True, Facts(attempt=1)) is None
    assert lifecycle.retry(config, "succeeded", True, Facts(attempt=1)) is None
    assert lifecycle.retry({}, "failed", True, Facts(attempt=1)) is None
    assert lifecycle.retry(config, "failed", True, Facts(attempt=1, cancel_requested=True)) is None
    users = {"retry": {"max_attempts": 3, "include_user_failures": True}}
    decided = lifecycle.retry(users, "failed", False, Facts(attempt=1))
    assert decided is not None and decided[1] == "a failure"


# -- what happens next ----------------------------------------------------------------


def test_a_completion_is_requeued_while_the_retry_policy_has_attempts_left() -> None:
    config = {"retry": {"max_attempts": 2, "backoff_seconds": 0.25}}
    assert lifecycle.on_completion(Facts(attempt=1), config, "failed", True) == Requeue(
        "retrying after an infrastructure failure (attempt 1 of 2)", backoff=0.25
    )
    assert lifecycle.on_completion(Facts(attempt=2), config, "failed", True) is None
    assert lifecycle.on_completion(Facts(attempt=1), config, "succeeded", False) is None


def test_an_expired_lease_requeues_until_max_attempts_then_the_agent_is_lost() -> None:
    config = {"max_attempts": 2}
    assert lifecycle.on_lease_expired(Facts(attempt=1), 1, config) == Requeue(
        "lease expired: agent lost (attempt 1 of 2)"
    )
    assert lifecycle.on_lease_expired(Facts(attempt=2), 2, config) == End("failed", "agent lost")


def test_an_expired_lease_waits_the_retry_backoff() -> None:
    config = {"retry": {"max_attempts": 3, "backoff_seconds": 4}}
    decision = lifecycle.on_lease_expired(Facts(attempt=1), 1, config)
    assert decision == Requeue("lease expired: agent lost (attempt 1 of 3)", backoff=4.0)


def test_an_expired_lease_of_a_job_that_moved_on_changes_nothing() -> None:
    assert lifecycle.on_lease_expired(Facts(state="succeeded"), 1, {}) is None
    assert lifecycle.on_lease_expired(Facts(attempt=2), 1, {}) is None  # a later attempt runs


def test_a_pending_cancel_wins_over_every_requeue() -> None:
    pending = Facts(cancel_requested=True, attempt=1)
    assert lifecycle.on_lease_expired(pending, 1, {}) == End("cancelled", "cancelled (agent lost)")
    assert lifecycle.on_release(pending, "shutting down") == End("cancelled", "cancelled")


def test_a_release_requeues_at_once_with_the_agents_reason() -> None:
    assert lifecycle.on_release(Facts(), "agent shutting down") == Requeue(
        "released by agent: agent shutting down"
    )
    assert lifecycle.on_release(Facts(), None) == Requeue("released by agent")


def test_a_cancel_ends_a_queued_job_and_flags_an_active_one_once() -> None:
    assert lifecycle.on_cancel_request(Facts(state="queued", attempt=0)) == End(
        "cancelled", "cancelled before it started", event_reason="cancelled by user"
    )
    assert lifecycle.on_cancel_request(Facts(state="building")) == FlagCancel()
    assert lifecycle.on_cancel_request(Facts(state="running", cancel_requested=True)) is None
    assert lifecycle.on_cancel_request(Facts(state="failed")) is None

"""The names of a job's states, shared by the client, the server and the agent.

A job is ``queued`` until an agent claims it, then *active* (``claimed``,
``resolving``, ``building``, ``running``: the agent reports each stage it
enters) and finally ``succeeded``, ``failed`` or ``cancelled``. A job that
loses its agent, or that its queue's retry policy runs again, goes back to
``queued``. Which state may follow which is the server's rule
(``launchplane.server.lifecycle``); this module only names them.

Plain strings, not an enum: they travel as JSON and are stored as text, and a
caller compares them with what an API answer holds (``job["state"]``).
A run's own states (what a runner reports) are
:class:`launchplane.core.interfaces.RunState`.
"""

from __future__ import annotations

from typing import Final

QUEUED: Final = "queued"
CLAIMED: Final = "claimed"
RESOLVING: Final = "resolving"
BUILDING: Final = "building"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"

ACTIVE_STATES: Final = frozenset({CLAIMED, RESOLVING, BUILDING, RUNNING})
"""A job in one of these has a live lease: an agent holds it."""

FINAL_STATES: Final = frozenset({SUCCEEDED, FAILED, CANCELLED})
"""A job in one of these never changes again."""

JOB_STATES: Final = (QUEUED, CLAIMED, RESOLVING, BUILDING, RUNNING, SUCCEEDED, FAILED, CANCELLED)
"""Every state, in the order a job passes through them."""

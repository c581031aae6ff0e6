"""Wake-ups for long-poll requests (claims, log follows).

A claim that finds no job, or a log follower that has read everything, waits
on a key (``queue:<name>``, ``job:<id>``) instead of polling the database. The
store calls :meth:`Hub.notify` after committing a change, so pickup latency
is one event-loop hop rather than a poll interval.

Callers hold the key's :class:`Waiter` (``with hub.watch(key) as waiter``)
*before* checking the database and wait on it afterwards; a notification in
between is therefore never lost. A key's waiter lives only while some request
holds it: the last one to leave - notified, timed out, refused (404 for a job
that does not exist), cancelled or hung up - removes it, so a flood of reads
of keys that are never notified leaves nothing behind.

Across server processes (PostgreSQL) the store also sends the keys with
``NOTIFY`` and each process's :class:`~launchplane.server.listener.PgListener`
feeds them into its hub. As a safety net, ``poll_interval`` caps every wait:
a waiter then re-checks the database at least that often, so a lost
notification or a dead listener connection delays a pickup but never strands
it. The callers' loops already re-check after every wake-up, so an early
return is just one more check.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import anyio


class Waiter:
    """One generation of a key: set once by the next notification (or by close)."""

    __slots__ = ("_event", "_holders", "_poll_interval")

    def __init__(self, poll_interval: float | None) -> None:
        self._event = asyncio.Event()
        self._poll_interval = poll_interval
        self._holders = 0

    async def wait(self, timeout: float) -> bool:
        """True when notified within ``timeout`` seconds (at most the hub's poll interval)."""
        if self._poll_interval is not None:
            timeout = min(timeout, self._poll_interval)
        with anyio.move_on_after(max(timeout, 0.0)):
            await self._event.wait()
        return self._event.is_set()


class Hub:
    def __init__(self, poll_interval: float | None = None) -> None:
        self.poll_interval = poll_interval
        """None: every change is notified in this process (SQLite), no polling needed."""
        self._waiters: dict[str, Waiter] = {}
        self.closed = False

    @contextlib.contextmanager
    def watch(self, key: str) -> Iterator[Waiter]:
        """The current waiter of ``key``, held until the block ends however it ends."""
        waiter = self._waiters.get(key)
        if waiter is None:
            waiter = self._waiters[key] = Waiter(self.poll_interval)
            if self.closed:
                waiter._event.set()
        waiter._holders += 1
        try:
            yield waiter
        finally:
            waiter._holders -= 1
            # A notified waiter is gone from the table already, maybe replaced by a newer one.
            if not waiter._holders and self._waiters.get(key) is waiter:
                del self._waiters[key]

    def waiting(self, key: str) -> bool:
        """Whether a long-poll is waiting on ``key`` now (tests use it to sequence chaos)."""
        return key in self._waiters

    def waiter_count(self) -> int:
        """How many keys are being waited on: at most the long-polls in flight."""
        return len(self._waiters)

    def notify(self, *keys: str) -> None:
        for key in keys:
            waiter = self._waiters.pop(key, None)
            if waiter is not None:
                waiter._event.set()

    def notify_all(self) -> None:
        """Wake every waiter to re-check (notifications may have been missed meanwhile)."""
        self.notify(*list(self._waiters))

    def close(self) -> None:
        """Release every long-poll at once so that a shutdown never waits for them."""
        self.closed = True
        self.notify_all()


def queue_key(queue: str) -> str:
    return f"queue:{queue}"


def job_key(job_id: str) -> str:
    return f"job:{job_id}"

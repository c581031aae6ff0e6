"""In-process wake-ups for long-poll requests.

A claim that finds no job, or a log follower that has read everything, waits
on a key (``queue:<name>``, ``job:<id>``) instead of polling the database. The
store calls :meth:`Hub.notify` after committing a change, so pickup latency
is one event-loop hop rather than a poll interval.

Callers take the key's :class:`Waiter` *before* checking the database and wait
on it afterwards; a notification in between is therefore never lost.

This only wakes requests served by this process. A multi-process deployment
on PostgreSQL would add LISTEN/NOTIFY behind the same two methods.
"""

from __future__ import annotations

import asyncio

import anyio


class Waiter:
    """One generation of a key: set once by the next notification (or by close)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """True when notified within ``timeout`` seconds."""
        with anyio.move_on_after(max(timeout, 0.0)):
            await self._event.wait()
        return self._event.is_set()


class Hub:
    def __init__(self) -> None:
        self._waiters: dict[str, Waiter] = {}
        self.closed = False

    def waiter(self, key: str) -> Waiter:
        waiter = self._waiters.get(key)
        if waiter is None:
            waiter = self._waiters[key] = Waiter()
            if self.closed:
                waiter._event.set()
        return waiter

    def notify(self, *keys: str) -> None:
        for key in keys:
            waiter = self._waiters.pop(key, None)
            if waiter is not None:
                waiter._event.set()

    def close(self) -> None:
        """Release every long-poll at once so that a shutdown never waits for them."""
        self.closed = True
        self.notify(*list(self._waiters))


def queue_key(queue: str) -> str:
    return f"queue:{queue}"


def job_key(job_id: str) -> str:
    return f"job:{job_id}"

"""The agent's calls about one lease, in two ordered lanes: events, and log lines.

Server calls for one lease go through a :class:`LeaseOutbox`: events in order,
and log lines in order (at most every 100 ms or per 200 lines, the first line
at once), then ``complete`` once both are drained. The pipeline never waits
on the network before it spawns the workload, and a job's first output line
never waits behind its state events.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio

from launchplane.core.client import (
    ApiError,
    LaunchplaneClient,
    NotFound,
    ServerUnreachable,
    StaleLease,
)

log = logging.getLogger("launchplane.agent")

LOG_FLUSH_SECONDS = 0.1
LOG_BATCH_LINES = 200
MAX_BUFFERED_LINES = 100_000
"""Lines kept while the server is unreachable; older ones are dropped (and counted)."""


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the server is unreachable or failing, not refusing the call."""
    if isinstance(exc, ServerUnreachable):
        return True
    return isinstance(exc, ApiError) and exc.status >= 500


def backoff_delay(failures: int, base: float = 0.2, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter, so many agents do not retry in step."""
    return random.uniform(0, min(cap, base * 2 ** min(failures, 16)))


@dataclass(slots=True)
class _Line:
    text: str
    output: bool
    """A line of the workload's own output (counted for re-adoption), not a builder's."""


class LeaseOutbox:
    """Sends one lease's calls to the server in two ordered lanes, so logs never wait on events.

    * the **event lane** posts state events in order; events that queued up
      behind a call in flight collapse into the newest (stages only move on);
    * the **log lane** posts output lines in order, batched: at most every
      ``LOG_FLUSH_SECONDS`` or per ``LOG_BATCH_LINES`` lines, the first line
      after a pause at once. Each batch carries the seq its first line should
      get (counted from ``first_seq``, the lease's ``log_count`` + 1), so a
      batch retried after its answer was lost is stored once;
    * the **final call** (``complete`` or ``release``) goes out once both
      lanes are drained: the server refuses lines for a finished lease.

    Producers (``event``, ``line``, ``finish``) never block. Transient errors
    are retried with backoff for up to ``give_up_after`` seconds (by then the
    lease has expired and the server re-queues the job anyway). A fenced call
    (409, or 404: the server does not know the lease) drops everything queued
    and calls ``on_stale`` once. ``confirmed`` is set by the first answer
    about this lease: accepted (``live``), fenced (``stale``), or given up.
    """

    def __init__(
        self,
        client: LaunchplaneClient,
        lease_id: str,
        job_id: str,
        on_stale: Callable[[], None],
        give_up_after: float,
        on_logged: Callable[[int], None] | None = None,
        first_seq: int = 1,
    ) -> None:
        self._client = client
        self._lease_id = lease_id
        self._job_id = job_id
        self._on_stale = on_stale
        self._on_logged = on_logged
        self._give_up_after = give_up_after
        self._events: deque[tuple[str, Callable[[], Awaitable[Any]]]] = deque()
        self._lines: deque[_Line] = deque()
        self._final: tuple[str, Callable[[], Awaitable[Any]]] | None = None
        self._event_wake = anyio.Event()
        self._log_wake = anyio.Event()
        self._closed = False
        self._last_flush = -math.inf
        self._dropped = 0
        self._next_seq = first_seq
        self.output_logged = 0
        """Lines of the workload's output the server has stored, in order."""
        self.stale = False
        self.live = False
        self.confirmed = anyio.Event()

    def event(self, state: str) -> None:
        if not self.stale:
            self._events.append(
                (f"event {state}", lambda: self._client.post_event(self._lease_id, state))
            )
            self._event_wake.set()

    def line(self, text: str, *, output: bool = False) -> None:
        if self.stale:
            return
        if len(self._lines) >= MAX_BUFFERED_LINES:
            self._dropped += 1
            return
        self._lines.append(_Line(text, output))
        if len(self._lines) == 1 or len(self._lines) >= LOG_BATCH_LINES:
            self._log_wake.set()

    def finish(self, name: str, call: Callable[[], Awaitable[Any]]) -> None:
        """Queue the last call (complete or release) and close the outbox."""
        if not self.stale:
            self._final = (name, call)
        self.close()

    def close(self) -> None:
        self._closed = True
        self._event_wake.set()
        self._log_wake.set()

    async def run(self) -> None:
        async with anyio.create_task_group() as lanes:
            lanes.start_soon(self._event_lane)
            lanes.start_soon(self._log_lane)
        if self._final is not None and not self.stale:
            await self._send(*self._final)
        self.confirmed.set()  # nothing more will be said about this lease

    async def _event_lane(self) -> None:
        while not self.stale:
            self._event_wake = anyio.Event()
            if self._events:
                # Stages only move forward and the server keeps the newest one:
                # events that queued up behind a call in flight are superseded by
                # the last of them (a fast job's "building" is not worth a call;
                # the record keeps every stage's timestamp).
                while len(self._events) > 1:
                    self._events.popleft()
                await self._send(*self._events.popleft())
            elif self._closed:
                return
            else:
                await self._event_wake.wait()

    async def _log_lane(self) -> None:
        while not self.stale:
            self._log_wake = anyio.Event()
            if not self._lines:
                if self._closed:
                    return
                await self._log_wake.wait()
                continue
            delay = self._last_flush + LOG_FLUSH_SECONDS - time.monotonic()
            if delay > 0 and len(self._lines) < LOG_BATCH_LINES and not self._closed:
                # Lines shortly after a flush: gather a batch for a moment.
                with anyio.move_on_after(delay):
                    await self._log_wake.wait()
                continue
            batch = [self._lines.popleft() for _ in range(min(len(self._lines), LOG_BATCH_LINES))]
            texts = [line.text for line in batch]
            if self._dropped:
                texts.insert(0, f"[launchplane: {self._dropped} lines dropped]")
                self._dropped = 0
            self._last_flush = time.monotonic()
            first_seq = self._next_seq
            # Past this batch whether it is stored or given up on: a later batch must
            # never be taken for a repeat of it.
            self._next_seq += len(texts)
            send = partial(self._client.append_logs, self._lease_id, texts, first_seq)
            if await self._send("logs", send):
                self.output_logged += sum(line.output for line in batch)
                if self._on_logged is not None:
                    self._on_logged(self.output_logged)

    async def _send(self, name: str, call: Callable[[], Awaitable[Any]]) -> bool:
        """One call, retried while the server is unreachable; True when it was accepted."""
        started = time.monotonic()
        failures = 0
        while not self.stale:
            try:
                await call()
            except (StaleLease, NotFound):
                self._fenced()
                return False
            except Exception as exc:
                if is_transient(exc) and time.monotonic() - started <= self._give_up_after:
                    failures += 1
                    await anyio.sleep(backoff_delay(failures))
                    continue
                if is_transient(exc):
                    log.error(
                        "job %s: gave up on %s after %.0fs: %s",
                        self._job_id,
                        name,
                        time.monotonic() - started,
                        exc,
                    )
                else:
                    log.error("job %s: server refused %s: %s", self._job_id, name, exc)
                self.confirmed.set()
                return False
            self.live = True
            self.confirmed.set()
            return True
        return False

    def _fenced(self) -> None:
        if self.stale:
            return
        log.warning("job %s: lease %s is stale; stopping it here", self._job_id, self._lease_id)
        self.stale = True
        self._events.clear()
        self._lines.clear()
        self._final = None
        self.confirmed.set()
        self._event_wake.set()
        self._log_wake.set()
        self._on_stale()

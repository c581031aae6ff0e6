"""The agent's calls about one lease, in two ordered lanes: events, and log lines.

Server calls for one lease go through a :class:`LeaseOutbox`: events in order,
and log lines in order (at most every 100 ms or per 200 lines, the first line
at once, each batch under the server's body limit), then ``complete`` once both
are drained. The pipeline never waits on the network before it spawns the
workload, and a job's first output line never waits behind its state events.

A job that prints faster than the server stores its lines makes them wait on
disk, in the run directory's spill file (:data:`~launchplane.agent.rundir.SPILL_FILE`),
rather than in memory or not at all; they are sent from there in order.

Before it sends a batch that holds workload output, the outbox notes in the run
directory where that batch stands (:data:`~launchplane.agent.rundir.PROGRESS_FILE`):
with the lease's log position (its ``log_count`` when handed back, the answer of
``late-logs`` once it has ended), the agent that ships what a killed one had not
knows exactly which of the output lines the server has, the batch in flight at a crash included
(:mod:`launchplane.agent.leftovers`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, Literal

import anyio

from launchplane.agent.rundir import PROGRESS_FILE, replace_file
from launchplane.core.client import (
    ApiError,
    LaunchplaneClient,
    NotFound,
    ServerUnreachable,
    StaleLease,
)
from launchplane.core.limits import MAX_BODY_BYTES, MAX_LINE_BYTES

log = logging.getLogger("launchplane.agent")

LOG_FLUSH_SECONDS = 0.1
LOG_BATCH_LINES = 200
"""Lines that make a batch worth sending at once rather than after ``LOG_FLUSH_SECONDS``."""
MAX_BATCH_LINES = 2_000
"""The most lines one call carries: the server stores a batch in one go, and a bigger one
holds up its other requests longer (about 15 us a line on SQLite)."""
MAX_BATCH_BYTES = MAX_BODY_BYTES - 1024
"""The most JSON bytes of lines one call carries: under the server's default body limit,
with room for the rest of the body. A server with a lower limit answers 413 and the batch
goes out again in smaller ones."""
MIN_BATCH_BYTES = 4 * 1024
"""A server that refuses (413) a batch this small cannot store logs; the batch is given up."""
JSON_EXPANSION = 6
"""The most JSON bytes one UTF-8 byte of a line can take (a control character is ``\\u00XX``)."""
MAX_BUFFERED_LINES = 100_000
MAX_BUFFERED_BYTES = 64 * MAX_BODY_BYTES
"""Lines waiting to be sent (the server unreachable, or slower than the job) are held up to
``MAX_BUFFERED_LINES`` lines and this many JSON bytes. Past that, lines are dropped from the
middle: the first lines and the newest ``KEEP_LAST_LINES`` are kept (the end of a log is
where its error is), and one line, where the gap is, says how many were dropped."""
KEEP_LAST_LINES = MAX_BUFFERED_LINES // 2
"""When lines must be dropped, how many of the newest are kept after the gap."""
SPILL_AFTER_LINES = 10_000
SPILL_AFTER_BYTES = 4 * MAX_BODY_BYTES
"""With a spill file, lines past this many in memory (lines or JSON bytes) wait on disk
instead, so a chatty job costs the agent a few MiB, not ``MAX_BUFFERED_BYTES``."""
MAX_SPILL_BYTES = 4 << 30
"""The most a spill file holds: past it, or when the disk is full, lines are dropped from
the middle as without a spill file, until everything in the file has been sent."""
SPILL_RESET_BYTES = 64 << 20
"""A spill file this large starts over once every line in it has been sent; smaller, it
is kept, a local copy of the lines that waited."""
SPILL_READ_LINES = SPILL_AFTER_LINES // 2
"""The most lines read back from the spill file at a time."""
SPILL_READ_BYTES = 1 << 20
"""Bytes of the spill file read at a time (more for one longer line)."""


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the server is unreachable or failing, not refusing the call."""
    if isinstance(exc, ServerUnreachable):
        return True
    return isinstance(exc, ApiError) and exc.status >= 500


def backoff_delay(failures: int, base: float = 0.2, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter, so many agents do not retry in step."""
    return random.uniform(0, min(cap, base * 2 ** min(failures, 16)))


def json_size(text: str) -> int:
    """The most bytes ``text`` takes in a request body's JSON list (ASCII-escaped, a separator)."""
    return len(encode_basestring_ascii(text)) + 2


def split_line(text: str, limit: int) -> list[str]:
    """``text`` as pieces of at most ``limit`` UTF-8 bytes, cut between characters, in order."""
    if len(text) * 4 <= limit:  # no character takes more than 4 bytes
        return [text]
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return [text]
    pieces: list[str] = []
    start = 0
    while start < len(raw):
        end = start + limit
        if end < len(raw):
            while raw[end] & 0xC0 == 0x80:  # a continuation byte: inside a character
                end -= 1
        pieces.append(raw[start:end].decode("utf-8", "surrogatepass"))
        start = end
    return pieces


@dataclass(slots=True)
class _Line:
    text: str
    output: int
    """Lines of the workload's own output this stands for, counted for re-adoption: 1 for one
    (on its last piece only), 0 for a builder's line, the count for a dropped-lines notice."""
    size: int
    """Its :func:`json_size`."""

    @classmethod
    def of(cls, text: str, output: int) -> _Line:
        return cls(text, output, json_size(text))


class _Spill:
    """Log lines that did not fit in memory, in order, in an append-only file (mode 0600).

    One JSON ``[output, text]`` a line, written with one ``write`` each (no
    buffer to lose or to flush) and read back in the order written. The text is
    what the outbox was given, which the pipeline has redacted already. ``path``
    None (no run directory): nothing is ever spilled.
    """

    def __init__(self, path: Path | None, limit: int) -> None:
        self.path = path
        self._limit = limit
        self._fd: int | None = None
        self._size = 0
        """Bytes in the file."""
        self._read_at = 0
        """Where the next line to read back starts."""
        self.pending = 0
        """Lines written and not yet read back."""
        self.pending_output = 0
        """Their ``output`` counts."""
        self.refused = False
        """The last write failed (disk full, over the limit): do not try again for a while."""

    @property
    def usable(self) -> bool:
        return self.path is not None and not self.refused

    def append(self, line: _Line) -> bool:
        """Write ``line`` at the end of the file; False (and nothing written) if it cannot be."""
        if self.path is None:
            return False
        record = (json.dumps([line.output, line.text]) + "\n").encode()
        try:
            if self._fd is None:
                self._open()
            elif self.pending == 0 and self._size >= SPILL_RESET_BYTES:
                os.ftruncate(self._fd, 0)  # everything in it was sent: bound the disk used
                self._size = self._read_at = 0
            if self._size + len(record) > self._limit:
                self._refuse(f"it holds {self._limit} bytes, its limit")
                return False
            assert self._fd is not None
            view = memoryview(record)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self._undo()
            self._refuse(os.strerror(exc.errno) if exc.errno else str(exc))
            return False
        self._size += len(record)
        self.pending += 1
        self.pending_output += line.output
        return True

    def read(self, max_lines: int, max_bytes: int) -> list[_Line]:
        """Up to ``max_lines`` lines (``max_bytes`` of JSON) of the oldest still in the file.

        Read through the descriptor it was written with, never by path again (a
        file put in its place is not read). Raises ``OSError`` or ``ValueError``
        if the file cannot be read back.
        """
        assert self._fd is not None
        lines: list[_Line] = []
        size = 0
        want = SPILL_READ_BYTES
        while self.pending and len(lines) < max_lines and size < max_bytes:
            data = os.pread(self._fd, want, self._read_at)
            start, end = 0, data.find(b"\n")
            if end < 0:
                if len(data) < want:
                    raise ValueError(f"{self.path}: a line is cut short at byte {self._read_at}")
                want *= 2  # one line longer than a read
                continue
            while end >= 0 and self.pending and len(lines) < max_lines and size < max_bytes:
                output, text = json.loads(data[start:end])
                line = _Line.of(text, output)
                lines.append(line)
                size += line.size
                self._read_at += end + 1 - start
                self.pending -= 1
                self.pending_output -= output
                start, end = end + 1, data.find(b"\n", end + 1)
        return lines

    def lose_pending(self) -> None:
        """The lines not read back are given up (the file could not be read)."""
        self.pending = self.pending_output = 0
        self._read_at = self._size

    def _open(self) -> None:
        """Create the file afresh, the agent's alone (0600).

        Whatever has the name already is unlinked first, never followed or
        truncated: a job can write in its run directory, and a link it left
        there must not make the agent overwrite the link's target. An earlier
        agent's file is not sent again (the re-adopting agent reads the run's
        output from the runner).
        """
        assert self.path is not None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o600)

    def _undo(self) -> None:
        """Cut off what a failed write left (a disk full part-way through a line)."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError as exc:
                log.warning("spill file %s: could not cut a failed write off: %s", self.path, exc)

    def _refuse(self, why: str) -> None:
        if not self.refused:
            log.warning("spill file %s takes no more log lines: %s", self.path, why)
        self.refused = True

    def close(self) -> None:
        """Close the file; it stays in the run directory (redacted lines only)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.pending = self.pending_output = 0


class LeaseOutbox:
    """Sends one lease's calls to the server in two ordered lanes, so logs never wait on events.

    * the **event lane** posts state events in order; events that queued up
      behind a call in flight collapse into the newest (stages only move on);
    * the **log lane** posts output lines in order, batched: at most every
      ``LOG_FLUSH_SECONDS`` or per ``LOG_BATCH_LINES`` lines, the first line
      after a pause at once. Each batch carries the seq its first line should
      get (counted from ``first_seq``, the lease's ``log_count`` + 1), so a
      batch retried after its answer was lost is stored once. A batch holds at
      most ``MAX_BATCH_LINES`` lines and ``MAX_BATCH_BYTES`` of JSON; a line
      over ``MAX_LINE_BYTES`` goes as pieces. A batch refused as too large (413:
      a server with a lower body limit) is sent again in smaller batches;
    * the **final call** (``complete`` or ``release``) goes out once both
      lanes are drained: the server refuses lines for a finished lease.
      With ``late``, the lease has ended already and its lines go to
      ``late-logs`` (:mod:`launchplane.agent.leftovers`), numbered alike.

    Producers (``event``, ``line``, ``finish``) never block. With a
    ``spill_path`` (the run directory's :data:`~launchplane.agent.rundir.SPILL_FILE`),
    lines beyond ``SPILL_AFTER_LINES`` / ``SPILL_AFTER_BYTES`` in memory are
    appended to that file and sent from it in order, with the seqs they would
    have had; lines are dropped only when it refuses more (disk full, or
    ``spill_limit`` bytes waiting). Without one, or then, lines beyond
    ``MAX_BUFFERED_LINES`` / ``MAX_BUFFERED_BYTES`` are dropped from the middle
    (see there): the log is its first lines, the spilled ones, a notice of the
    gap, the newest lines. Next to the spill file it keeps the progress note
    (:data:`~launchplane.agent.rundir.PROGRESS_FILE`) of the last batch with
    workload output, written before the batch is sent. Transient errors
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
        spill_path: Path | None = None,
        spill_limit: int = MAX_SPILL_BYTES,
        late: bool = False,
    ) -> None:
        self._client = client
        self._append = client.append_late_logs if late else client.append_logs
        """``late``: the lease has ended; its run's lines go to ``late-logs`` (agent.leftovers)."""
        self._lease_id = lease_id
        self._job_id = job_id
        self._on_stale = on_stale
        self._on_logged = on_logged
        self._give_up_after = give_up_after
        self._events: deque[tuple[str, Callable[[], Awaitable[Any]]]] = deque()
        self._lines: deque[_Line] = deque()
        """The lines to send next, in order."""
        self._spill = _Spill(spill_path, spill_limit)
        """The lines after ``_lines`` (and before the gap, if any), waiting on disk."""
        self._gap = False
        """Lines are being dropped (or may be): new lines go to ``_tail``, after the gap."""
        self._tail: deque[_Line] = deque()
        """While the gap is open: the newest lines, which follow it."""
        self._buffered_bytes = 0
        self._batch_bytes = MAX_BATCH_BYTES
        """Lowered when the server refuses a batch as too large."""
        self._final: tuple[str, Callable[[], Awaitable[Any]]] | None = None
        self._event_wake = anyio.Event()
        self._log_wake = anyio.Event()
        self._closed = False
        self._last_flush = -math.inf
        self._dropped = 0
        self._dropped_output = 0
        self._next_seq = first_seq
        self._output_logged = 0
        self._position = 0
        """Lines of the workload's output in the batches taken so far (stored or not)."""
        self._progress_path = spill_path.with_name(PROGRESS_FILE) if spill_path else None
        self.stale = False
        self.live = False
        self.delivered = False
        """The last call (complete or release) was accepted: every line before it was sent."""
        self.confirmed = anyio.Event()

    @property
    def output_logged(self) -> int:
        """Lines of the workload's output the server has stored, in order."""
        return self._output_logged

    @output_logged.setter
    def output_logged(self, count: int) -> None:
        """Set before the first output line: the output lines an earlier agent sent
        (re-adoption); the output this outbox sends is counted from there."""
        self._output_logged = self._position = count

    def event(self, state: str) -> None:
        if not self.stale:
            self._events.append(
                (f"event {state}", lambda: self._client.post_event(self._lease_id, state))
            )
            self._event_wake.set()

    def line(self, text: str, *, output: bool = False) -> None:
        """Queue one log line (``output``: the workload's own, counted for re-adoption)."""
        if self.stale:
            return
        line = _Line.of(text, int(output))
        if not self._gap and (
            self._spill.pending or (self._spill.usable and self._memory_full(line.size, spill=True))
        ):
            if self._spill.append(line):
                self._log_wake.set()
                return
            if self._spill.pending:
                self._gap = True  # the lines on disk come before any that must be dropped
        if self._memory_full(line.size):
            self._make_room(line.size)
        (self._tail if self._gap else self._lines).append(line)
        self._buffered_bytes += line.size
        if len(self._lines) == 1 or len(self._lines) + len(self._tail) >= LOG_BATCH_LINES:
            self._log_wake.set()

    def _memory_full(self, size: int, *, spill: bool = False) -> bool:
        """One more line of ``size`` bytes does not fit in memory (``spill``: the spill bounds)."""
        lines, limit = (
            (SPILL_AFTER_LINES, SPILL_AFTER_BYTES)
            if spill
            else (MAX_BUFFERED_LINES, MAX_BUFFERED_BYTES)
        )
        return len(self._lines) + len(self._tail) >= lines or self._buffered_bytes + size > limit

    def _make_room(self, size: int) -> None:
        """Drop lines until one more of ``size`` bytes fits (or nothing is left to drop)."""
        while self._memory_full(size) and self._drop_one():
            pass

    def _drop_one(self) -> bool:
        """Drop the oldest line after the gap (opened first if need be); False if none is left.

        Opening the gap moves the newest ``KEEP_LAST_LINES`` behind it (unless
        lines wait on disk: those in memory are older than them), so what is
        kept is the start of the log and its newest lines; the gap then grows
        from its end, as lines older than the newest ones go.
        """
        if not self._gap:
            self._gap = True
            if not self._spill.pending:
                for _ in range(min(KEEP_LAST_LINES, len(self._lines) // 2)):
                    self._tail.appendleft(self._lines.pop())
        if self._tail:
            dropped = self._tail.popleft()
        elif self._lines:
            dropped = self._lines.pop()
        else:
            return False
        self._dropped += 1
        self._dropped_output += dropped.output
        self._buffered_bytes -= dropped.size
        return True

    def _close_gap(self) -> None:
        """The lines before the gap are out: the gap's notice, then the newest lines, go next."""
        self._lines, self._tail = self._tail, deque()
        if self._dropped:
            notice = _Line.of(
                f"[launchplane: {self._dropped} lines dropped here: the agent's buffer was full]",
                self._dropped_output,
            )
            self._lines.appendleft(notice)
            self._buffered_bytes += notice.size
        self._dropped = self._dropped_output = 0
        self._gap = self._spill.refused = False  # the disk may take lines again

    def _refill(self) -> None:
        """Lines from the spill file into memory, next in line to be sent."""
        try:
            lines = self._spill.read(SPILL_READ_LINES, SPILL_AFTER_BYTES // 2)
        except (OSError, ValueError) as exc:
            lost, lost_output = self._spill.pending, self._spill.pending_output
            self._spill.lose_pending()
            log.error(
                "job %s: %d log lines lost: cannot read them back: %s", self._job_id, lost, exc
            )
            lines = [
                _Line.of(
                    f"[launchplane: {lost} lines lost here: the agent could not read them back]",
                    lost_output,
                )
            ]
        self._lines.extend(lines)
        self._buffered_bytes += sum(line.size for line in lines)

    @property
    def finishing(self) -> bool:
        """The last call (complete or release) is queued, in flight or accepted: the server
        may end the lease at any moment now."""
        return self._final is not None or self.delivered

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
        try:
            async with anyio.create_task_group() as lanes:
                lanes.start_soon(self._event_lane)
                lanes.start_soon(self._log_lane)
        finally:
            self._spill.close()
        if self._final is not None and not self.stale:
            self.delivered = await self._send(*self._final) == "accepted"
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
            if self._spill.pending and len(self._lines) < MAX_BATCH_LINES:
                self._refill()
            if not self._lines and not self._spill.pending:
                if self._gap:
                    self._close_gap()
                else:
                    self._spill.refused = False  # all caught up: the disk may take lines again
            if not self._lines:
                if self._closed:
                    return
                await self._log_wake.wait()
                continue
            delay = self._last_flush + LOG_FLUSH_SECONDS - time.monotonic()
            if (
                delay > 0
                and len(self._lines) + len(self._tail) < LOG_BATCH_LINES
                and not self._spill.pending
                and self._buffered_bytes < self._batch_bytes
                and not self._closed
            ):
                # Lines shortly after a flush: gather a batch for a moment.
                with anyio.move_on_after(delay):
                    await self._log_wake.wait()
                continue
            batch, size = self._take_batch()
            texts = [line.text for line in batch]
            self._last_flush = time.monotonic()
            first_seq = self._next_seq
            output = sum(line.output for line in batch)
            if output:
                self._note_progress(first_seq, len(texts), output)
                self._position += output
            # Past this batch whether it is stored or given up on: a later batch must
            # never be taken for a repeat of it.
            self._next_seq += len(texts)
            send = partial(self._append, self._lease_id, texts, first_seq)
            outcome = await self._send("logs", send, splittable=True)
            if outcome == "too large":
                self._position -= output
                self._send_smaller(batch, size, first_seq)
            elif outcome == "accepted":
                self._output_logged += output
                if self._on_logged is not None:
                    self._on_logged(self._output_logged)

    def _note_progress(self, first_seq: int, lines: int, output: int) -> None:
        """Keep, before it is sent, where this batch stands (see ``rundir.PROGRESS_FILE``)."""
        if self._progress_path is None:
            return
        note = {"position": self._position, "first_seq": first_seq, "lines": lines}
        note["output"] = output
        try:
            replace_file(self._progress_path, json.dumps(note) + "\n")
        except OSError as exc:
            log.debug("job %s: could not note the log's progress: %s", self._job_id, exc)

    def _take_batch(self) -> tuple[list[_Line], int]:
        """The next lines to send and their JSON size, within the batch limits.

        A line over ``MAX_LINE_BYTES`` (or too big for a batch, when the server's
        body limit is lower) is cut into pieces here, in its place.
        """
        batch: list[_Line] = []
        size = 0
        while self._lines and len(batch) < MAX_BATCH_LINES:
            line = self._lines[0]
            if len(line.text) * 4 > MAX_LINE_BYTES or line.size > self._batch_bytes:
                limit = MAX_LINE_BYTES
                if line.size > self._batch_bytes:  # a server with a lower body limit
                    limit = min(limit, self._batch_bytes // JSON_EXPANSION)
                pieces = split_line(line.text, limit)
                if len(pieces) > 1:
                    self._lines.popleft()
                    cut = [_Line.of(piece, 0) for piece in pieces]
                    cut[-1].output = line.output
                    self._lines.extendleft(reversed(cut))
                    self._buffered_bytes += sum(piece.size for piece in cut) - line.size
                    line = cut[0]
            if batch and size + line.size > self._batch_bytes:
                break
            batch.append(self._lines.popleft())
            size += line.size
        self._buffered_bytes -= size
        return batch, size

    def _send_smaller(self, batch: list[_Line], size: int, first_seq: int) -> None:
        """A batch refused as too large (413) goes back to the front, to go out in halves.

        The server refused it before reading it, so none of it is stored and its
        seqs are free again.
        """
        if size <= MIN_BATCH_BYTES:
            log.error(
                "job %s: the server refuses log batches of %d bytes as too large; "
                "%d lines not stored",
                self._job_id,
                size,
                len(batch),
            )
            return
        self._batch_bytes = max(MIN_BATCH_BYTES, size // 2)
        log.warning(
            "job %s: the server refused a log batch of %d bytes as too large; "
            "sending batches of at most %d bytes",
            self._job_id,
            size,
            self._batch_bytes,
        )
        self._lines.extendleft(reversed(batch))
        self._buffered_bytes += size
        self._next_seq = first_seq

    async def _send(
        self, name: str, call: Callable[[], Awaitable[Any]], *, splittable: bool = False
    ) -> Literal["accepted", "too large", "failed"]:
        """One call, retried while the server is unreachable.

        "too large" is a 413 of a ``splittable`` call, which the caller sends
        again in parts; "failed" is a call fenced, refused or given up on.
        """
        started = time.monotonic()
        failures = 0
        while not self.stale:
            try:
                await call()
            except (StaleLease, NotFound):
                self._fenced()
                return "failed"
            except Exception as exc:
                if splittable and isinstance(exc, ApiError) and exc.status == 413:
                    return "too large"
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
                return "failed"
            self.live = True
            self.confirmed.set()
            return "accepted"
        return "failed"

    def _fenced(self) -> None:
        if self.stale:
            return
        log.warning("job %s: lease %s is stale; stopping it here", self._job_id, self._lease_id)
        self.stale = True
        self._events.clear()
        self._lines.clear()
        self._tail.clear()
        self._spill.close()
        self._gap = False
        self._dropped = self._dropped_output = self._buffered_bytes = 0
        self._final = None
        self.confirmed.set()
        self._event_wake.set()
        self._log_wake.set()
        self._on_stale()

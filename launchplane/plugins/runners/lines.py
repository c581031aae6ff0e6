"""Workload output in byte chunks -> text lines: the one splitter the container runners share.

Docker's attach stream, a Kubernetes pod log and a kaniko build log all
arrive as chunks that cut lines anywhere. A line longer than
:data:`MAX_LINE_BYTES` is cut into pieces, so one runaway line cannot grow
the agent's memory without bound; the cut falls between characters, and the
agent's redaction window masks a secret that straddles it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.to_thread

from launchplane.core.limits import MAX_LINE_BYTES


class LineSplitter:
    """Bytes in arbitrary chunks -> text lines (a line too long is cut into pieces)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[str]:
        """The lines ``chunk`` completes; the unfinished rest waits for the next chunk."""
        *lines, self._buffer = (self._buffer + chunk).split(b"\n")
        while len(self._buffer) > MAX_LINE_BYTES:
            cut = char_boundary(self._buffer, MAX_LINE_BYTES)
            lines.append(self._buffer[:cut])
            self._buffer = self._buffer[cut:]
        return [decode(line) for line in lines]

    def flush(self) -> list[str]:
        """The last, unterminated line, if any (at the end of the stream)."""
        rest, self._buffer = self._buffer, b""
        return [decode(rest)] if rest else []


def char_boundary(raw: bytes, limit: int) -> int:
    """``limit``, or the start of the UTF-8 character it falls inside: a piece cut there decodes
    whole, so the redactor still sees a non-ASCII secret that straddles the cut."""
    cut = limit
    while cut > limit - 3 and raw[cut] & 0xC0 == 0x80:  # a continuation byte
        cut -= 1
    return cut


def decode(raw: bytes) -> str:
    """One line's bytes as text, without a trailing CR; undecodable bytes replaced."""
    return raw.rstrip(b"\r").decode("utf-8", errors="replace")


def next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    """The next piece of output, None at the end (or when the stream broke under the reader)."""
    try:
        return next(chunks)
    except StopIteration:
        return None
    except Exception:  # the socket was closed under us (removed workload, stopped reader)
        return None


async def read_lines(chunks: Iterator[bytes], limiter: anyio.CapacityLimiter) -> AsyncIterator[str]:
    """The lines of a blocking chunk iterator, each read in a worker thread under ``limiter``.

    A cancelled reader abandons its blocked worker; the caller closes the
    stream (in its ``finally``), which ends that worker too.
    """
    splitter = LineSplitter()
    while True:
        chunk = await anyio.to_thread.run_sync(
            next_chunk, chunks, abandon_on_cancel=True, limiter=limiter
        )
        if chunk is None:
            break
        for line in splitter.feed(chunk):
            yield line
    for line in splitter.flush():
        yield line

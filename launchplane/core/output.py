"""A workload's output: bytes in chunks -> text lines, and the file a runner keeps it in.

Every runner cuts its workload's output the same way (:class:`LineSplitter`):
at newlines, and a line longer than :data:`~launchplane.core.limits.MAX_LINE_BYTES`
into pieces, so one runaway line cannot grow the agent's memory without
bound; the cut falls between characters, and the agent's redaction window
masks a secret that straddles it.

A runner whose workload's output would die with the agent (a pipe to a child
process) has the workload write it to :data:`OUTPUT_FILE` in the run
directory instead, and reads it from there; an agent that finds the file of
an earlier attempt ships the lines that attempt's agent had not
(:mod:`launchplane.agent.leftovers`). Both read it through the same splitter,
so they count the same lines.
"""

from __future__ import annotations

from launchplane.core.limits import MAX_LINE_BYTES

OUTPUT_FILE = "output.log"
"""In the run directory: the workload's merged stdout and stderr, as written (append-only)."""


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

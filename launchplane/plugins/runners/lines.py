"""Workload output in byte chunks -> text lines, for the runners that read a blocking stream.

Docker's attach stream and a Kubernetes pod log arrive as chunks that cut
lines anywhere; :func:`read_lines` reads them in a worker thread through the
one splitter (:class:`~launchplane.core.output.LineSplitter`), which the
kaniko builder, the local-process runner and the agent's leftover shipping
use too: a line longer than ``MAX_LINE_BYTES`` is cut into pieces between
characters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.to_thread

from launchplane.core.output import LineSplitter


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

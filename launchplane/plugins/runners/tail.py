"""Follow a file another process appends to: its bytes as they are written.

The local-process runner's job writes its output to a file in its run
directory (:data:`~launchplane.core.output.OUTPUT_FILE`), not to a pipe, so
that what it wrote survives its agent. :class:`FileTail` reads that file as it
grows. It waits with inotify (``IN_MODIFY`` on the file's inode, through
``ctypes``: no dependency), so a line is read the moment it is written, as
from a pipe; where inotify is not available (its watch limit reached) it
polls every :data:`POLL_SECONDS`. A file has no end of stream: the owner says
when no more is coming (:meth:`FileTail.end`, once the job's processes are
gone), and the tail then reads to the end of the file and stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel

log = logging.getLogger("launchplane.agent")

READ_BYTES = 256 * 1024
"""The most bytes read at a time."""
POLL_SECONDS = 0.05
"""Without inotify: how often the file is looked at for more."""
_IN_MODIFY = 0x00000002


def _inotify(fd: int) -> int | None:
    """An inotify descriptor (non-blocking) watching the file open as ``fd``; None if none.

    None also under anyio before 4.7, which cannot wait on a plain descriptor.
    """
    if not hasattr(anyio, "wait_readable"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        watcher = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return None
    if watcher < 0:
        log.warning("no inotify (%s): job output is polled", os.strerror(ctypes.get_errno()))
        return None
    # The descriptor's /proc link names its inode: what a job renames or replaces in
    # its run directory does not change what is watched.
    if libc.inotify_add_watch(watcher, os.fsencode(f"/proc/self/fd/{fd}"), _IN_MODIFY) < 0:
        log.warning("no inotify watch (%s): job output is polled", os.strerror(ctypes.get_errno()))
        os.close(watcher)
        return None
    return watcher


class FileTail:
    """The bytes of the regular file open as ``fd`` (read-only), from its start, as they come.

    Owns ``fd`` (:meth:`close` closes it). One reader at a time.
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self._offset = 0
        self._ended = False
        self._end_at: int | None = None
        """The file's size when :meth:`end` was called: the reader stops there."""
        self._idle: anyio.CancelScope | None = None
        self._reading = False
        self._closing = False
        self._watcher = _inotify(fd)

    def end(self) -> None:
        """Nothing more is wanted: the reader reads to the file's end as of now, and stops."""
        if self._end_at is None and self._fd is not None:
            self._end_at = os.fstat(self._fd).st_size
        self._ended = True
        if self._idle is not None:
            self._idle.cancel()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes in chunks, in order, until :meth:`end` and the end of the file."""
        self._reading = True
        try:
            while self._fd is not None:
                self._drain_events()  # before reading: a write after the read wakes the wait
                want = READ_BYTES
                if self._end_at is not None:
                    want = min(want, self._end_at - self._offset)
                data = os.pread(self._fd, want, self._offset) if want > 0 else b""
                if data:
                    self._offset += len(data)
                    yield data
                    await anyio.lowlevel.checkpoint()
                    continue
                if self._ended:
                    return
                with anyio.CancelScope() as self._idle:
                    if self._watcher is not None:
                        await anyio.wait_readable(self._watcher)
                    else:
                        await anyio.sleep(POLL_SECONDS)
                self._idle = None
        finally:
            self._reading = False
            if self._closing:
                self._close_now()

    def _drain_events(self) -> None:
        if self._watcher is None:
            return
        with contextlib.suppress(BlockingIOError):
            while os.read(self._watcher, 4096):
                pass

    def close(self) -> None:
        """Close the file and the watch; a reader still in :meth:`chunks` reads to the end of
        the file first (the event loop must not watch a closed descriptor)."""
        self.end()
        self._closing = True
        if not self._reading:
            self._close_now()

    def _close_now(self) -> None:
        for fd in (self._watcher, self._fd):
            if fd is not None:
                os.close(fd)
        self._watcher = self._fd = None

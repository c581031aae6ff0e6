"""A complete third-party runner, written only against the documented contract (entrypoints.md).

``minimal-process`` runs each job as a detached process that keeps what
identifies it in a folder of the run directory, so a restarted agent - a
fresh runner instance - re-adopts it from ``attach(run_id, run_dir)`` alone:

``<run dir>/minimal/pid``     the process group leader (an ``sh`` wrapper in its own session)
``<run dir>/minimal/output``  the job's stdout and stderr
``<run dir>/minimal/exit``    its exit status, written by the wrapper when the job ends

It imports only public names: ``launchplane.hookimpl``,
``launchplane.core.interfaces``, ``launchplane.core.spec`` and the shared
launch helpers of ``launchplane.core.launch``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import anyio

from launchplane import hookimpl
from launchplane.core.interfaces import (
    Image,
    JobContext,
    PluginError,
    Run,
    Runner,
    RunResult,
    RunState,
)
from launchplane.core.launch import code_root, job_argv
from launchplane.core.spec import ResolvedJob

FILES = "minimal"
POLL_SECONDS = 0.05
WRAPPER = '"$@" >"$0/output" 2>&1; echo $? >"$0/exit.tmp"; mv "$0/exit.tmp" "$0/exit"'
"""``sh -c WRAPPER <files> argv...``: output to a file, so the job outlives its agent."""


class MinimalRun(Run):
    """A job found by its files; any runner instance (any agent process) can watch or stop it."""

    def __init__(self, run_id: str, files: Path, pid: int) -> None:
        self.id = run_id
        self.files = files
        self.pid = pid
        self._cancelled = False

    def _exit_code(self) -> int | None:
        try:
            return int((self.files / "exit").read_text())
        except (OSError, ValueError):
            return None

    def _alive(self) -> bool:
        with contextlib.suppress(ChildProcessError):  # not a child of this process
            reaped, _ = os.waitpid(self.pid, os.WNOHANG)
            return reaped == 0
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _ended(self) -> bool:
        return self._exit_code() is not None or not self._alive()

    async def status(self) -> RunState:
        return RunState.RUNNING if not self._ended() else (await self.wait()).state

    async def wait(self) -> RunResult:
        while not self._ended():
            await anyio.sleep(POLL_SECONDS)
        code = self._exit_code()
        if self._cancelled:
            return RunResult(RunState.CANCELLED, code, "cancelled")
        if code is None:
            return RunResult(
                RunState.FAILED, None, "the job's process vanished", infrastructure_failure=True
            )
        if code == 0:
            return RunResult(RunState.SUCCEEDED, 0)
        return RunResult(RunState.FAILED, code, f"exit code {code}")

    async def cancel(self, grace: float = 10.0) -> None:
        if self._ended():
            return
        self._cancelled = True
        self._signal(signal.SIGTERM)
        with anyio.move_on_after(grace):
            while not self._ended():
                await anyio.sleep(POLL_SECONDS)
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    async def logs(self) -> AsyncIterator[str]:
        """The output file from its start, followed until the job has ended."""
        offset, buffer = 0, b""
        while True:
            ended = self._ended()
            with contextlib.suppress(FileNotFoundError), (self.files / "output").open("rb") as f:
                f.seek(offset)
                chunk = f.read()
                offset += len(chunk)
                buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")
            if ended:
                if buffer:
                    yield buffer.decode(errors="replace")
                return
            await anyio.sleep(POLL_SECONDS)


class MinimalRunner(Runner):
    name: ClassVar[str] = "minimal-process"
    needs_image: ClassVar[bool] = False

    def describe(self, job: ResolvedJob, image: Image | None) -> dict[str, Any]:
        return {"argv": job_argv(job), "env": sorted(job.env), "secrets": job.secrets}

    async def submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> MinimalRun:
        argv = job_argv(job)
        if argv is None:
            raise PluginError("the job has no command: set command: or entry_point:")
        files = ctx.workdir / FILES
        files.mkdir()
        process = subprocess.Popen(  # a fork: quick enough to do on the event loop
            ["sh", "-c", WRAPPER, str(files), *argv],
            cwd=code_root(job, ctx) or ctx.workdir,
            env={"PATH": os.environ.get("PATH", os.defpath), **ctx.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        (files / "pid").write_text(f"{process.pid}\n")
        return MinimalRun(ctx.run_id, files, process.pid)

    async def attach(self, run_id: str, run_dir: Path) -> MinimalRun | None:
        files = run_dir / FILES
        try:
            pid = int((files / "pid").read_text())
        except (OSError, ValueError):
            return None
        return MinimalRun(run_id, files, pid)


@hookimpl
def launchplane_register_runners(register: Callable[[type[Runner]], None]) -> None:
    register(MinimalRunner)

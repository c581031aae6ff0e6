"""A test plugin: the ``detached-process`` runner, whose runs outlive their agent (re-adoption).

It behaves like a container engine, with real processes and files instead of
containers: what identifies a run lives outside the agent, in
``$DETACHED_RUNNER_DIR/<run_id>/``:

``pid``     the workload's process group leader (a ``sh`` wrapper in its own session);
``output``  the workload's stdout and stderr;
``exit``    its exit status, written by the wrapper when the workload ends.

Output goes to a file, not a pipe, so the workload does not notice its agent
being killed (SIGKILL), and ``attach(run_id)`` finds it again by run id - the
contract ``Runner.attach`` describes. Loaded with ``--plugins detached_runner``
(``PYTHONPATH`` pointing at this directory).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import anyio

from launchplane import hookimpl
from launchplane.core.interfaces import Image, JobContext, Run, Runner, RunResult, RunState
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.runners.local import baseline_env, build_argv, working_directory

POLL_SECONDS = 0.05
WRAPPER = '"$@" >"$0/output" 2>&1; echo $? >"$0/exit.tmp"; mv "$0/exit.tmp" "$0/exit"'
"""``sh -c WRAPPER <run dir> argv...``: the run directory also marks the process as ours."""


def runs_dir() -> Path:
    return Path(os.environ["DETACHED_RUNNER_DIR"])


class DetachedRun(Run):
    """A workload found by its run directory; any agent process can watch or stop it."""

    def __init__(
        self, run_id: str, directory: Path, pid: int, process: subprocess.Popen[bytes] | None = None
    ) -> None:
        self.id = run_id
        self.directory = directory
        self.pid = pid
        self._process = process
        """Set when this agent started it (and must reap it)."""
        self._cancelled = False

    def _exit_code(self) -> int | None:
        try:
            return int((self.directory / "exit").read_text())
        except (OSError, ValueError):
            return None

    def _alive(self) -> bool:
        """The wrapper still runs (a zombie, or a recycled pid without our directory, does not)."""
        if self._process is not None:
            return self._process.poll() is None
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        running = stat.rsplit(")", 1)[1].split()[0] != "Z"
        return running and str(self.directory).encode() in cmdline

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
        if code is None:  # killed from outside, like a container on a node that went away
            return RunResult(
                RunState.FAILED,
                None,
                "the workload vanished without an exit status",
                infrastructure_failure=True,
            )
        return RunResult(RunState.SUCCEEDED if code == 0 else RunState.FAILED, code)

    async def logs(self) -> AsyncIterator[str]:
        """The output file from its start, followed until the workload has ended."""
        path = self.directory / "output"
        offset = 0
        buffer = b""
        while True:
            ended = self._ended()
            with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
                offset += len(chunk)
                buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", errors="replace")
            if ended:
                if buffer:
                    yield buffer.decode("utf-8", errors="replace")
                return
            await anyio.sleep(POLL_SECONDS)

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


class DetachedProcessRunner(Runner):
    name: ClassVar[str] = "detached-process"
    needs_image: ClassVar[bool] = False

    def describe(self, job: ResolvedJob, image: Image | None) -> dict[str, Any]:
        return {"argv": build_argv(job)}

    async def submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> DetachedRun:
        directory = runs_dir() / ctx.run_id
        directory.mkdir(parents=True)
        env = {**baseline_env(ctx.workdir), **ctx.env}
        for sub in ("home", "tmp"):
            (ctx.workdir / sub).mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            ["sh", "-c", WRAPPER, str(directory), *build_argv(job)],
            cwd=working_directory(job, ctx),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        (directory / "pid").write_text(f"{process.pid}\n")
        return DetachedRun(ctx.run_id, directory, process.pid, process)

    async def attach(self, run_id: str, run_dir: Path) -> DetachedRun | None:
        directory = runs_dir() / run_id
        try:
            pid = int((directory / "pid").read_text())
        except (OSError, ValueError):
            return None
        run = DetachedRun(run_id, directory, pid)
        return None if run._exit_code() is None and not run._alive() else run


@hookimpl
def launchplane_register_runners(register: Any) -> None:
    register(DetachedProcessRunner)

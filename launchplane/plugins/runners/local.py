"""The ``local-process`` runner: a job as a child process of the agent.

What runs
    ``command`` (with ``args`` appended), else ``entry_point`` + ``args``. An
    ``entry_point`` whose program ends in ``.py`` (``train.py`` or
    ``["train.py", "--fast"]``) runs with the agent's own interpreter
    (``sys.executable``), so a job needs no ``python`` on ``PATH`` and gets the
    packages installed next to the agent. Anything else is executed as given.

Where it runs
    The job's git checkout (``ctx.code_dir``) when it has one; a relative
    ``workdir`` is a folder inside that checkout. Without git code, ``workdir``
    must be an absolute path on the agent host (``launchplane run`` and the job
    loader resolve a relative ``workdir`` against the job file at submit time).
    With neither, the job runs in its run directory.

Environment
    Exactly ``ctx.env`` (built by the pipeline: the resolved env, passthrough
    names, secrets and ``LAUNCHPLANE_*``) on top of a small baseline a process
    needs to run at all, never the agent's whole environment:

    * ``PATH`` - the agent's (``os.defpath`` if it has none);
    * ``LANG`` / ``LC_ALL`` - the agent's, when set;
    * ``HOME`` = ``<run dir>/home`` and ``TMPDIR`` = ``<run dir>/tmp`` (created);
    * ``PYTHONUNBUFFERED=1`` so Python output reaches the log line by line;
    * ``PWD`` - the working directory, as a shell sets it (bubblewrap does).

    A name in ``ctx.env`` wins over the baseline.

Input artifacts
    Each of ``ctx.mounts`` (a relative target) appears at ``<run dir>/<target>``
    and its variable (``LAUNCHPLANE_ARTIFACT_<NAME>``) holds that path. In the
    sandbox it is a read-only bind of the agent's cache entry; without one
    (``isolation: none``) a symbolic link to it, whose files are read-only
    (mode 0444): a copy would cost a download's size per job, and an
    unsandboxed job can reach the agent's files anyway. An absolute target (a
    container path) is refused: give the artifact a relative ``path``.

Requirements
    A job with pinned ``requirements`` (a W&B job's ``requirements.frozen.txt``)
    runs with the agent's own packages: nothing is installed into the agent's
    environment. What differs from the pins is said in the job's log before the
    process starts (:func:`requirement_differences`), as W&B's local-process
    runner compares its frozen requirements with ``pip freeze``; the job runs
    anyway. For an isolated environment, use a queue with an image builder.

Isolation
    By default a job runs in a bubblewrap sandbox (:mod:`.sandbox`): its own
    PID namespace, a private ``/tmp``, read-only system directories and the
    agent's interpreter, its run directory read-write, nothing else of the host
    (not the agent's data or work directory, tokens, config, other jobs'
    processes). An absolute host ``workdir`` and the queue's
    ``read_only_paths`` are bound read-only. ``run_as`` (queue config, agent
    running as root) runs the job as that unprivileged user; an agent running
    as root without it drops every capability in the sandbox. ``isolation:
    none`` (queue config) opts out, with a warning in the agent's and the
    job's log. The three settings are admin-only: a submitter cannot set them.

Output
    The job's stdout and stderr are one file, ``<run dir>/output.log``
    (:data:`~launchplane.core.output.OUTPUT_FILE`, mode 0600, created afresh
    and opened ``O_APPEND`` by the runner, handed to the job as descriptors 1
    and 2, in the sandbox too), not a pipe: what the job wrote is on disk the
    moment ``write`` returns, so an agent that dies loses none of it. The
    run's :meth:`LocalRun.logs` follows the file as it grows (inotify, as soon
    as a line is written: :mod:`.tail`) and cuts it into lines with the
    runners' one splitter (a line over 64 KiB is cut into pieces). The agent
    that runs the job's next attempt on this host ships the lines the dead
    agent had not (:mod:`launchplane.agent.leftovers`). The file stays in the
    run directory with the rest of the run, like a container's log.

Lifetime
    The process gets its own session and process group
    (``start_new_session=True``): a Ctrl-C aimed at the agent does not reach
    it, and ``cancel(grace)`` signals the whole group (SIGTERM, then SIGKILL
    after ``grace``), so children die too. Like a container, a run ends when
    its main process ends: processes it left behind in its group are killed.
    The job dies with its agent: the sandbox's ``--die-with-parent``, or
    without a sandbox a supervisor that kills the group when the kernel tells
    it its agent died (:data:`.sandbox.SUPERVISOR`); a lost agent leaves no
    orphan that would overlap with the next attempt on this host.
    A local process cannot be re-adopted by a restarted agent, so
    :meth:`LocalProcessRunner.attach` returns ``None`` and the agent releases
    the lease (the job is re-queued).

Exit codes
    0 -> succeeded; anything else -> failed, with the exit code and the last
    lines of output in the reason; killed by a signal N -> exit code 128+N (as
    a shell reports it); stopped by ``cancel`` -> cancelled.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.metadata
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import anyio
import anyio.lowlevel
from anyio.abc import Process
from pydantic import BaseModel, ConfigDict, Field, field_validator

from launchplane.core.config.artifacts import (
    input_env,
    input_target,
    mounted_inputs,
    refuse_native_inputs,
)
from launchplane.core.hookspecs import hookimpl
from launchplane.core.interfaces import (
    ADMIN_ONLY,
    Image,
    JobContext,
    PluginError,
    Run,
    Runner,
    RunResult,
    RunState,
)
from launchplane.core.launch import code_root, job_argv
from launchplane.core.output import OUTPUT_FILE, LineSplitter
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.runners.sandbox import (
    NO_ISOLATION_WARNING,
    find_bwrap,
    job_user,
    make_mount_points,
    niced_argv,
    sandbox_argv,
    supervised_argv,
)
from launchplane.plugins.runners.tail import FileTail

log = logging.getLogger("launchplane.agent")

TAIL_LINES = 10
"""How many of the last output lines a failure reason quotes."""
LEFTOVER_EOF_SECONDS = 1.0
"""After the main process exits, how long ``wait`` gives the reader to reach the end of the
output (so that a failure reason quotes the last lines)."""
TIMEOUT_GRACE = 10.0
"""Seconds between SIGTERM and SIGKILL when ``timeout_seconds`` is reached."""


class LocalProcessArgs(BaseModel):
    """``resource_args.local-process``: small on purpose; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    timeout_seconds: float | None = Field(
        default=None, gt=0, description="Cancel the run (and fail it) after this many seconds."
    )
    nice: int | None = Field(
        default=None, ge=0, le=19, description="Scheduling niceness of the job's process group."
    )
    isolation: Literal["sandbox", "none"] = Field(
        default="sandbox",
        description="sandbox: bubblewrap (own PID namespace, only the run directory writable); "
        "none: a plain child process of the agent (logged as a warning)",
        json_schema_extra=ADMIN_ONLY,
    )
    run_as: str | int | None = Field(
        default=None,
        description="Unprivileged user (name or uid) the job runs as; the agent must be root",
        json_schema_extra=ADMIN_ONLY,
    )
    read_only_paths: list[str] = Field(
        default_factory=list,
        description="Absolute host paths the sandboxed job may read (datasets, shared tools)",
        json_schema_extra=ADMIN_ONLY,
    )

    @field_validator("read_only_paths")
    @classmethod
    def _absolute(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not os.path.isabs(path):
                raise ValueError(f"{path!r} is relative; give an absolute host path")
        return paths


def build_argv(job: ResolvedJob) -> list[str]:
    """The argv a job runs (:func:`~launchplane.core.launch.job_argv`, ``.py`` with this Python).

    Unlike a container, a process has no image ``CMD`` to fall back on.
    """
    argv = job_argv(job, python=sys.executable) if job.command or job.entry_point else None
    if argv is None:
        raise PluginError(
            "the job has neither 'command' nor 'entry_point'; "
            "set entry_point: train.py or command: [python, train.py]"
        )
    return argv


def working_directory(job: ResolvedJob, ctx: JobContext) -> Path:
    """Where the process starts: the job's code (:func:`~launchplane.core.launch.code_root`),
    else its run directory."""
    return code_root(job, ctx) or ctx.workdir


REQUIREMENT_LINES_SHOWN = 10
"""How many differing requirements the log names before "and N more"."""
_REQUIREMENT = re.compile(
    r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:(===?)\s*([^\s;#]+))?"
)


def _normalised(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Foo_Bar`` = ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions() -> dict[str, str]:
    """``{normalised name: version}`` of the agent's Python environment (what ``.py`` jobs get)."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(_normalised(name), dist.version)
    return found


def requirement_differences(requirements: list[str], installed: dict[str, str]) -> list[str]:
    """Each pinned requirement the environment does not meet, in words.

    ``name==version`` must be installed at that version; any other line that
    names a distribution (``name>=1``, ``name @ url``) only installed. Lines
    that name none (``-e``, ``--index-url``, a bare URL) cannot be checked
    and are skipped, as pip-freeze comparisons skip them.
    """
    differences: list[str] = []
    for line in requirements:
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        if "://" in text and "@" not in text.split("://", 1)[0]:
            continue  # a bare URL (git+https://...): no name to look up
        match = _REQUIREMENT.match(text)
        if match is None:
            continue
        name, pinned, wanted = match.group(1), match.group(2), match.group(3)
        have = installed.get(_normalised(name))
        if have is None:
            differences.append(f"{text}: not installed")
        elif pinned and wanted and have != wanted:
            differences.append(f"{text}: {have} installed")
    return differences


async def warn_about_requirements(job: ResolvedJob, ctx: JobContext) -> None:
    """Say in the job's log where the agent's environment differs from the job's pins."""
    if not job.requirements:
        return
    differences = requirement_differences(job.requirements, installed_distributions())
    if not differences:
        return
    shown = differences[:REQUIREMENT_LINES_SHOWN]
    more = len(differences) - len(shown)
    await ctx.emit(
        f"local-process: {len(differences)} of the job's {len(job.requirements)} pinned "
        f"requirements (requirements.frozen.txt) differ from the agent's Python environment "
        f"({sys.executable}); the job runs with what is installed, nothing is installed for it: "
        + "; ".join(shown)
        + (f"; and {more} more" if more else "")
    )


BASELINE_NAMES = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "PYTHONUNBUFFERED", "PWD")
"""What :func:`baseline_env` may set (LANG/LC_ALL only when the agent has them)."""


def baseline_env(run_dir: Path) -> dict[str, str]:
    """The few variables any process needs, taken from the agent or pointing into the run."""
    env = {"PATH": os.environ.get("PATH") or os.defpath, "PYTHONUNBUFFERED": "1"}
    for name in ("LANG", "LC_ALL"):
        if name in os.environ:
            env[name] = os.environ[name]
    env["HOME"] = str(run_dir / "home")
    env["TMPDIR"] = str(run_dir / "tmp")
    return env


def open_output(path: Path) -> tuple[int, int]:
    """The job's output file, created afresh: ``(write, read)`` descriptors.

    ``write`` (``O_APPEND``, write-only) is for the job's stdout and stderr;
    ``read`` is the agent's, opened through ``write``'s ``/proc`` link, so it
    is the same inode whatever the job does to the name later. Whatever has
    the name is unlinked first, never followed (``O_NOFOLLOW``, ``O_EXCL``).
    """
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    write = os.open(path, flags, 0o600)
    try:
        read = os.open(f"/proc/self/fd/{write}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        os.close(write)
        raise
    return write, read


class LocalRun(Run):
    """A running child process; its output is one merged stdout+stderr file (``output``)."""

    def __init__(
        self,
        process: Process,
        run_id: str,
        timeout: float | None,
        *,
        output: FileTail,
        sandboxed: bool = False,
    ) -> None:
        self.id = run_id
        self.pid = process.pid
        self._process = process
        self._output = output
        self._sandboxed = sandboxed
        self._deadline = time.monotonic() + timeout if timeout else None
        self._timeout = timeout
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._reading = False
        self._eof = anyio.Event()
        self._cancelled = False
        self._timed_out = False

    def facts(self) -> dict[str, int]:
        """The child's process id on the agent host."""
        return {"pid": self.pid}

    async def status(self) -> RunState:
        code = self._process.returncode
        if code is None:
            return RunState.RUNNING
        return self._result(code).state

    def logs(self) -> AsyncIterator[str]:
        """The merged output, line by line, as it comes; may be read once."""
        if self._reading:
            raise RuntimeError("the logs of a local run can be read only once")
        self._reading = True
        return self._read_lines()

    async def _read_lines(self) -> AsyncIterator[str]:
        splitter = LineSplitter()
        try:
            async for chunk in self._output.chunks():
                for line in splitter.feed(chunk):
                    self._tail.append(line)
                    yield line
            for line in splitter.flush():
                self._tail.append(line)
                yield line
        finally:
            self._eof.set()

    async def wait(self) -> RunResult:
        """Wait for the end; call :meth:`logs` first to read the output, else it is read here
        (for the last lines a failure reason quotes).

        One checkpoint first lets a reader task started just before pick up the logs.
        """
        await anyio.lowlevel.checkpoint()
        async with anyio.create_task_group() as tg:
            if not self._reading:
                tg.start_soon(self._drain)  # nobody reads the output: for the reason's lines
            if self._deadline is not None:
                with anyio.move_on_after(max(0.0, self._deadline - time.monotonic())) as scope:
                    await self._process.wait()
                if scope.cancelled_caught:
                    self._timed_out = True
                    await self.cancel(grace=TIMEOUT_GRACE)
            code = await self._process.wait()
            # The run is over: kill whatever the job left behind in its group, and
            # read its output to the end (what a descendant that escaped the group,
            # setsid, writes from now on is not read).
            self._signal_group(signal.SIGKILL)
            self._output.end()
            with anyio.move_on_after(LEFTOVER_EOF_SECONDS):
                await self._eof.wait()
        self._output.close()
        await self._process.aclose()
        return self._result(code)

    async def _drain(self) -> None:
        async for _ in self.logs():
            pass

    def _result(self, code: int) -> RunResult:
        if self._sandboxed and 128 < code <= 128 + signal.SIGRTMAX:
            code = 128 - code  # bwrap reports its job's death by signal N as 128+N
        exit_code = 128 - code if code < 0 else code
        if self._timed_out:
            return RunResult(
                RunState.FAILED,
                exit_code,
                f"timed out after {self._timeout:g}s "
                "(resource_args.local-process.timeout_seconds)" + self._tail_text(),
            )
        if self._cancelled:
            return RunResult(RunState.CANCELLED, exit_code, "cancelled")
        if code == 0:
            return RunResult(RunState.SUCCEEDED, 0)
        if code < 0:
            name = signal.Signals(-code).name
            why = f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
        else:
            why = f"exit code {code}"
        return RunResult(RunState.FAILED, exit_code, why + self._tail_text())

    def _tail_text(self) -> str:
        if not self._tail:
            return ""
        lines = [line if len(line) <= 300 else line[:300] + "..." for line in self._tail]
        return "; last lines of output:\n" + "\n".join(lines)

    async def cancel(self, grace: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds if still alive."""
        if self._process.returncode is not None:
            return
        self._cancelled = True
        self._signal_group(signal.SIGTERM, graceful=True)
        with anyio.move_on_after(grace):
            await self._process.wait()
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum: int, graceful: bool = False) -> None:
        """Signal the process group (the process is its leader, so its pid is the group id).

        A graceful signal to a sandboxed run spares the leader, ``bwrap``: it
        would die of it and take the sandbox down with SIGKILL at once, before
        the job could finish its SIGTERM handler.
        """
        if graceful and self._sandboxed:
            for pid in group_members(self.pid):
                if pid != self.pid:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signum)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)


def group_members(pgid: int) -> list[int]:
    """The pids of process group ``pgid`` (``/proc/<pid>/stat``'s fifth field)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
            members.append(int(entry.name))
    return members


def mount_points(ctx: JobContext, env: dict[str, str]) -> list[tuple[Path, Path]]:
    """``(source, <run dir>/<target>)`` of each of ``ctx.mounts``; sets each one's variable."""
    placed = []
    root = ctx.workdir.resolve()
    for mount in ctx.mounts:
        dest = Path(os.path.normpath(root / mount.target))
        if Path(mount.target).is_absolute() or dest == root or not dest.is_relative_to(root):
            raise PluginError(
                f"input artifact path {mount.target!r}: the local-process runner puts input "
                "artifacts in the run directory; give the artifact a relative path "
                "(input_artifacts[].path), or leave it out and read $" + (mount.env or "...")
            )
        if dest.exists() and not dest.is_symlink() and not _empty(dest):
            raise PluginError(
                f"input artifact path {mount.target!r} is taken in the run directory "
                f"({dest}); give the artifact another path"
            )
        if mount.env:
            env[mount.env] = str(dest)
        placed.append((mount.source, dest))
    return placed


def _empty(path: Path) -> bool:
    """An empty folder or file: a mount point an earlier try of this run left."""
    return not any(path.iterdir()) if path.is_dir() else path.stat().st_size == 0


def link_mounts(placed: list[tuple[Path, Path]]) -> None:
    """Without a sandbox: each mount point a symbolic link to its (read-only) source."""
    for source, dest in placed:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.is_dir():
            dest.rmdir()
        dest.symlink_to(source, target_is_directory=source.is_dir())


def find_program(argv0: str, cwd: Path, search_path: str) -> None:
    """Fail at submit, as an exec would, when the program does not exist.

    The sandbox or supervisor starts first and runs the program later, where a
    missing one would only be an exit code.
    """
    if "/" in argv0:
        found = os.access(cwd / argv0, os.X_OK)
    else:
        found = shutil.which(argv0, path=search_path) is not None
    if not found:
        raise PluginError(
            f"cannot start {argv0!r}: no such executable"
            + ("" if "/" in argv0 else f" on PATH ({search_path})")
        )


class LocalProcessRunner(Runner):
    """Runs a job as a child process of the agent, in its own process group."""

    name: ClassVar[str] = "local-process"
    needs_image: ClassVar[bool] = False
    resource_args_model: ClassVar[type[BaseModel] | None] = LocalProcessArgs

    def _args(self, job: ResolvedJob) -> LocalProcessArgs:
        return LocalProcessArgs.model_validate(job.resource_args.get(self.name, {}))

    def describe(self, job: ResolvedJob, image: Image | None) -> dict[str, Any]:
        """The argv, working directory and environment *names* (secrets as references)."""
        refuse_native_inputs(job, self.name)
        if job.git is not None:
            cwd = f"<checkout of {job.git.repository}>" + (f"/{job.workdir}" if job.workdir else "")
        else:
            cwd = job.workdir or "<run directory>"
        return {
            "argv": build_argv(job),
            "cwd": cwd,
            "env": sorted(job.env),
            "secrets": dict(sorted(job.secrets.items())),
            "baseline_env": list(BASELINE_NAMES),
            "resource_args": self._args(job).model_dump(exclude_none=True),
            "input_artifacts": {  # read-only, at <run dir>/<target> (see Input artifacts)
                input_env(ref): f"<run dir>/{input_target(ref)}" for ref in mounted_inputs(job)
            },
        }

    async def submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> LocalRun:
        options = self._args(job)
        refuse_native_inputs(job, self.name)
        argv = build_argv(job)
        cwd = working_directory(job, ctx)
        if not cwd.is_dir():
            raise PluginError(f"working directory {cwd} does not exist on the agent host")
        env = baseline_env(ctx.workdir)
        env["PWD"] = str(cwd)
        env.update(ctx.env)
        mounts = mount_points(ctx, env)
        find_program(argv[0], cwd, env["PATH"])
        user = job_user(options.run_as) if options.run_as is not None else None
        sandboxed = options.isolation == "sandbox"
        bwrap = find_bwrap() if sandboxed else None
        await warn_about_requirements(job, ctx)
        writable = [ctx.workdir / "home", ctx.workdir / "tmp"]
        if output := ctx.env.get("LAUNCHPLANE_OUTPUT_DIR"):
            writable.append(Path(output))
        for directory in writable:
            directory.mkdir(parents=True, exist_ok=True)
            if user is not None:
                os.chown(directory, *user)
        spawn: dict[str, Any] = {}
        if bwrap is not None:
            read_only = [Path(p) for p in options.read_only_paths]
            if not cwd.resolve().is_relative_to(ctx.workdir.resolve()):
                read_only.append(cwd)  # a host workdir: the job's code, read-only
            make_mount_points(mounts)
            argv = sandbox_argv(
                bwrap,
                argv,
                run_dir=ctx.workdir,
                cwd=cwd,
                read_only=read_only,
                user=user,
                mounts=mounts,
            )
        else:
            log.warning("job %s: %s", ctx.job_id, NO_ISOLATION_WARNING)
            await ctx.emit("warning: " + NO_ISOLATION_WARNING)
            argv = supervised_argv(argv)
            link_mounts(mounts)
            if user is not None:
                spawn = {"user": user[0], "group": user[1], "extra_groups": []}
        if options.nice:
            argv = niced_argv(argv, options.nice)
        try:
            output, reader = open_output(ctx.workdir / OUTPUT_FILE)
        except OSError as exc:
            raise PluginError(
                f"cannot create the job's output file in {ctx.workdir}: {exc.strerror or exc}"
            ) from exc
        try:
            process = await anyio.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                **spawn,
            )
        except OSError as exc:
            os.close(reader)
            raise PluginError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc
        finally:
            os.close(output)
        return LocalRun(
            process,
            ctx.run_id,
            options.timeout_seconds,
            output=FileTail(reader),
            sandboxed=sandboxed,
        )

    async def attach(self, run_id: str, run_dir: Path) -> Run | None:
        """Always None: a child process of a dead agent cannot be re-adopted."""
        return None


@hookimpl
def launchplane_register_runners(register: Any) -> None:
    register(LocalProcessRunner)

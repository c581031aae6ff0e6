"""A conformance check for runner plugins: does a ``Runner`` keep the contract the agent relies on?

The agent drives every runner the same way (``Runner`` and ``Run`` in
:mod:`launchplane.core.interfaces` write it down); :class:`RunnerConformance`
drives yours that way too, with real workloads, and raises
:class:`ConformanceError` (an ``AssertionError``) naming the broken promise.
It imports no test framework: call it from pytest (with anyio's plugin), from
unittest, or from a script under ``anyio.run``::

    from launchplane.core.spec import ResolvedJob
    from launchplane.testing import RunnerConformance

    def job(script: str) -> ResolvedJob:
        # How your runner runs a Python script (an image, a partition, ...).
        return ResolvedJob(resource="slurm", command=["python3", "-c", script])

    @pytest.mark.anyio
    async def test_slurm_runner_keeps_the_contract(tmp_path):
        await RunnerConformance(SlurmRunner(), job, tmp_path, readopt=True).check_all()

What is checked (each is a method of its own, too):

``check_describe``   ``describe(job, image)`` returns a JSON-serialisable mapping.
``check_output``     ``submit``; ``logs()`` taken before ``wait()`` and read alongside
                     it gets every line, in order (stdout and stderr merged), and
                     ends once the workload has; ``ctx.env`` reaches the workload;
                     ``wait()`` says ``succeeded`` with exit code 0 and
                     ``status()`` agrees.
``check_failure``    a script exiting 3 ends ``failed``, exit code 3, with a reason.
``check_cancel``     ``cancel(grace)`` from another task while ``wait()`` runs ends a
                     workload that ignores SIGTERM as ``cancelled`` within grace +
                     ``slack``; a second ``cancel`` after the end is harmless; a
                     ``cancel`` right after ``submit``, before ``logs()``/``wait()``,
                     ends the run ``cancelled`` too.
``check_attach``     ``attach`` of an unknown run returns None. With ``readopt=True``:
                     after a simulated agent restart (the reader dropped, a fresh
                     runner instance), ``attach(run_id, run_dir)`` returns a run whose
                     ``logs()`` replays the output from the start and whose ``wait()``
                     gets the result.

``job(script)`` turns a Python script (standard library only, Python 3.8+)
into a resolved job your runner can run; ``image`` is passed to ``submit``
for runners that need one. Every run a check starts is stopped before the
check returns, also when it fails. ``work_dir`` receives one run directory
per run (``JobContext.workdir``).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from launchplane.core.interfaces import (
    Image,
    JobContext,
    Run,
    Runner,
    RunResult,
    RunState,
)
from launchplane.core.spec import ResolvedJob

ScriptJob = Callable[[str], ResolvedJob]
"""Turns the source of a Python script into a job the runner under test runs."""

OUTPUT_LINES = 200
ENV_NAME = "LAUNCHPLANE_CONFORMANCE"
STDERR_LINE = "a line on stderr"
OUTPUT_SCRIPT = f"""\
import os, sys
for i in range({OUTPUT_LINES}):
    print("line", i, flush=True)
print("env", os.environ.get("{ENV_NAME}"), flush=True)
print("{STDERR_LINE}", file=sys.stderr, flush=True)
"""
FAILURE_SCRIPT = """\
print("about to fail", flush=True)
raise SystemExit(3)
"""
STUBBORN_SCRIPT = """\
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(600)
"""
SLEEP_SCRIPT = """\
import time
print("ready", flush=True)
time.sleep(600)
"""
ADOPT_SCRIPT = """\
import time
for i in range(3):
    print("before", i, flush=True)
time.sleep(3)
for i in range(3):
    print("after", i, flush=True)
"""
ADOPT_LINES = [f"before {i}" for i in range(3)] + [f"after {i}" for i in range(3)]


class ConformanceError(AssertionError):
    """The runner broke a promise of the contract; the message says which."""


@dataclass
class _Watched:
    lines: list[str]
    result: RunResult


@dataclass
class RunnerConformance:
    """Drive ``runner`` as the agent does and check what it must do; see the module docstring.

    ``fresh_runner`` builds the runner instance of a restarted agent
    (default: the runner's class, constructed as the registry does).
    ``grace`` is what each cancel passes; ``slack`` is how much longer than
    ``grace`` a cancel may take; ``timeout`` bounds each wait for a workload
    (a slow cluster may need more). ``name`` prefixes job ids and the queue
    name (a container name then starts with it).
    """

    runner: Runner
    job: ScriptJob
    work_dir: Path
    image: Image | None = None
    readopt: bool = False
    slack: float = 10.0
    timeout: float = 120.0
    grace: float = 1.0
    name: str = "conformance"
    fresh_runner: Callable[[], Runner] | None = None
    log: list[str] = field(default_factory=list)
    """Lines the runner sent with ``ctx.emit``, to look at when a check fails."""

    async def check_all(self) -> list[str]:
        """Every check, in order; the names of those that ran."""
        checks = [
            self.check_describe,
            self.check_output,
            self.check_failure,
            self.check_cancel,
            self.check_attach,
        ]
        for check in checks:
            await check()
        return [check.__name__ for check in checks]

    # -- the checks -----------------------------------------------------------------------

    async def check_describe(self) -> None:
        """``describe`` returns a JSON-serialisable mapping (``launchplane plan`` prints it)."""
        described = self.runner.describe(self.job(OUTPUT_SCRIPT), self.image)
        _expect(isinstance(described, dict), f"describe() returned {type(described).__name__}")
        try:
            json.dumps(described)
        except (TypeError, ValueError) as exc:
            raise ConformanceError(f"describe() is not JSON-serialisable: {exc}") from None

    async def check_output(self) -> None:
        """Every line in order while ``wait`` runs; ``ctx.env`` reaches the workload; success."""
        value = uuid.uuid4().hex
        async with self._started(OUTPUT_SCRIPT, env={ENV_NAME: value}) as (run, _):
            _expect(isinstance(run.id, str) and run.id != "", f"Run.id is {run.id!r}")
            watched = await self._watch(run)
        expected = [*(f"line {i}" for i in range(OUTPUT_LINES)), f"env {value}"]
        stdout = [line for line in watched.lines if line != STDERR_LINE]
        if stdout != expected:
            raise ConformanceError(
                "logs() read alongside wait() did not get every line in order: "
                + _first_difference(stdout, expected)
            )
        _expect(
            watched.lines.count(STDERR_LINE) == 1,
            f"the line written to stderr came {watched.lines.count(STDERR_LINE)} times, not once",
        )
        _expect_result(watched.result, RunState.SUCCEEDED, 0)
        _expect(watched.result.reason is None, f"a success has reason {watched.result.reason!r}")
        state = await run.status()
        _expect(state is RunState.SUCCEEDED, f"status() after wait() is {state}, not succeeded")

    async def check_failure(self) -> None:
        """A script exiting 3 ends failed with exit code 3 and a reason."""
        async with self._started(FAILURE_SCRIPT) as (run, _):
            watched = await self._watch(run)
        _expect_result(watched.result, RunState.FAILED, 3)
        _expect(bool(watched.result.reason), "a failed run has no reason")
        _expect(
            not watched.result.infrastructure_failure,
            "a script's own exit code is reported as an infrastructure failure",
        )
        _expect("about to fail" in watched.lines, f"the output was {watched.lines!r}")

    async def check_cancel(self) -> None:
        """``cancel(grace)`` ends a workload that ignores SIGTERM, at any time, more than once."""
        async with self._started(STUBBORN_SCRIPT) as (run, _):
            watched = await self._watch(run, cancel_after_line="ready")
            with self._within(self.slack, "a second cancel() after the run ended"):
                await run.cancel(self.grace)
        _expect_result(watched.result, RunState.CANCELLED)

        async with self._started(SLEEP_SCRIPT) as (run, _):
            with self._within(self.grace + self.slack, "cancel() right after submit()"):
                await run.cancel(self.grace)
            watched = await self._watch(run)
        _expect_result(watched.result, RunState.CANCELLED)

    async def check_attach(self) -> None:
        """None for an unknown run; with ``readopt``, a restarted agent re-adopts a running one."""
        missing = f"{self.name}-missing-{uuid.uuid4().hex[:8]}-1"
        fresh = self._fresh()
        try:
            found = await fresh.attach(missing, self.work_dir / missing)
            _expect(found is None, f"attach() of a run that never existed returned {found!r}")
            if self.readopt:
                await self._check_readoption(fresh)
        finally:
            await fresh.aclose()

    async def _check_readoption(self, fresh: Runner) -> None:
        async with self._started(ADOPT_SCRIPT) as (first, ctx):
            reader = first.logs()
            with self._within(self.timeout, f"the output line {ADOPT_LINES[2]!r}"):
                async for line in reader:
                    if line == ADOPT_LINES[2]:
                        break
            # The agent dies: its reader stops, and a new agent knows only the ids.
            aclose = getattr(reader, "aclose", None)
            if aclose is not None:
                await aclose()
            adopted = await fresh.attach(ctx.run_id, ctx.workdir)
            if adopted is None:
                raise ConformanceError(
                    f"attach({ctx.run_id!r}, run_dir) after a restart returned None for a live run"
                )
            async with self._stopping(adopted):
                watched = await self._watch(adopted)
        if watched.lines != ADOPT_LINES:
            raise ConformanceError(
                "logs() of a re-adopted run did not replay the output from the start: "
                + _first_difference(watched.lines, ADOPT_LINES)
            )
        _expect_result(watched.result, RunState.SUCCEEDED, 0)

    # -- driving runs as the agent does ----------------------------------------------------

    async def _watch(self, run: Run, *, cancel_after_line: str | None = None) -> _Watched:
        """``logs()`` once, right before ``wait()``, read alongside it (``agent/pipeline.py``).

        With ``cancel_after_line``, another task calls ``cancel(grace)`` once
        that line has arrived, and the run must end within grace + slack.
        """
        lines: list[str] = []
        seen, pumped = anyio.Event(), anyio.Event()
        cancelled_at: list[float] = []
        stream = run.logs()

        async def pump() -> None:
            async for line in stream:
                lines.append(line)
                if line == cancel_after_line:
                    seen.set()
            pumped.set()

        async def cancel() -> None:
            await seen.wait()
            cancelled_at.append(time.monotonic())
            await run.cancel(self.grace)

        with self._within(self.timeout, "wait()"):
            async with anyio.create_task_group() as watcher:
                if cancel_after_line is not None:
                    watcher.start_soon(cancel)
                async with anyio.create_task_group() as reader:
                    reader.start_soon(pump)
                    result = await run.wait()
                    ended = time.monotonic()
                    with anyio.move_on_after(self.slack):
                        await pumped.wait()
                    reader.cancel_scope.cancel()
                watcher.cancel_scope.cancel()
        _expect(pumped.is_set(), f"logs() did not end within {self.slack:g}s of wait() returning")
        if cancel_after_line is not None:
            _expect(bool(cancelled_at), f"the run ended before it printed {cancel_after_line!r}")
            took = ended - cancelled_at[0]
            _expect(
                took <= self.grace + self.slack,
                f"cancel(grace={self.grace:g}) took {took:.1f}s to end the run "
                f"(allowed: grace + {self.slack:g}s)",
            )
        return _Watched(lines, result)

    @contextlib.asynccontextmanager
    async def _started(
        self, script: str, env: dict[str, str] | None = None
    ) -> AsyncIterator[tuple[Run, JobContext]]:
        """Submit ``script`` in a fresh run directory; the run is stopped when the block ends."""
        ctx = self._context(env or {})
        with self._within(self.timeout, "submit()"):
            run = await self.runner.submit(self.job(script), self.image, ctx)
        async with self._stopping(run):
            yield run, ctx

    @contextlib.asynccontextmanager
    async def _stopping(self, run: Run) -> AsyncIterator[None]:
        try:
            yield
        finally:
            # Whatever happened, leave nothing running (shielded: also after a timeout).
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.grace + self.slack):
                await run.cancel(0)

    def _context(self, env: dict[str, str]) -> JobContext:
        job_id = f"{self.name}-{uuid.uuid4().hex[:8]}"
        run_id = f"{job_id}-1"
        workdir = self.work_dir / run_id
        (workdir / "output").mkdir(parents=True)
        return JobContext(
            job_id=job_id,
            run_id=run_id,
            attempt=1,
            queue=self.name,
            workdir=workdir,
            env=dict(env),
            log=self._emit,
        )

    async def _emit(self, line: str) -> None:
        self.log.append(line)

    def _fresh(self) -> Runner:
        """The runner of a restarted agent: a new instance, built as the registry builds one."""
        if self.fresh_runner is not None:
            return self.fresh_runner()
        cls = type(self.runner)
        return cls(options=self.runner.options) if cls.options_model else cls()

    @contextlib.contextmanager
    def _within(self, seconds: float, what: str) -> Iterator[None]:
        try:
            with anyio.fail_after(seconds):
                yield
        except TimeoutError:
            raise ConformanceError(f"{what} took longer than {seconds:g}s") from None


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ConformanceError(message)


def _expect_result(result: RunResult, state: RunState, exit_code: int | None = None) -> None:
    _expect(isinstance(result, RunResult), f"wait() returned {result!r}, not a RunResult")
    _expect(
        result.state is state,
        f"wait() says {result.state} (exit code {result.exit_code}, reason {result.reason!r}), "
        f"expected {state}",
    )
    if exit_code is not None:
        _expect(
            result.exit_code == exit_code,
            f"wait() says exit code {result.exit_code}, expected {exit_code}",
        )


def _first_difference(got: list[str], expected: list[str]) -> str:
    for index, (have, want) in enumerate(zip(got, expected, strict=False)):
        if have != want:
            return f"line {index} is {have!r}, expected {want!r}"
    return f"got {len(got)} lines, expected {len(expected)} (last: {got[-3:]!r})"

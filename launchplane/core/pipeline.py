"""One job on the agent: from a claimed lease to ``complete``.

Stages, in order, each with the name a failure reports as its stage:

``resolve``  the lease's queue config + job + overrides + template values ->
             one ResolvedJob, with the same code the server ran at submit time.
``secrets``  references -> values through the secret providers; every value
             is registered with the agent's redactor before anything else runs.
``prepare``  run directory ``<work>/<job_id>-<attempt>`` (``output/`` in it),
             git checkout, the process environment, ``launchplane_prepare_job``.
``build``    the builder (``builder.type``, default ``noop``) makes the image.
``run``      the runner starts the workload; its output is streamed to the
             server through the redactor; the result becomes the job's state.

Server calls for one lease go through a :class:`LeaseOutbox`, in two lanes:
events in order, and log lines in order (at most every 100 ms or per 200
lines, the first line at once), then ``complete`` once both are drained. The
pipeline never waits on the network before it spawns the workload, and a
job's first output line never waits behind its state events - with one
exception, for fencing: a lease whose claim call took longer than the lease
TTL is confirmed by the server before the workload starts (see
``JobPipeline._confirm_lease``).

Re-adoption: a run an earlier agent started (``Runner.attach``) is watched to
its end and completed under the same lease. The count of output lines the
server has stored is kept in ``<run dir>/logged-lines``, so the adopting agent
skips the lines already sent (with the same work directory; a batch in flight
when the earlier agent died may be sent twice, never lost). What the record
knew at launch (code, image, builder, variable names, stage times) is kept in
``<run dir>/launch.json``, so the adopting agent's record is as complete.

Stopping (``JobPipeline.stop``) comes in three kinds:

``cancel``    a user cancelled the job: stop the workload (SIGTERM, ``grace``,
              SIGKILL) and complete it as ``cancelled``.
``shutdown``  the agent is going away: stop the workload the same way and
              *release* the lease, so the job is re-queued (at-least-once:
              the next attempt starts over; a job that checkpoints to its
              output should resume from it). A job that finished on its own
              meanwhile is completed normally.
``stale``     the server says the lease belongs to someone else now (409, or
              ``stale`` in a heartbeat): stop the workload at once and make no
              further call for it - another agent owns the job (fencing).
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from launchplane.core import gitcode
from launchplane.core.client import (
    ApiError,
    LaunchplaneClient,
    NotFound,
    ServerUnreachable,
    StaleLease,
)
from launchplane.core.config import resolve_job
from launchplane.core.errors import ConfigError
from launchplane.core.interfaces import (
    Image,
    InfrastructureError,
    JobContext,
    PluginError,
    Run,
    RunResult,
    RunState,
)
from launchplane.core.plugins import PluginRegistry
from launchplane.core.records import RunRecorder
from launchplane.core.secrets import Redactor, resolve_secrets
from launchplane.core.spec import ResolvedJob
from launchplane.core.templates import expand_macros

log = logging.getLogger("launchplane.agent")

LOG_FLUSH_SECONDS = 0.1
LOG_BATCH_LINES = 200
MAX_BUFFERED_LINES = 100_000
"""Lines kept while the server is unreachable; older ones are dropped (and counted)."""
STALE_GRACE = 2.0
"""Seconds a fenced workload gets between SIGTERM and SIGKILL: someone else owns the job."""
RECORD_FILE = "record.json"
LOGGED_FILE = "logged-lines"
"""In the run directory: how many lines of the workload's output the server has stored."""
LAUNCH_FILE = "launch.json"
"""In the run directory: the record's facts as the workload was launched (re-adoption)."""


class StopMode(enum.StrEnum):
    CANCEL = "cancel"
    SHUTDOWN = "shutdown"
    STALE = "stale"


@dataclass
class AgentServices:
    """What every job of one agent shares."""

    client: LaunchplaneClient
    registry: PluginRegistry
    redactor: Redactor
    agent_id: str
    host: str
    work_dir: Path
    cancel_grace: float = 10.0
    agent_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    plugin_versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """How a job ended on this agent: ``state`` is a final job state, or released/fenced."""

    state: str
    exit_code: int | None = None
    stage: str | None = None
    reason: str | None = None
    run_dir: Path | None = None
    record: dict[str, Any] | None = None


class StageFailure(Exception):
    """A stage failed for a reason the user can act on."""

    def __init__(self, stage: str, reason: str, *, infrastructure: bool = False) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason
        self.infrastructure = infrastructure
        """Not the user's fault (e.g. an image pull): a queue's retry policy may re-run it."""


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


class JobPipeline:
    """Runs one leased job; :meth:`stop` may be called from any task of the agent.

    ``confirm_first``: start the workload only once the server has accepted a
    call on this lease (see :meth:`_confirm_lease`).
    """

    def __init__(
        self, lease: Mapping[str, Any], services: AgentServices, *, confirm_first: bool = False
    ) -> None:
        self.lease = lease
        self.services = services
        self.lease_id: str = lease["lease_id"]
        self.job_id: str = lease["job_id"]
        self.attempt: int = int(lease.get("attempt") or 1)
        self.queue: str = lease["queue"]
        self.lease_ttl: float = float(lease.get("lease_ttl_seconds") or 60.0)
        self.run_id = f"{self.job_id}-{self.attempt}"
        self.run_dir = services.work_dir / self.run_id
        self.stop_mode: StopMode | None = None
        self._stop_requested = anyio.Event()
        self._stage = "resolve"
        self._stage_scope = anyio.CancelScope()
        self._run: Run | None = None
        self._claimed_at = time.monotonic()
        """The pipeline is built as the claim answers: the start of the first-line latency."""
        self._recorder = RunRecorder(
            job_id=self.job_id,
            attempt=self.attempt,
            run_id=self.run_id,
            queue=self.queue,
            queue_version=lease.get("queue_version"),
            agent_id=services.agent_id,
            host=services.host,
        )
        self._outbox = LeaseOutbox(
            services.client,
            self.lease_id,
            self.job_id,
            on_stale=lambda: self.stop(StopMode.STALE),
            give_up_after=max(self.lease_ttl, 30.0),
            on_logged=self._note_logged,
            first_seq=int(lease.get("log_count") or 0) + 1,
        )
        self._confirm_first = confirm_first

    # -- control ---------------------------------------------------------------

    def stop(self, mode: StopMode) -> None:
        """Stop the job; the strongest request wins (stale > shutdown > cancel)."""
        order = [StopMode.CANCEL, StopMode.SHUTDOWN, StopMode.STALE]
        if self.stop_mode is not None and order.index(mode) <= order.index(self.stop_mode):
            return
        self.stop_mode = mode
        self._stop_requested.set()
        if self._run is None:
            self._stage_scope.cancel()

    # -- the job ----------------------------------------------------------------

    async def run(self, adopted: Run | None = None) -> Outcome:
        """Run the job to its end and report it; never raises for a job's own failure.

        ``adopted`` is a workload an earlier agent started (``Runner.attach``):
        it is watched to its end instead of being launched again.
        """
        self._recorder.mark("claimed")
        self._emit("claimed", {"queue": self.queue, "attempt": self.attempt})
        if self.lease.get("cancel_requested"):
            self.stop(StopMode.CANCEL)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._outbox.run)
            try:
                outcome = await self._execute(adopted)
            except Exception as exc:  # a bug, not the job's fault: still report it
                log.exception("job %s: agent error in stage %s", self.job_id, self._stage)
                reason = f"agent error ({type(exc).__name__}: {exc}); see the agent's log"
                outcome = self._complete(RunState.FAILED, None, self._stage, reason)
            finally:
                self._outbox.close()
        if self._outbox.stale:
            outcome = Outcome("fenced", run_dir=self.run_dir, reason="lease is stale")
        log.info(
            "job %s: %s%s",
            self.job_id,
            outcome.state,
            f" (exit code {outcome.exit_code})" if outcome.exit_code is not None else "",
        )
        return outcome

    async def _execute(self, adopted: Run | None) -> Outcome:
        try:
            with self._stage_scope:
                job = self._resolve()
                if adopted is not None:
                    self._restore_launch_facts(job)
                    await self._mask_secrets_of_adopted(job)
                    self._enter("run", "running")
                    self._run = adopted
                else:
                    ctx = await self._prepare(job)
                    image = await self._build(job, ctx)
                    if self._confirm_first and self.stop_mode is None:
                        await self._confirm_lease()
                    if self.stop_mode is None:  # a stage may not have had a checkpoint
                        await self._submit(job, image, ctx)
            if self._run is None:
                return self._stopped_before_run()
            result = await self._watch(self._run, adopted is not None)
        except StageFailure as failure:
            if self.stop_mode is not None:
                return self._stopped_before_run()
            return self._complete(
                RunState.FAILED,
                None,
                failure.stage,
                failure.reason,
                infrastructure_failure=failure.infrastructure,
            )
        if self.stop_mode is StopMode.STALE:
            return Outcome("fenced", result.exit_code, run_dir=self.run_dir)
        if self.stop_mode is StopMode.SHUTDOWN and result.state is RunState.CANCELLED:
            return self._release("agent shutting down")
        if result.state is RunState.CANCELLED:
            return self._complete(
                RunState.CANCELLED, result.exit_code, "run", "cancelled by request"
            )
        stage = None if result.state is RunState.SUCCEEDED else "run"
        return self._complete(
            result.state,
            result.exit_code,
            stage,
            result.reason,
            infrastructure_failure=result.infrastructure_failure,
        )

    def _stopped_before_run(self) -> Outcome:
        if self.stop_mode is StopMode.STALE:
            return Outcome("fenced", run_dir=self.run_dir)
        if self.stop_mode is StopMode.SHUTDOWN:
            return self._release("agent shutting down before the job started")
        return self._complete(
            RunState.CANCELLED, None, self._stage, f"cancelled by request during {self._stage}"
        )

    # -- stages -------------------------------------------------------------------

    def _resolve(self) -> ResolvedJob:
        self._enter("resolve", "resolving")
        registry = self.services.registry

        def validate(runner: str, args: dict[str, Any]) -> None:
            registry.runner(runner).validate_resource_args(args)

        try:
            job = resolve_job(
                self.lease["queue_config"],
                self.lease["spec"],
                self.lease.get("overrides") or (),
                self.lease.get("template_variables") or {},
                queue_name=self.queue,
                runner_validator=validate,
            )
        except (ConfigError, PluginError) as exc:
            raise StageFailure(
                "resolve",
                f"the job does not resolve against queue '{self.queue}' "
                f"(version {self.lease.get('queue_version')}): {exc}",
            ) from None
        self._recorder.job = job
        return job

    async def _secrets(self, job: ResolvedJob) -> dict[str, str]:
        """The job's secret values, each registered with the redactor before it is used."""
        services = self.services
        secrets = await resolve_secrets(job.secrets, services.registry, services.redactor)
        for value in secrets.values():
            services.redactor.add(value)
        return secrets

    async def _mask_secrets_of_adopted(self, job: ResolvedJob) -> None:
        """Resolve an adopted run's secrets again, only so its output and record are masked.

        The workload already has them; an agent that cannot resolve them now
        (a provider down) still watches the run to its end rather than lose
        it, and says that its output is not masked.
        """
        try:
            await self._secrets(job)
        except PluginError as exc:
            log.warning(
                "job %s: re-adopted, but its secrets did not resolve (%s): its output "
                "is not masked for them",
                self.job_id,
                self._scrub(str(exc)),
            )

    async def _prepare(self, job: ResolvedJob) -> JobContext:
        self._enter("secrets")
        services = self.services
        try:
            secrets = await self._secrets(job)
        except PluginError as exc:
            raise StageFailure(
                "secrets", f"{exc} (fix the queue's secrets: or the agent's secret source)"
            ) from None

        self._enter("prepare")
        output_dir = self.run_dir / "output"
        output_dir.mkdir(parents=True, exist_ok=True)
        ctx = JobContext(
            job_id=self.job_id,
            run_id=self.run_id,
            attempt=self.attempt,
            queue=self.queue,
            workdir=self.run_dir,
            log=self._log_line,
            secret_names=frozenset(secrets),
        )
        if job.git is not None:
            try:
                checkout = await gitcode.checkout(
                    job.git.repository,
                    self.run_dir / "code",
                    commit=job.git.commit,
                    branch=job.git.branch,
                    scrub=services.redactor.scrub,
                )
            except gitcode.GitError as exc:
                raise StageFailure(
                    "prepare", f"{exc} (check git.repository / git.commit / git.branch)"
                ) from None
            ctx.code_dir, ctx.git_commit = checkout.path, checkout.commit
            self._recorder.commit, self._recorder.dirty = checkout.commit, False
        elif job.workdir:
            await self._inspect_workdir(job.workdir)
        ctx.env = self._environment(job, secrets, output_dir)
        try:
            services.registry.hook.launchplane_prepare_job(job=job, ctx=ctx)
        except PluginError as exc:
            raise StageFailure("prepare", self._scrub(str(exc))) from None
        except Exception as exc:
            raise StageFailure(
                "prepare", self._scrub(f"a launchplane_prepare_job plugin failed: {exc!r}")
            ) from None
        self._recorder.env_names = [name for name in ctx.env if name not in secrets]
        self._recorder.secret_names = sorted(secrets)
        return ctx

    async def _inspect_workdir(self, workdir: str) -> None:
        """Record the commit of a local ``workdir`` in a git work tree, and whether it was dirty.

        Best effort: the record says ``null`` when git cannot tell, and the job
        runs anyway (its code is there; only the record is poorer).
        """
        path = Path(workdir).expanduser()
        if not path.is_absolute():
            return  # the runner refuses it, saying why
        try:
            tree = await gitcode.inspect_worktree(path)
        except gitcode.GitError as exc:
            log.warning(
                "job %s: the record has no commit for workdir %s: %s",
                self.job_id,
                path,
                self._scrub(str(exc)),
            )
            return
        if tree is not None:
            self._recorder.commit, self._recorder.dirty = tree.commit, tree.dirty

    def _macros(self, job: ResolvedJob, image: Image | None) -> dict[str, str]:
        declared = job.docker.image if job.docker is not None else None
        return {
            "run_id": self.run_id,
            "job_id": self.job_id,
            "queue": self.queue,
            "project": job.project or "",
            "entity": job.entity or "",
            "image_uri": image.ref if image is not None else (declared or ""),
        }

    def _environment(
        self, job: ResolvedJob, secrets: Mapping[str, str], output_dir: Path
    ) -> dict[str, str]:
        """Resolved env (macros expanded) + passthrough + secrets + ``LAUNCHPLANE_*``.

        ``${NAME}`` of the agent's environment and ``null`` (inherit) values can
        only have come from the queue config (the resolver refuses them in a
        job), and admins own that, so the agent fills them here.
        """
        agent_env = self.services.agent_env
        declared = {name: value for name, value in job.env.items() if value is not None}
        try:
            env: dict[str, str] = expand_macros(declared, self._macros(job, None), agent_env)
        except ConfigError as exc:
            raise StageFailure("prepare", self._scrub(f"env: {exc}")) from None
        inherited = [*job.passthrough_env, *(n for n, v in job.env.items() if v is None)]
        for name in inherited:
            if name not in declared and name in agent_env:
                env[name] = agent_env[name]
        env.update(secrets)
        env.update(
            LAUNCHPLANE_JOB_ID=self.job_id,
            LAUNCHPLANE_RUN_ID=self.run_id,
            LAUNCHPLANE_ATTEMPT=str(self.attempt),
            LAUNCHPLANE_QUEUE=self.queue,
            LAUNCHPLANE_OUTPUT_DIR=str(output_dir),
            LAUNCHPLANE_HYPERPARAMETERS=json.dumps(job.hyperparameters, sort_keys=True),
        )
        return env

    async def _build(self, job: ResolvedJob, ctx: JobContext) -> Image | None:
        self._enter("build", "building")
        registry = self.services.registry
        builder_name = _builder_name(job)
        self._recorder.builder = builder_name
        try:
            runner = registry.runner(job.resource)
            builder = registry.builder(builder_name)
            image = await builder.build(job, ctx)
        except PluginError as exc:
            raise StageFailure("build", self._scrub(str(exc))) from None
        except Exception as exc:
            raise StageFailure(
                "build",
                self._scrub(f"builder '{builder_name}' failed: {type(exc).__name__}: {exc}"),
            ) from None
        if image is None and runner.needs_image:
            raise StageFailure(
                "build",
                f"runner '{job.resource}' runs container images but the job has none: "
                f"set docker.image in the job, or a builder.type that builds one "
                f"(builder '{builder_name}' produced no image)",
            )
        self._recorder.image = image
        return image

    async def _submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> None:
        self._enter("run")
        macros = self._macros(job, image)
        agent_env = self.services.agent_env
        if image is not None:
            # ${image_uri} in env was expanded with the declared image; use the built one.
            for name, raw in job.env.items():
                if raw is not None and "${image_uri}" in raw and name in ctx.env:
                    ctx.env[name] = expand_macros(raw, macros, agent_env)
        update = {
            key: expand_macros(value, macros, agent_env)
            for key in ("command", "args", "entry_point")
            if (value := getattr(job, key)) is not None
        }
        launched = job.model_copy(update=update) if update else job
        self._save_launch_facts()  # the workload may outlive this agent from here on
        try:
            # Shielded: a stop arriving mid-spawn must not orphan a started process;
            # the stop is honoured by _watch as soon as submit returns.
            with anyio.CancelScope(shield=True):
                run = await self.services.registry.runner(job.resource).submit(launched, image, ctx)
        except InfrastructureError as exc:
            raise StageFailure("run", self._scrub(str(exc)), infrastructure=True) from None
        except PluginError as exc:
            raise StageFailure("run", self._scrub(str(exc))) from None
        except Exception as exc:
            raise StageFailure(
                "run",
                self._scrub(
                    f"runner '{job.resource}' could not start the job: {type(exc).__name__}: {exc}"
                ),
            ) from None
        self._run = run
        self._recorder.mark("running")
        self._outbox.event("running")
        self._emit("running", {"run_id": run.id})
        self._save_launch_facts()

    async def _confirm_lease(self) -> None:
        """Wait until the server has accepted a call on this lease (the first event).

        A claim answer proves the lease was live when the server made it, and
        the lease lives for its TTL; so if the claim call took less than the TTL
        the lease is surely live on arrival and nothing waits. A claim that took
        longer (a long-poll that waited, an agent that was suspended, a stalled
        network) may have been answered into a socket nobody read until the
        lease had expired and the job gone to another agent; such a workload
        must not start. This costs one round trip, only for those claims.
        """
        await self._outbox.confirmed.wait()
        if not self._outbox.live and not self._outbox.stale:
            log.warning(
                "job %s: the server never confirmed lease %s; not starting the job",
                self.job_id,
                self.lease_id,
            )
            self.stop(StopMode.STALE)

    async def _watch(self, run: Run, adopted: bool) -> RunResult:
        lines = run.logs()
        skip = self._logged_before() if adopted else 0
        async with anyio.create_task_group() as watcher:
            watcher.start_soon(self._cancel_on_stop, run)
            async with anyio.create_task_group() as pump:
                pump.start_soon(self._pump, lines, skip)
                result = await run.wait()
            watcher.cancel_scope.cancel()
        return result

    async def _cancel_on_stop(self, run: Run) -> None:
        await self._stop_requested.wait()
        grace = STALE_GRACE if self.stop_mode is StopMode.STALE else self.services.cancel_grace
        log.info(
            "job %s: stopping its workload (%s, grace %.0fs)", self.job_id, self.stop_mode, grace
        )
        await run.cancel(grace)

    async def _pump(self, lines: AsyncIterator[str], skip: int) -> None:
        """Output lines into the log; the first ``skip`` the server already has (re-adoption)."""
        self._outbox.output_logged = skip
        first = True
        async for line in lines:
            if skip:
                skip -= 1
                continue
            if first:
                first = False
                log.debug(
                    "job %s: first output line %.1f ms after the claim",
                    self.job_id,
                    (time.monotonic() - self._claimed_at) * 1000,
                )
            self._outbox.line(self.services.redactor.scrub(line), output=True)

    async def _log_line(self, line: str) -> None:
        """``ctx.log``: a line from a builder or plugin, into the job's log."""
        self._outbox.line(self.services.redactor.scrub(line))

    def _note_logged(self, count: int) -> None:
        """Keep the count of output lines the server has, for an agent that re-adopts the run."""
        if not self.run_dir.is_dir():
            return
        with contextlib.suppress(OSError):
            _replace_file(self.run_dir / LOGGED_FILE, f"{count}\n")

    def _logged_before(self) -> int:
        """Output lines an earlier agent of this run already sent (0 if unknown)."""
        try:
            return max(int((self.run_dir / LOGGED_FILE).read_text()), 0)
        except (OSError, ValueError):
            return 0

    def _save_launch_facts(self) -> None:
        """Keep what the record knows in the run directory, for an agent that re-adopts the run.

        Scrubbed like the record.
        """
        facts = self.services.redactor.scrub_obj(self._recorder.launch_facts())
        try:
            _replace_file(self.run_dir / LAUNCH_FILE, json.dumps(facts, indent=2) + "\n")
        except OSError as exc:
            log.warning("job %s: could not keep its launch facts (%s)", self.job_id, exc)

    def _restore_launch_facts(self, job: ResolvedJob) -> None:
        """Take back what the agent that launched this run knew (see ``_save_launch_facts``).

        Without them the record still has what the lease says (the spec, the
        builder); the commit, image and variable names stay empty.
        """
        try:
            facts = json.loads((self.run_dir / LAUNCH_FILE).read_text())
            if not isinstance(facts, dict):
                raise ValueError("not a JSON object")
            self._recorder.restore(facts)
        except (OSError, ValueError) as exc:
            self._recorder.builder = _builder_name(job)
            log.warning(
                "job %s: re-adopted without its launch facts (%s); its record lacks "
                "the commit, image and variable names",
                self.job_id,
                exc,
            )

    # -- reporting ----------------------------------------------------------------

    def _enter(self, stage: str, state: str | None = None) -> None:
        self._stage = stage
        if state is not None:
            self._recorder.mark(state)
            self._outbox.event(state)
            self._emit(state, {})

    def _emit(self, state: str, details: dict[str, Any]) -> None:
        self.services.registry.emit_event(self.job_id, state, details)

    def _scrub(self, text: str) -> str:
        return self.services.redactor.scrub(text)

    def _complete(
        self,
        state: RunState,
        exit_code: int | None,
        stage: str | None,
        reason: str | None,
        *,
        infrastructure_failure: bool = False,
    ) -> Outcome:
        """Report the end; ``infrastructure_failure`` (the runner's word for a failure that
        is not the job's code) lets the queue's retry policy run it again."""
        services = self.services
        infrastructure_failure = infrastructure_failure and state is RunState.FAILED
        reason = self._scrub(reason) if reason else None
        record = self._recorder.build(
            state=state,
            exit_code=exit_code,
            failure_stage=stage,
            reason=reason,
            plugins=services.plugin_versions,
            scrub_obj=services.redactor.scrub_obj,
        )
        if self.run_dir.is_dir():
            (self.run_dir / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
        self._emit(str(state), {"exit_code": exit_code, "stage": stage, "reason": reason})
        self._outbox.finish(
            "complete",
            lambda: services.client.complete(
                self.lease_id,
                str(state),
                exit_code=exit_code,
                stage=stage,
                reason=reason,
                record=record,
                infrastructure_failure=infrastructure_failure,
            ),
        )
        return Outcome(str(state), exit_code, stage, reason, self.run_dir, record)

    def _release(self, reason: str) -> Outcome:
        self._outbox.finish("release", lambda: self.services.client.release(self.lease_id, reason))
        return Outcome("released", reason=reason, run_dir=self.run_dir)


def _replace_file(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a temporary file, then a rename): an agent
    killed mid-write leaves the previous version for the agent that re-adopts the run."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _builder_name(job: ResolvedJob) -> str:
    return (job.builder.type if job.builder else None) or "noop"

"""One job on the agent: from a claimed lease to ``complete``.

Stages, in order, each with the name a failure reports as its stage:

``resolve``  the lease's job, as the server resolved it at submit (never
             resolved again here), checked against what only this agent
             knows: its runner's ``resource_args`` model.
``secrets``  references -> values through the secret providers; every value
             is registered with the agent's redactor before anything else runs.
``prepare``  run directory ``<work>/<job_id>-<attempt>`` (``output/`` in it),
             git checkout, the process environment, ``launchplane_prepare_job``.
``artifacts`` a code ``artifact:`` copied in as the job's code, and every input
             artifact resolved to a version and digest, fetched into the agent's
             cache (or left in its store for a runner that reads it there) and
             added to ``ctx.mounts`` (``agent.artifacts``).
``build``    the builder (``builder.type``, default ``noop``) makes the image.
``run``      the runner starts the workload; its output is streamed to the
             server through the redactor; the result becomes the job's state.
``artifacts`` again, only after the run succeeded: the output artifacts are
             uploaded; a failed upload fails the job in this stage.

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
skips the lines already sent (with the same work directory); a batch in flight
when the earlier agent died is settled by ``log-progress.json`` against the
lease's log position (``agent.leftovers``), so it is sent once - twice only after
a batch the earlier agent gave up on. A run that cannot be adopted (a local
process, which died with its agent) has its unsent output sent under its own
lease (kept in ``<work dir>/.leases``) by the next attempt's agent on the host before
its own (``leftovers.ship_leftovers``), or by the agent when it starts again
(``leftovers.ship_orphans``). What the record
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
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from launchplane.agent import gitcode
from launchplane.agent.artifacts import (
    ArtifactFailure,
    fetch_code,
    mount_inputs,
    needs_code_artifact,
    upload_outputs,
)
from launchplane.agent.environment import (
    job_environment,
    launch_macros,
    launch_variables,
    launched_job,
    with_built_image,
)
from launchplane.agent.leftovers import forget_output, save_lease, ship_late, ship_leftovers
from launchplane.agent.outbox import LeaseOutbox
from launchplane.agent.predecessor import stop_previous_attempt
from launchplane.agent.records import RunRecorder, workload_facts
from launchplane.agent.rundir import (
    LAUNCH_FILE,
    LOGGED_FILE,
    OUTPUT_DIR,
    RECORD_FILE,
    SPILL_FILE,
    replace_file,
    run_id,
)
from launchplane.agent.secrets import ResolvedSecrets, resolve_secrets
from launchplane.agent.services import AgentServices
from launchplane.core import pins
from launchplane.core.config.resolve import resource_args_errors
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
from launchplane.core.launch import builder_name, code_root
from launchplane.core.lease import Lease
from launchplane.core.plugin_checks import integration_models
from launchplane.core.spec import ResolvedJob

log = logging.getLogger("launchplane.agent")

STALE_GRACE = 2.0
"""Seconds a fenced workload gets between SIGTERM and SIGKILL: someone else owns the job."""

OUTPUT_QUIET_SECONDS = 2.0
"""After the verdict, a log stream silent this long is let go and the job reported.

The runner's ``wait`` has already given its streams their own time to end; a
stream that stays open past that (a pod in its termination grace, a process
the job left behind holding the pipe) must not keep a decided job ``running``.
Output that still flows is read to its end."""


class StopMode(enum.StrEnum):
    CANCEL = "cancel"
    SHUTDOWN = "shutdown"
    STALE = "stale"


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


class JobPipeline:
    """Runs one leased job; :meth:`stop` may be called from any task of the agent.

    ``confirm_first``: start the workload only once the server has accepted a
    call on this lease (see :meth:`_confirm_lease`).
    """

    def __init__(
        self, lease: Lease, services: AgentServices, *, confirm_first: bool = False
    ) -> None:
        self.lease = lease
        self.services = services
        self.lease_id = lease.lease_id
        self.job_id = lease.job_id
        self.attempt = lease.attempt
        self.queue = lease.queue
        self.lease_ttl = lease.lease_ttl_seconds
        self.run_id = run_id(self.job_id, self.attempt)
        self.run_dir = services.work_dir / self.run_id
        self.stop_mode: StopMode | None = None
        self._stop_requested = anyio.Event()
        self._stage = "resolve"
        self._stage_scope = anyio.CancelScope()
        self._run: Run | None = None
        self._claimed_at = time.monotonic()
        """The pipeline is built as the claim answers: the start of the first-line latency."""
        self._output_at = 0.0
        """``anyio.current_time()`` of the last output line the pump took in."""
        self._recorder = RunRecorder(
            job_id=self.job_id,
            attempt=self.attempt,
            run_id=self.run_id,
            queue=self.queue,
            queue_version=lease.queue_version,
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
            first_seq=lease.log_count + 1,
            spill_path=self.run_dir / SPILL_FILE,
        )
        self._confirm_first = confirm_first

    # -- control ---------------------------------------------------------------

    @property
    def ending(self) -> bool:
        """Its last call (complete or release) is on its way: a heartbeat answer that calls
        the lease stale may just have crossed it, and is no news."""
        return self._outbox.finishing

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
        if self.lease.cancel_requested:
            self.stop(StopMode.CANCEL)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._outbox.run)
            try:
                if adopted is None:
                    await self._stop_previous_attempt()
                # What the log lacks of earlier output: a killed agent's unsent lines.
                await ship_leftovers(
                    self.lease, self.services, self._outbox, adopted=adopted is not None
                )
                outcome = await self._execute(adopted)
            except Exception as exc:  # a bug, not the job's fault: still report it
                log.exception("job %s: agent error in stage %s", self.job_id, self._stage)
                reason = f"agent error ({type(exc).__name__}: {exc}); see the agent's log"
                outcome = self._complete(RunState.FAILED, None, self._stage, reason)
            finally:
                self._outbox.close()
        if self.stop_mode is StopMode.STALE and not self._outbox.delivered:
            # Fenced: by a 409 of its own calls (the outbox stops it as stale), or by a
            # heartbeat's answer (then nothing of its own may have been refused).
            outcome = Outcome("fenced", run_dir=self.run_dir, reason="lease is stale")
            # The lease ended under the run (this agent was taken for lost): what its
            # workload wrote since goes as late lines of its attempt.
            try:
                await ship_late(self.run_dir, self.services, wait=True)
            except Exception:  # a bug: the output stays for the agent's next start
                log.exception("job %s: could not ship its output as late lines", self.job_id)
        elif self._outbox.delivered:
            # Kept only after a crash, for a later agent to ship (``agent.leftovers``).
            forget_output(self.run_dir)
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
                    await self._inputs(job, ctx)
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
        if result.state is RunState.SUCCEEDED and job.output_artifacts:
            try:
                await self._outputs(job)
            except StageFailure as failure:
                return self._complete(
                    RunState.FAILED, result.exit_code, failure.stage, failure.reason
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
        """The lease's resolved job, if this agent's runner accepts its ``resource_args``.

        The server resolved the job at submit and checked it with the runner's
        model when it had that runner installed; it may not have, so the agent,
        which runs it, checks again. Nothing else is resolved here.
        """
        self._enter("resolve", "resolving")
        job = self.lease.resolved
        try:
            runner = self.services.registry.runner(job.resource)
            if runner.resource_args_model is not None and (
                errors := resource_args_errors(job, runner.resource_args_model)
            ):
                raise ConfigError(errors)
        except (ConfigError, PluginError) as exc:
            raise StageFailure(
                "resolve",
                f"the job does not resolve against queue '{self.queue}' "
                f"(version {self.lease.queue_version}): {exc}",
            ) from None
        self._recorder.job = job
        return job

    async def _secrets(self, job: ResolvedJob) -> ResolvedSecrets:
        """The job's secret values, each registered with the redactor before it is used."""
        services = self.services
        secrets = await resolve_secrets(
            job.secrets,
            services.registry,
            services.redactor,
            options=job.secret_providers,
            runner=job.resource,
        )
        for value in secrets.values.values():
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
            resolved_secrets = await self._secrets(job)
        except PluginError as exc:
            raise StageFailure(
                "secrets", f"{exc} (fix the queue's secrets: or the agent's secret source)"
            ) from None
        secrets = resolved_secrets.values

        self._enter("prepare")
        output_dir = self.run_dir / OUTPUT_DIR
        output_dir.mkdir(parents=True, exist_ok=True)
        ctx = JobContext(
            job_id=self.job_id,
            run_id=self.run_id,
            attempt=self.attempt,
            queue=self.queue,
            workdir=self.run_dir,
            log=self._log_line,
            secret_names=resolved_secrets.names,
        )
        ctx.native_secrets = dict(resolved_secrets.native)
        self._recorder.integrations = ctx.record_facts  # filled by prepare_job hooks
        if job.git is not None:
            try:
                checkout = await gitcode.checkout(
                    job.git.repository,
                    self.run_dir / "code",
                    commit=job.git.commit,
                    branch=job.git.branch,
                    patch=job.git.patch,
                    label=f"job {job.job or job.name or self.job_id}",
                    scrub=services.redactor.scrub,
                )
            except gitcode.GitError as exc:
                raise StageFailure("prepare", f"{exc} ({exc.hint})") from None
            ctx.code_dir, ctx.git_commit = checkout.path, checkout.commit
            self._recorder.commit, self._recorder.dirty = checkout.commit, checkout.patched
            await self._code_fetched(job, ctx)
        elif job.workdir:
            await self._inspect_workdir(job.workdir)
        ctx.env = self._environment(job, secrets, output_dir)
        if missing := sorted(set(job.integrations) - set(integration_models(services.registry))):
            raise StageFailure(
                "prepare",
                f"integrations.{missing[0]}: queue '{self.queue}' turns it on, and no plugin "
                "loaded on this agent implements it (launchplane plugins lists them; install "
                "or unblock it, e.g. --plugins=no:... removed)",
            )
        try:
            services.registry.hook.launchplane_prepare_job(job=job, ctx=ctx)
        except PluginError as exc:
            raise StageFailure("prepare", self._scrub(str(exc))) from None
        except Exception as exc:
            raise StageFailure(
                "prepare", self._scrub(f"a launchplane_prepare_job plugin failed: {exc!r}")
            ) from None
        self._recorder.env_names = [name for name in ctx.env if name not in secrets]
        self._recorder.secret_names = sorted(resolved_secrets.names)
        return ctx

    async def _code_fetched(self, job: ResolvedJob, ctx: JobContext) -> None:
        """Once the agent has put the job's code in ``ctx.code_dir`` (git, a code artifact):
        the job's pinned ``requirements`` written into it, and its own ``requirements.txt``
        lines not pinned by ``==`` warned of in the job's log (the server, which warned of
        the rest at submit, cannot see the code)."""
        with contextlib.suppress(PluginError):
            root = code_root(job, ctx)
            if root is None or not root.is_dir():
                return
            if job.requirements is not None:
                gitcode.write_requirements(root, job.requirements)
            for item in pins.requirements_file_unpinned(root):
                await self._log_line(f"warning: {item.path}: {item.message}")

    async def _inputs(self, job: ResolvedJob, ctx: JobContext) -> None:
        """The ``artifacts`` stage before the build: inputs pinned, fetched, in ``ctx.mounts``."""
        if not job.input_artifacts and not needs_code_artifact(job):
            return
        self._enter("artifacts")
        services = self.services
        with self._artifact_failures("input artifacts"):
            cache = services.artifact_cache
            code = await fetch_code(job, ctx, services.registry, cache, self.run_dir / "code")
            if code is not None:
                self._recorder.artifact_code = code
                await self._code_fetched(job, ctx)
            schemes = services.registry.runner(job.resource).artifact_uri_schemes
            await mount_inputs(
                job, ctx, services.registry, cache, self._recorder.artifact_inputs, schemes
            )
        self._recorder.env_names += [mount.env for mount in ctx.mounts if mount.env]

    async def _outputs(self, job: ResolvedJob) -> None:
        """The ``artifacts`` stage after a success: each output uploaded, its version recorded."""
        self._enter("artifacts")
        metadata = {"run_id": self.run_id, "job_id": self.job_id, "queue": self.queue}
        with self._artifact_failures("output artifacts"):
            await upload_outputs(
                job,
                self.run_dir / OUTPUT_DIR,
                self._macros(job, self._recorder.image),
                self.services.registry,
                metadata,
                self._log_line,
                self._recorder.artifact_outputs,
            )

    @contextlib.contextmanager
    def _artifact_failures(self, what: str) -> Iterator[None]:
        """Any failure of the ``artifacts`` stage as its StageFailure, scrubbed: the
        stage's own reasons as they are, anything else (a plugin's bug) with its type."""
        try:
            yield
        except ArtifactFailure as exc:
            raise StageFailure("artifacts", self._scrub(str(exc))) from None
        except Exception as exc:
            raise StageFailure(
                "artifacts", self._scrub(f"{what}: {type(exc).__name__}: {exc}")
            ) from None

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
        return launch_macros(
            job, run_id=self.run_id, job_id=self.job_id, queue=self.queue, image=image
        )

    def _environment(
        self, job: ResolvedJob, secrets: Mapping[str, str], output_dir: Path
    ) -> dict[str, str]:
        """The process environment: see :func:`launchplane.agent.environment.job_environment`."""
        variables = launch_variables(
            job,
            job_id=self.job_id,
            run_id=self.run_id,
            attempt=self.attempt,
            queue=self.queue,
            output_dir=output_dir,
        )
        try:
            return job_environment(
                job, self._macros(job, None), self.services.agent_env, secrets, variables
            )
        except ConfigError as exc:
            raise StageFailure("prepare", self._scrub(f"env: {exc}")) from None

    async def _build(self, job: ResolvedJob, ctx: JobContext) -> Image | None:
        self._enter("build", "building")
        registry = self.services.registry
        builder_name = _builder_name(job)
        self._recorder.builder = builder_name
        try:
            runner = registry.runner(job.resource)
            builder = registry.builder(builder_name, job.builder.options if job.builder else None)
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
            with_built_image(ctx.env, job, macros, agent_env)
        try:
            launched = launched_job(job, macros, agent_env)
        except ConfigError as exc:
            raise StageFailure("run", self._scrub(str(exc))) from None
        self._save_launch_facts()  # the workload may outlive this agent from here on
        self._save_lease()
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
                pumped = anyio.Event()
                pump.start_soon(self._pump, lines, skip, pumped)
                result = await run.wait()
                await self._until_output_quiet(pumped)
                pump.cancel_scope.cancel()
            watcher.cancel_scope.cancel()
        return result

    async def _until_output_quiet(self, pumped: anyio.Event) -> None:
        """Until the pump has read everything, or its stream went quiet after the verdict."""
        self._output_at = anyio.current_time()
        while not pumped.is_set():
            quiet_for = anyio.current_time() - self._output_at
            if quiet_for >= OUTPUT_QUIET_SECONDS:
                log.info(
                    "job %s: its log stream stayed open %.0fs after the run ended; not waiting",
                    self.job_id,
                    OUTPUT_QUIET_SECONDS,
                )
                return
            with anyio.move_on_after(OUTPUT_QUIET_SECONDS - quiet_for):
                await pumped.wait()

    async def _cancel_on_stop(self, run: Run) -> None:
        await self._stop_requested.wait()
        grace = STALE_GRACE if self.stop_mode is StopMode.STALE else self.services.cancel_grace
        log.info(
            "job %s: stopping its workload (%s, grace %.0fs)", self.job_id, self.stop_mode, grace
        )
        await run.cancel(grace)

    async def _pump(self, lines: AsyncIterator[str], skip: int, pumped: anyio.Event) -> None:
        """Output lines into the log; the first ``skip`` the server already has (re-adoption)."""
        try:
            await self._pump_lines(lines, skip)
        finally:
            pumped.set()

    async def _pump_lines(self, lines: AsyncIterator[str], skip: int) -> None:
        """Through a redaction window: a secret split over lines is masked, and a
        line whose end may start one waits for the next (50 ms at most)."""
        self._outbox.output_logged = skip
        first = True
        window = self.services.redactor.window(partial(self._outbox.line, output=True))
        async with anyio.create_task_group() as expiry:
            expiry.start_soon(window.run)
            try:
                async for line in lines:
                    self._output_at = anyio.current_time()
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
                    window.feed(line)
            finally:
                window.close()

    async def _stop_previous_attempt(self) -> None:
        """A lost agent's workload of the previous attempt ends before this one starts."""
        if said := await stop_previous_attempt(self.lease, self.services):
            await self._log_line(said)

    async def _log_line(self, line: str) -> None:
        """``ctx.log``: a line from a builder or plugin, into the job's log."""
        self._outbox.line(self.services.redactor.scrub(line))

    def _note_logged(self, count: int) -> None:
        """Keep the count of output lines the server has, for an agent that re-adopts the run."""
        if not self.run_dir.is_dir():
            return
        with contextlib.suppress(OSError):
            replace_file(self.run_dir / LOGGED_FILE, f"{count}\n")

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
            replace_file(self.run_dir / LAUNCH_FILE, json.dumps(facts, indent=2) + "\n")
        except OSError as exc:
            log.warning("job %s: could not keep its launch facts (%s)", self.job_id, exc)

    def _save_lease(self) -> None:
        """Keep the run's lease (``rundir.LEASES_DIR``): an agent that finds the run's output
        after the lease ended ships what the server lacks under it (``agent.leftovers``)."""
        try:
            save_lease(self.run_dir, self.lease)
        except OSError as exc:
            log.warning("job %s: could not keep its lease (%s)", self.job_id, exc)

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
        if self._run is not None:
            self._recorder.workload = workload_facts(self._run)
        record = self._recorder.build(
            state=state,
            exit_code=exit_code,
            failure_stage=stage,
            reason=reason,
            plugins=services.plugin_versions,
            scrub_obj=services.redactor.scrub_obj,
        )
        if self.run_dir.is_dir():
            replace_file(self.run_dir / RECORD_FILE, json.dumps(record, indent=2) + "\n")
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


def _builder_name(job: ResolvedJob) -> str:
    return builder_name(job)

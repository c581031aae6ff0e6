"""The agent: polls queues, claims jobs, runs each through the pipeline, drains on SIGTERM.

One anyio task group holds:

* a **claim loop per queue**. It takes a unit of capacity (``--max-jobs``)
  *before* claiming, so an agent never holds a lease for work it cannot start;
  the claim is a long-poll (``wait`` ~30 s), so an idle agent costs one open
  request per queue and picks a job up the moment it is submitted. With fewer
  slots than queues, the loops take turns (the limiter is fair);
* **one heartbeat loop** for all leases: one call renews every lease, every
  TTL/3 (the shortest TTL of the leases held). Its answer carries ``cancel``
  (the job is stopped: SIGTERM, ``--cancel-grace``, SIGKILL; completed as
  cancelled) and ``stale`` (the lease is someone else's now: the workload is
  stopped and never completed - fencing);
* **one task per job**, running :class:`~launchplane.agent.pipeline.JobPipeline`.

Identity
    ``--agent-id`` if given, else ``<hostname>-<hash>`` where the hash covers
    the server URL, the queues and the work directory: stable across restarts
    of the same agent, so the server can hand back the leases it still holds.
    A lock file in the work directory refuses a second agent with the same id
    on one host (it would release the first one's leases).

Queues it cannot serve
    At start, after registering, the agent reads each queue's config and
    leaves alone a queue whose runner or builder it lacks (not installed,
    its extra missing, blocked by ``--plugins=no:...``): one error line
    names the queue and the registry's reason, and that queue's jobs stay
    queued for an agent that can run them (:mod:`launchplane.agent.servable`).
    With no queue left to serve, ``launch-agent`` exits 2 with those lines.

Restart
    ``register`` answers with the leases the server thinks this agent holds
    (it died without releasing them). A runner that can re-adopt its workload
    (``Runner.attach(run_id, run_dir)``, with the run directory
    ``<work dir>/<job_id>-<attempt>``) gets it back and the agent watches it
    to the end under the same lease and attempt (output the server already has is
    skipped: ``<run dir>/logged-lines`` counts it; the run record gets the
    code, image and variable names its launcher kept in
    ``<run dir>/launch.json``); otherwise - the
    local-process runner: a child process cannot be handed to a new parent -
    the lease is released at once, so the job is re-queued now
    rather than when the lease expires. A local job died with its killed agent
    (SIGKILL, OOM: a parent-death signal), and its output is in its run
    directory: the agent that claims its next attempt with this work directory
    ships the lines the killed agent had not (:mod:`.leftovers`); a restarted
    agent sends them under the lease it is handed back before releasing it.
    An agent back after its leases expired (the jobs may have run again
    elsewhere, or ended) sends, in a task beside its claim loops, what the
    server lacks of each run directory left with output under the run's own
    ended lease (late lines, ``leftovers.ship_orphans``); that task looks again
    for output that could not go yet, for as long as the agent serves.

Fencing
    A lease call answered 409 (or a heartbeat that lists the lease as
    ``stale``) means the job is someone else's now: the workload is stopped
    (SIGTERM, then SIGKILL after 2 s) and nothing more is sent for it. A claim
    answer that took longer than the lease's TTL to arrive (a suspended agent,
    a stalled network) may describe a lease that has already expired: such a
    job starts only once the server has accepted a call on its lease, so a
    frozen agent that wakes up never starts work that went to another agent.

Shutdown (SIGTERM or SIGINT)
    First signal: stop claiming at once (in-flight long-polls are cancelled;
    the server hands no job to a caller that hung up), keep heartbeating, and
    let running jobs finish for up to ``--drain-timeout`` seconds. Second
    signal, or the drain timeout: stop every running workload (SIGTERM to its
    process group, ``--cancel-grace``, SIGKILL) and **release** its lease, so
    the job is re-queued with attempt+1 and another agent runs it again.
    Launches are at-least-once, never exactly-once: a job that must not redo
    work should checkpoint into ``$LAUNCHPLANE_OUTPUT_DIR`` (or its own store)
    and resume. Releasing rather than completing as cancelled is deliberate:
    the user did not cancel the job, the infrastructure went away. Then the
    agent exits 0.

Server trouble
    Connection errors and 5xx answers are retried with exponential backoff
    and full jitter; one log line when the server becomes unreachable and one
    when it is back. The agent never crashes on them. A refused token (401/403)
    at registration is fatal: retrying cannot fix it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.abc

from launchplane._version import __version__
from launchplane.agent.leftovers import ship_orphans, ship_then_release
from launchplane.agent.outbox import backoff_delay, is_transient
from launchplane.agent.pipeline import JobPipeline, Outcome, StopMode
from launchplane.agent.rundir import run_id
from launchplane.agent.servable import unservable_queues
from launchplane.agent.services import AgentServices
from launchplane.core import paths
from launchplane.core.client import ApiError, ClientError, LaunchplaneClient, StaleLease
from launchplane.core.lease import Lease, UnreadableLease
from launchplane.core.plugins import PluginRegistry, get_plugin_manager
from launchplane.core.redaction import Redactor
from launchplane.core.registry import SECRET_PROVIDER

log = logging.getLogger("launchplane.agent")

DEFAULT_LEASE_TTL = 60.0
IDLE_HEARTBEAT_SECONDS = 20.0
"""How often an agent without leases still says it is alive (``GET /agents``)."""


class AgentError(Exception):
    """The agent cannot start (bad token, identity taken); the message says why.

    ``exit_code`` is what ``launch-agent`` exits with: 2 for a setup the
    operator must change (no queue it can serve), 1 otherwise.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class AgentSettings:
    """What ``launch-agent`` options and ``agent.yaml`` configure."""

    server: str
    token: str
    queues: list[str]
    max_jobs: int | None = 4
    """Jobs run at once; None: no limit (W&B's ``--max-jobs -1``)."""
    plugins: list[str] = field(default_factory=list)
    strict_plugins: bool = False
    drain_timeout: float = 600.0
    cancel_grace: float = 10.0
    agent_id: str | None = None
    work_dir: Path | None = None
    claim_wait: float = 30.0
    secret_providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Default options per secret scheme; a queue's ``secret_providers`` win key by key."""
    check_queues: bool = True
    """Leave queues whose runner or builder this agent lacks (see the module docstring).
    ``launchplane run`` turns it off: its one job fails, saying why, rather than wait."""

    def resolved_work_dir(self) -> Path:
        return (self.work_dir or paths.data_dir() / "work").expanduser().resolve()

    def resolved_agent_id(self) -> str:
        """``--agent-id``, else hostname + a hash of what makes this agent this agent."""
        if self.agent_id:
            return self.agent_id
        identity = json.dumps(
            {
                "server": self.server.rstrip("/"),
                "queues": sorted(self.queues),
                "work_dir": str(self.resolved_work_dir()),
            },
            sort_keys=True,
        )
        digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
        return f"{socket.gethostname().split('.')[0]}-{digest}"


class Agent:
    """One agent process. ``await agent.run()`` until shutdown; see the module docstring."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        registry: PluginRegistry | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        if not settings.queues:
            raise AgentError("no queue to serve: pass --queue NAME (or queues: in the config)")
        self.settings = settings
        self.agent_id = settings.resolved_agent_id()
        self.work_dir = settings.resolved_work_dir()
        self.registry = registry or get_plugin_manager(
            settings.plugins,
            strict=settings.strict_plugins,
            defaults={SECRET_PROVIDER.key: settings.secret_providers},
        )
        self.redactor = redactor or Redactor()
        self.outcomes: dict[str, Outcome] = {}
        """Job id -> how it ended here (for ``launchplane run`` and tests)."""
        self._pipelines: dict[str, JobPipeline] = {}
        self._adopting: set[str] = set()
        """Run ids re-adopted at start whose pipeline has not begun yet (see _busy_runs)."""
        self._limiter = anyio.CapacityLimiter(
            math.inf if settings.max_jobs is None else settings.max_jobs
        )
        self._claim_scope = anyio.CancelScope()
        self._draining = False
        self._shutdown_requested = anyio.Event()
        self._stopping = False
        self._job_ended = anyio.Event()
        self._hb_wake = anyio.Event()
        self._next_heartbeat = 0.0
        self._server_up: bool | None = None
        self._started = anyio.Event()
        self._services: AgentServices | None = None

    # -- control (callable from any task of the loop) ---------------------------------

    def shutdown(self) -> None:
        """First call: stop claiming and drain. Second call: stop and release running jobs."""
        if not self._draining:
            self._draining = True
            self._shutdown_requested.set()
            log.info(
                "shutting down: claiming stopped; waiting for %d running job(s), up to %.0fs "
                "(send the signal again to stop them now)",
                len(self._pipelines),
                self.settings.drain_timeout,
            )
            self._claim_scope.cancel()
        else:
            self._stop_all("second shutdown request")

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a job this agent runs, without waiting for the next heartbeat."""
        for pipeline in self._pipelines.values():
            if pipeline.job_id == job_id:
                pipeline.stop(StopMode.CANCEL)
                return True
        return False

    async def wait_started(self) -> None:
        """Until the agent is registered and its claim loops run."""
        await self._started.wait()

    def _stop_all(self, why: str) -> None:
        if self._stopping:
            return
        self._stopping = True
        if self._pipelines:
            log.warning(
                "%s: stopping %d running job(s) and releasing their leases (they are re-queued)",
                why,
                len(self._pipelines),
            )
        for pipeline in self._pipelines.values():
            pipeline.stop(StopMode.SHUTDOWN)

    # -- main -------------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = True) -> None:
        """Serve until shutdown; returns once every job has finished or been released.

        Then, also after an error, every plugin instance is closed (``aclose``),
        for up to 30 seconds in all: a hanging client must not keep the agent up.
        """
        try:
            await self._run(handle_signals)
        finally:
            with anyio.move_on_after(30.0, shield=True):
                await self.registry.aclose()

    async def _run(self, handle_signals: bool) -> None:
        if self.work_dir.is_relative_to(paths.data_dir().resolve()):
            paths.private_dir(paths.data_dir())  # 0700 if the agent is the first to make it
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with self._identity_lock():
            async with LaunchplaneClient(self.settings.server, self.settings.token) as client:
                self._services = AgentServices(
                    client=client,
                    registry=self.registry,
                    redactor=self.redactor,
                    agent_id=self.agent_id,
                    host=socket.gethostname(),
                    work_dir=self.work_dir,
                    cancel_grace=self.settings.cancel_grace,
                    plugin_versions=self._plugin_versions(),
                )
                fatal: AgentError | None = None
                async with anyio.create_task_group() as root:
                    if handle_signals:
                        root.start_soon(self._signals)
                    try:
                        held = await self._register(client)
                        if held is not None:
                            await self._serve(client, root, held)
                    except AgentError as exc:
                        fatal = exc  # raised as is, not inside the task group's ExceptionGroup
                    root.cancel_scope.cancel()
                if fatal is not None:
                    raise fatal
        log.info("agent %s stopped", self.agent_id)

    async def _serve(
        self, client: LaunchplaneClient, root: anyio.abc.TaskGroup, held: list[Lease]
    ) -> None:
        queues = await self._servable_queues(client)
        root.start_soon(self._heartbeat_loop, client)
        async with anyio.create_task_group() as jobs:
            for lease in held:
                await self._take_back(client, jobs, lease)
            # Its first look comes before any claim: only runs of earlier agents, none of
            # this one's (a lease released above whose output is left had ended before it
            # was sent). Later looks leave out the runs this agent's pipelines ship.
            assert self._services is not None
            root.start_soon(ship_orphans, self._services, self._busy_runs)
            with self._claim_scope:
                if self._draining:
                    self._claim_scope.cancel()
                async with anyio.create_task_group() as claimers:
                    for queue in queues:
                        claimers.start_soon(self._claim_loop, client, jobs, queue)
                    log.info(
                        "agent %s serving queue(s) %s on %s (%s, work dir %s)",
                        self.agent_id,
                        ", ".join(queues),
                        self.settings.server,
                        "no job limit"
                        if self.settings.max_jobs is None
                        else f"max {self.settings.max_jobs} jobs",
                        self.work_dir,
                    )
                    self._started.set()
            self._started.set()
            with anyio.move_on_after(self.settings.drain_timeout):
                while self._pipelines:
                    self._job_ended = anyio.Event()
                    await self._job_ended.wait()
            if self._pipelines:
                self._stop_all(f"drain timeout ({self.settings.drain_timeout:g}s)")

    async def _servable_queues(self, client: LaunchplaneClient) -> list[str]:
        """The queues whose runner and builder this agent has (see ``agent.servable``)."""
        if not self.settings.check_queues:
            return list(self.settings.queues)
        refused = await unservable_queues(client, self.registry, self.settings.queues)
        for line in refused.values():
            log.error("%s", line)
        queues = [queue for queue in self.settings.queues if queue not in refused]
        if not queues:
            raise AgentError("; ".join(refused.values()) + "; no queue left to serve", exit_code=2)
        return queues

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                self.shutdown()

    @contextlib.contextmanager
    def _identity_lock(self) -> Iterator[None]:
        """Refuse to run twice with one identity on one host (see the module docstring)."""
        path = self.work_dir / f".agent-{self.agent_id}.lock"
        handle: IO[str] = path.open("a")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AgentError(
                    f"another agent with id {self.agent_id} is running on this host "
                    f"(it holds {path}); give this one another --agent-id or --work-dir"
                ) from None
            yield
        finally:
            handle.close()

    def _plugin_versions(self) -> dict[str, str]:
        return {
            info.name: info.version
            for info in self.registry.report()
            if not info.blocked and info.error is None
        }

    # -- registration and re-adoption ----------------------------------------------------

    async def _register(self, client: LaunchplaneClient) -> list[Lease] | None:
        """Register, retrying while the server is unreachable; None if shut down meanwhile."""
        failures = 0
        while not self._draining:
            try:
                held = await client.register_agent(
                    agent_id=self.agent_id,
                    host=socket.gethostname(),
                    queues=list(self.settings.queues),
                    version=__version__,
                    plugins=self._plugin_versions(),
                )
            except ApiError as exc:
                if not is_transient(exc):
                    raise AgentError(f"the server refused this agent: {exc}") from None
                failures = await self._server_trouble(exc, failures)
                continue
            except Exception as exc:
                if not is_transient(exc):
                    raise
                failures = await self._server_trouble(exc, failures)
                continue
            self._server_ok()
            return held
        return None

    async def _take_back(
        self, client: LaunchplaneClient, jobs: anyio.abc.TaskGroup, lease: Lease
    ) -> None:
        """Re-adopt a held lease's run if its runner can, else release it for re-queueing."""
        runner_name = lease.resolved.resource
        run = None
        rid = run_id(lease.job_id, lease.attempt)
        try:
            run = await self.registry.runner(runner_name).attach(rid, self.work_dir / rid)
        except Exception as exc:  # a runner that cannot look: treat as not re-adoptable
            log.warning(
                "job %s: %s runner could not re-adopt it: %s", lease.job_id, runner_name, exc
            )
        if run is not None:
            log.info("job %s: re-adopted its %s run after a restart", lease.job_id, runner_name)
            borrower = object()
            try:
                self._limiter.acquire_on_behalf_of_nowait(borrower)
            except anyio.WouldBlock:
                borrower = None  # already running: watch it even beyond --max-jobs
            self._adopting.add(rid)
            jobs.start_soon(self._run_job, lease, borrower, run)
            return
        log.info(
            "job %s: lease held from before a restart; %s runs cannot be re-adopted, releasing it",
            lease.job_id,
            runner_name,
        )
        assert self._services is not None
        reason = f"agent {self.agent_id} restarted and cannot re-adopt the run"
        with contextlib.suppress(StaleLease, ApiError):
            # What the killed agent had not sent of the run's output goes first.
            await ship_then_release(lease, self._services, reason)

    # -- claiming -----------------------------------------------------------------------

    async def _claim_loop(
        self, client: LaunchplaneClient, jobs: anyio.abc.TaskGroup, queue: str
    ) -> None:
        failures = 0
        while True:
            borrower = object()
            await self._limiter.acquire_on_behalf_of(borrower)
            sent = time.monotonic()
            try:
                lease = await client.claim(queue, self.agent_id, wait=self.settings.claim_wait)
            except BaseException as exc:
                self._limiter.release_on_behalf_of(borrower)
                if not isinstance(exc, Exception):
                    raise
                if isinstance(exc, UnreadableLease):
                    await self._fail_unreadable(client, exc)
                    continue
                if isinstance(exc, ApiError) and not is_transient(exc):
                    log.error("claim on queue %s refused: %s (retrying in 30s)", queue, exc)
                    await anyio.sleep(30)
                    continue
                if not is_transient(exc):
                    raise
                failures = await self._server_trouble(exc, failures)
                continue
            failures = 0
            self._server_ok()
            if lease is None:
                self._limiter.release_on_behalf_of(borrower)
                continue
            # An answer that took longer than the lease's TTL may come from a lease that
            # expired before it arrived: the pipeline confirms it before starting work.
            took = time.monotonic() - sent
            late = took >= lease.lease_ttl_seconds
            jobs.start_soon(self._run_job, lease, borrower, None, late)

    async def _fail_unreadable(self, client: LaunchplaneClient, exc: UnreadableLease) -> None:
        """Fail a claimed job whose lease this agent cannot read, rather than hold it."""
        reason = self.redactor.scrub(
            f"{exc} (the agent runs launchplane {__version__}: is the server newer?)"
        )
        log.error("job %s: %s", exc.job_id, reason)
        if exc.lease_id is None:
            return  # not even its id: the lease expires and the job is re-queued
        with contextlib.suppress(ClientError):
            await client.complete(exc.lease_id, "failed", stage="resolve", reason=reason)

    async def _run_job(
        self,
        lease: Lease,
        borrower: object | None,
        adopted: Any,
        confirm_first: bool = False,
    ) -> None:
        assert self._services is not None
        pipeline = JobPipeline(lease, self._services, confirm_first=confirm_first)
        self._pipelines[pipeline.lease_id] = pipeline
        self._adopting.discard(pipeline.run_id)
        if self._stopping:
            pipeline.stop(StopMode.SHUTDOWN)
        self._next_heartbeat = min(self._next_heartbeat, time.monotonic() + pipeline.lease_ttl / 3)
        self._hb_wake.set()
        log.info(
            "job %s: claimed from queue %s (attempt %d, lease %s)",
            pipeline.job_id,
            pipeline.queue,
            pipeline.attempt,
            pipeline.lease_id,
        )
        try:
            self.outcomes[pipeline.job_id] = await pipeline.run(adopted=adopted)
        finally:
            del self._pipelines[pipeline.lease_id]
            if borrower is not None:
                self._limiter.release_on_behalf_of(borrower)
            self._job_ended.set()

    def _busy_runs(self) -> set[str]:
        """The run ids whose output this agent's own pipelines ship, which the look for
        unshipped output (``leftovers.ship_orphans``) leaves alone."""
        return self._adopting | {p.run_id for p in self._pipelines.values()}

    # -- heartbeats -----------------------------------------------------------------------

    async def _heartbeat_loop(self, client: LaunchplaneClient) -> None:
        failures = 0
        ttl = DEFAULT_LEASE_TTL
        while True:
            self._hb_wake = anyio.Event()
            delay = self._next_heartbeat - time.monotonic()
            if delay > 0:
                with anyio.move_on_after(delay):
                    await self._hb_wake.wait()
                continue
            pipelines = dict(self._pipelines)
            interval = min([ttl, *(p.lease_ttl for p in pipelines.values())]) / 3
            if not pipelines:
                interval = IDLE_HEARTBEAT_SECONDS
            try:
                answer = await client.heartbeat(self.agent_id, list(pipelines))
            except Exception as exc:
                if not is_transient(exc) and not isinstance(exc, ApiError):
                    raise
                failures += 1
                if is_transient(exc):
                    self._note_down(exc)
                else:
                    log.error("heartbeat refused: %s", exc)
                self._next_heartbeat = time.monotonic() + min(interval, backoff_delay(failures))
                continue
            failures = 0
            self._server_ok()
            ttl = float(answer.get("lease_ttl_seconds") or ttl)
            self._next_heartbeat = time.monotonic() + interval
            # Looked up again: a pipeline may have ended, or sent its last call, while the
            # heartbeat was in flight; the server then calls its lease stale, rightly.
            for lease_id in answer.get("stale") or []:
                pipeline = self._pipelines.get(lease_id)
                if pipeline is not None and not pipeline.ending:
                    log.warning("job %s: lease is stale; stopping it", pipeline.job_id)
                    pipeline.stop(StopMode.STALE)
            for lease_id in answer.get("cancel") or []:
                pipeline = self._pipelines.get(lease_id)
                if pipeline is not None:
                    log.info("job %s: cancel requested", pipeline.job_id)
                    pipeline.stop(StopMode.CANCEL)

    # -- server state -------------------------------------------------------------------

    async def _server_trouble(self, exc: BaseException, failures: int) -> int:
        """Log the outage (once) and back off; a shutdown request cuts the wait short."""
        self._note_down(exc)
        with anyio.move_on_after(backoff_delay(failures + 1, base=0.5, cap=30.0)):
            await self._shutdown_requested.wait()
        return failures + 1

    def _note_down(self, exc: BaseException) -> None:
        if self._server_up is not False:
            self._server_up = False
            log.warning(
                "queue server %s unreachable (%s); retrying with backoff",
                self.settings.server,
                self.redactor.scrub(f"{type(exc).__name__}: {exc}"),
            )

    def _server_ok(self) -> None:
        if self._server_up is False:
            log.info("queue server %s reachable again", self.settings.server)
        self._server_up = True

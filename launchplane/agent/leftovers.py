"""What a lost agent had not shipped of a job's output, shipped once it (or a successor) can.

A runner that keeps its workload's output in the run directory
(:data:`~launchplane.core.output.OUTPUT_FILE`: the local-process runner) leaves
every line the job wrote on disk when its agent dies (SIGKILL, OOM, a host
reboot), including the lines the agent had read but not sent yet and those it
never read. The job dies with its agent. The agent keeps, out of the job's
reach, the lease each run was launched under
(:data:`~launchplane.agent.rundir.LEASES_DIR`), so whoever finds the output
later knows under which lease its lines go. Three paths ship them, each under
the run's own lease, so the lines keep the attempt that printed them:

* **Restarted within the lease TTL** (same id, same work directory): the
  agent is handed back the lease; a run it cannot re-adopt is released, and
  :func:`ship_then_release` first sends what the log lacks under that live
  lease, so the lines are stored wherever the next attempt runs.
* **Restarted after the lease ended** (expired while the agent was down; the
  job may have run again on another host, or ended): at start, beside its
  claim loops, the agent ships every run directory an earlier agent left with
  output (:func:`orphaned_runs`, :func:`ship_orphans`) as *late lines* of the
  ended lease (``POST /leases/{id}/late-logs``, taken for 7 days after the
  lease's last expiry time). The server stores them at the log's end. A
  workload that outlived its agent (a container, found by ``Runner.attach``)
  is such a run too: it is stopped, its lease being over, and what it printed
  that the server lacks is read from its own log as it ends. Output that
  cannot go yet (the server or the engine unreachable at that moment, the
  lease still live under another agent id, the job's secrets unresolved) is
  tried again, sooner after a miss, and at least every 5 minutes, so it does
  not wait for the agent's next start; so is output of this agent's own runs
  whose shipping gave up (the server unreachable for the outbox's whole retry
  window).
* **The next attempt claimed on the same work directory** (by another agent
  id, or the scan above could not ship them yet): :func:`ship_leftovers`,
  called first thing by the pipeline, ships the previous attempt's lines as
  late lines before the new attempt launches, so they precede its output. A
  run of an agent that kept no lease (an older version) has its lines queued
  under the new lease instead (their ``attempt`` is then the new one).

Which lines the server has
    The agent noted, before sending each batch with output in it, where that
    batch stood (:data:`~launchplane.agent.rundir.PROGRESS_FILE`: the output
    lines before it, its first seq, its line count, its output lines). Seqs
    are in the lease's own numbering, and the server keeps the lease's
    position in it (the number of its last line stored: ``log_count`` of a
    lease handed back, the answer of ``late-logs``), which late lines of
    another lease do not move. Only one batch is in flight at a time and a
    batch is stored whole or not at all, so the position says whether that
    last batch was stored: it was if the position reaches its last seq. The
    lines after it are the leftovers. No progress file means no output was
    sent. Late lines go through an outbox that keeps the same note, so an
    agent killed while it ships them leaves the next one exactly where it
    stopped. One case errs, towards a repeat: after a batch the agent gave up
    on (the server unreachable for its whole retry window) the seqs run ahead
    of the position, and the noted batch, if stored, is taken for not stored
    and sent again.

Once the server has every line, the output file (unmasked) and the kept
lease are removed. One task ships a run directory at a time: a lock
(``flock`` on the directory) keeps the start-up scan and a pipeline's
:func:`ship_leftovers` from shipping the same run twice; the scan leaves a
directory another task holds, the pipeline waits for it.

The same note makes re-adoption exact: an agent that re-adopts a run (a
container outlives its agent; the same attempt, the same lease) reads its
output again from the start and skips the lines ``logged-lines`` counts,
which the killed agent wrote only after the server's answer, so a batch in
flight at the kill was sent twice. :func:`ship_leftovers` sets that count
from the note first.

The leftovers are masked with the job's secrets (resolved again for that; if
they cannot be, nothing is shipped, rather than lines that could hold an
unmasked secret), through a redaction window as the pump's. An output file
that is not a regular file of the agent's own with one link (a job may
replace names in its run directory) is not read.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread

from launchplane.agent.outbox import LeaseOutbox, backoff_delay, is_transient
from launchplane.agent.rundir import (
    LEASES_DIR,
    LOGGED_FILE,
    PROGRESS_FILE,
    SPILL_FILE,
    lease_file,
    replace_file,
    run_id,
)
from launchplane.agent.secrets import resolve_secrets
from launchplane.core import paths
from launchplane.core.client import ApiError, ClientError
from launchplane.core.interfaces import PluginError, Run
from launchplane.core.lease import LATE_LINES_WINDOW, Lease
from launchplane.core.output import OUTPUT_FILE, LineSplitter

if TYPE_CHECKING:
    from launchplane.agent.services import AgentServices

log = logging.getLogger("launchplane.agent")

READ_BYTES = 1 << 20
"""Bytes of the output file read at a time (in a worker thread)."""
MAX_PROGRESS_BYTES = 4096
"""A progress file larger than this is not the agent's: it is ignored."""
LOCK_POLL_SECONDS = 0.05
"""How often a pipeline waiting for another task's shipping of a run directory looks again."""
WAIT_AFTER_STOP_SECONDS = 30.0
"""How long a stopped workload may take to end (and its output to be read) after the grace."""


RESCAN_FIRST_SECONDS = 2.0
"""After output that could not go yet, the agent looks again within this long."""
RESCAN_MAX_SECONDS = 300.0
"""The longest between two looks for output to ship (:func:`ship_orphans`)."""


@dataclass(frozen=True, slots=True)
class LateShipping:
    """What :func:`ship_late` did: ``lines`` sent; ``again``: some output may still be
    missing for a reason that may pass; ``refused``: the server refuses it for good."""

    lines: int = 0
    again: bool = False
    refused: bool = False


class OutputKept(Exception):
    """The job's secrets did not resolve, so its output cannot be masked: it is not
    shipped, and stays on disk for a later try (said in the agent's log)."""


def stored_output(run_dir: Path, log_count: int) -> int:
    """How many of the run's output lines the server holds, its lease's log position being
    ``log_count`` (see the module)."""
    fd = open_trusted(run_dir / PROGRESS_FILE)
    if fd is None:
        return 0  # no batch with output was ever sent (or not a note of the agent's)
    try:
        note = json.loads(os.pread(fd, MAX_PROGRESS_BYTES, 0))
        position, first_seq = int(note["position"]), int(note["first_seq"])
        lines, output = int(note["lines"]), int(note["output"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable (%s); shipping the whole output", run_dir / PROGRESS_FILE, exc)
        return 0
    finally:
        os.close(fd)
    stored = log_count >= first_seq + lines - 1
    return max(0, position + output if stored else position)


def note_stored_output(run_dir: Path, log_count: int) -> None:
    """Set ``logged-lines`` to what :func:`stored_output` says, when the run has a progress note."""
    if not (run_dir / PROGRESS_FILE).is_file():
        return  # no output sent, or an agent that kept no notes: logged-lines stands
    try:
        replace_file(run_dir / LOGGED_FILE, f"{stored_output(run_dir, log_count)}\n")
    except OSError as exc:
        log.warning("%s: could not correct it: %s", run_dir / LOGGED_FILE, exc)


def open_output(run_dir: Path) -> int | None:
    """A read-only descriptor of the run's output file, if it is one the agent can trust."""
    return open_trusted(run_dir / OUTPUT_FILE)


def open_trusted(path: Path) -> int | None:
    """A read-only descriptor of ``path`` if it is a regular file of the agent's own with one
    link (not a link, FIFO or second name a job left in its run directory); else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid != os.geteuid():
        log.warning("%s is not the agent's own file; not reading it", path)
        os.close(fd)
        return None
    return fd


def read_lease(run_dir: Path) -> Lease | None:
    """The lease the run in ``run_dir`` was launched under (:func:`save_lease`), if the
    agent kept one that parses; else None."""
    path = lease_file(run_dir)
    fd = open_trusted(path)
    if fd is None:
        return None
    try:
        with os.fdopen(fd, "rb") as file:
            return Lease.model_validate_json(file.read())
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable (%s)", path, exc)
        return None


def save_lease(run_dir: Path, lease: Lease) -> None:
    """Keep ``lease``, the run's, before its workload starts (see :func:`ship_late`)."""
    path = lease_file(run_dir)
    paths.private_dir(path.parent)
    replace_file(path, lease.model_dump_json() + "\n")


def orphaned_runs(work_dir: Path, busy: Collection[str]) -> list[Path]:
    """The run directories of ``work_dir`` left with output the server may lack: those with
    a kept lease (removed once the server had the run's whole output), the runs ``busy``
    (ids: this agent's pipelines, re-adopted runs among them) left out. Their output may
    be in the run's output file, or in a workload that outlived its agent (a container:
    :func:`ship_late` stops it)."""
    try:
        kept = sorted((work_dir / LEASES_DIR).glob("*.json"))
    except OSError as exc:
        log.warning("%s: cannot look for unshipped output: %s", work_dir, exc)
        return []
    return [work_dir / path.stem for path in kept if path.stem not in busy]


async def ship_orphans(services: AgentServices, busy: Callable[[], Collection[str]]) -> None:
    """Ship, for as long as the agent serves, the output runs of its work directory left.

    First those of earlier agents (called at start), then, each time it looks
    again, any of this agent's own whose shipping could not finish (the server
    unreachable for the outbox's whole retry window). A run whose output could
    not go for a reason that may pass - the server or the runner's engine
    unreachable, its lease still live under another agent id, the job's secrets
    unresolved - is tried again: the next look comes within
    :data:`RESCAN_FIRST_SECONDS` of such a miss, each later one within twice as
    long (jittered, so agents do not look in step), up to
    :data:`RESCAN_MAX_SECONDS`, also the pace while nothing is missing (the
    look is one directory listing). A run the server refuses for good (its
    lease unknown, of a queue this token does not serve, or ended past the late
    lines' window) keeps its output on disk and is not tried again until the
    agent's next start. ``busy``: the run ids of this agent's pipelines, which
    ship their own output.
    """
    refused: set[Path] = set()
    misses = 0
    while True:
        missed = False
        for run_dir in orphaned_runs(services.work_dir, busy()):
            if run_dir in refused:
                continue
            try:
                shipping = await ship_late(run_dir, services, wait=False)
            except Exception:  # a bug: the other runs are still shipped, and the agent serves
                log.exception("%s: could not ship the output left there", run_dir)
                refused.add(run_dir)
                continue
            if shipping.refused:
                refused.add(run_dir)
            missed = missed or shipping.again
        misses = misses + 1 if missed else 0
        await anyio.sleep(
            backoff_delay(misses - 1, RESCAN_FIRST_SECONDS, RESCAN_MAX_SECONDS)
            if misses
            else RESCAN_MAX_SECONDS
        )


@contextlib.asynccontextmanager
async def _shipping(run_dir: Path, *, wait: bool) -> AsyncIterator[bool]:
    """Hold the run directory's shipping lock (``flock`` on the directory itself, which a
    job cannot replace): True once held, False when another holds it and not ``wait``."""
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        yield False
        return
    try:
        while not _try_lock(fd):
            if not wait:
                yield False
                return
            await anyio.sleep(LOCK_POLL_SECONDS)
        yield True
    finally:
        os.close(fd)  # releases the lock


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


async def ship_late(run_dir: Path, services: AgentServices, *, wait: bool) -> LateShipping:
    """Send what the server lacks of a run's output under its own lease, which has ended.

    For a run whose lease expired while its agent was down (the job may have
    run again on another host, or ended). The lease's log position (the
    ``late-logs`` answer, which also says the lease has ended) and the progress
    note say which output lines the server has; the others are masked and sent
    as late lines, numbered on from that position, and the progress note moves
    on as they go, so a repeat (this agent killed meanwhile) sends none twice.
    The lines are the run's output file's, or, without one, those of the
    workload itself if its runner finds it (``Runner.attach``: a container that
    outlived its agent), which is stopped first: its lease is over
    (:func:`stop_and_drain`). Once the server has them all, the output file and
    the kept lease are removed. One task at a time per run directory (a lock;
    without ``wait`` a directory another task is shipping is left to it).
    Output that cannot go yet (the server or the runner's engine unreachable,
    the lease still live, the job's secrets unresolved) stays, with the lease,
    for a later try.
    """
    async with _shipping(run_dir, wait=wait) as locked:
        lease = read_lease(run_dir) if locked else None
        if lease is None:
            return LateShipping()
        run: Run | None = None
        if not (run_dir / OUTPUT_FILE).exists():
            try:
                runner = services.registry.runner(lease.resolved.resource)
                run = await runner.attach(run_dir.name, run_dir)
            except Exception as exc:  # the engine may be back later: keep the lease
                log.warning(
                    "job %s: cannot look for attempt %d's workload: %s",
                    lease.job_id,
                    lease.attempt,
                    exc,
                )
                return LateShipping(again=True)
            if run is None:
                forget_output(run_dir)  # nothing of the run is left to ship
                return LateShipping()
        client = services.client
        try:
            position = await client.append_late_logs(lease.lease_id, [], 1)
        except ClientError as exc:
            refused = _refused_for_good(exc, lease)
            log.warning(
                "job %s: the output of attempt %d stays in %s (not shipped%s): %s",
                lease.job_id,
                lease.attempt,
                run_dir if run is None else "its workload",
                "" if refused else "; tried again later",
                exc,
            )
            return LateShipping(again=not refused, refused=refused)
        outbox = LeaseOutbox(
            client,
            lease.lease_id,
            lease.job_id,
            on_stale=lambda: None,
            give_up_after=max(lease.lease_ttl_seconds, 30.0),
            first_seq=position + 1,
            spill_path=run_dir / SPILL_FILE,
            late=True,
        )
        kept = False
        shipped = 0
        async with anyio.create_task_group() as lanes:
            lanes.start_soon(outbox.run)
            try:
                at = lease.model_copy(update={"log_count": position})
                if run is None:
                    shipped = await _ship_run(run_dir, at, services, outbox, own=True)
                else:
                    shipped = await _ship_workload(run, run_dir, at, services, outbox)
            except OutputKept:
                kept = True
            except Exception as exc:  # the engine failed mid-way: what was queued still goes
                if run is None:
                    raise
                log.warning("job %s: attempt %d's workload: %s", lease.job_id, lease.attempt, exc)
            finally:
                outbox.finish("late-logs", partial(client.append_late_logs, lease.lease_id, [], 1))
        if outbox.delivered and not kept:
            forget_output(run_dir)
        return LateShipping(shipped, again=kept or not outbox.delivered)


def _refused_for_good(exc: ClientError, lease: Lease) -> bool:
    """The server will not take the lease's late lines however long the agent waits: the
    lease ended longer ago than the late lines' window (409, which a live lease also
    gets, for now), or another refusal (4xx: unknown, of a queue this token does not
    serve)."""
    if is_transient(exc) or not isinstance(exc, ApiError):
        return False
    if exc.status == 409:  # the server's times are UTC-aware (tables.UTCDateTime)
        return datetime.now(UTC) - lease.expires_at > LATE_LINES_WINDOW
    return True


async def stop_and_drain(run: Run, grace: float, sink: Callable[[str], None] | None = None) -> None:
    """Stop ``run`` (``cancel(grace)``; nothing for one that ended) and wait for its end,
    its output from the start going to ``sink`` meanwhile, as the Run contract wants
    ``logs()`` read while ``wait()`` runs (a container is removed once waited for)."""

    async def drain() -> None:
        async for line in run.logs():
            if sink is not None:
                sink(line)

    with anyio.move_on_after(grace + WAIT_AFTER_STOP_SECONDS):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(drain)
            await run.cancel(grace)
            await run.wait()


async def _ship_workload(
    run: Run, run_dir: Path, lease: Lease, services: AgentServices, outbox: LeaseOutbox
) -> int:
    """Stop a workload whose lease ended and queue its output the log lacks into ``outbox``."""
    skip = stored_output(run_dir, lease.log_count)
    outbox.output_logged = skip
    if not (await run.status()).final:
        log.warning(
            "job %s: attempt %d's %s workload outlived its lease (its agent was lost); stopping it",
            lease.job_id,
            lease.attempt,
            lease.resolved.resource,
        )
    if not await _mask_secrets(lease, services):
        await stop_and_drain(run, services.cancel_grace)
        return 0
    shipped = 0
    window = services.redactor.window(partial(outbox.line, output=True))

    def sink(line: str) -> None:
        nonlocal skip, shipped
        if skip:
            skip -= 1
            return
        window.feed(line)
        shipped += 1

    try:
        await stop_and_drain(run, services.cancel_grace, sink)
    finally:
        window.close()
    if shipped:
        log.info(
            "job %s: shipping %d output lines of attempt %d that its agent had not",
            lease.job_id,
            shipped,
            lease.attempt,
        )
    return shipped


def forget_output(run_dir: Path) -> None:
    """Remove the run's unredacted output file once the server has all of it, masked:
    secret values the job printed must not stay on the agent's disk; and its kept lease,
    of no more use."""
    for path in (run_dir / OUTPUT_FILE, lease_file(run_dir)):
        with contextlib.suppress(OSError):
            path.unlink()


async def ship_leftovers(
    lease: Lease, services: AgentServices, outbox: LeaseOutbox, *, adopted: bool = False
) -> int:
    """Ship the previous attempt's output lines the log lacks, ahead of everything else.

    Returns how many were shipped. Call before anything else is queued in ``outbox``.
    The previous run's lease known (kept by its agent), the lines are sent under it
    (:func:`ship_late`, awaited: they come before the new attempt's); else (a run
    of an agent that kept no lease) they are queued in ``outbox``, as this lease's.
    ``adopted``: the lease's run is re-adopted; nothing is queued, its
    ``logged-lines`` is made exact instead (see the module).
    """
    if adopted:
        note_stored_output(services.work_dir / run_id(lease.job_id, lease.attempt), lease.log_count)
        return 0
    if lease.attempt < 2:
        return 0
    previous = services.work_dir / run_id(lease.job_id, lease.attempt - 1)
    if lease_file(previous).exists():
        return (await ship_late(previous, services, wait=True)).lines
    try:
        return await _ship_run(previous, lease, services, outbox, own=False)
    except OutputKept:
        return 0


async def ship_then_release(lease: Lease, services: AgentServices, reason: str) -> int:
    """Send what the log lacks of this lease's own run's output, then release the lease.

    For a lease handed back to a restarted agent whose run cannot be re-adopted.
    The lines count as the run's output (its progress note moves on), so the
    agent of the next attempt does not ship them again. Returns how many were sent.
    """
    run_dir = services.work_dir / run_id(lease.job_id, lease.attempt)
    outbox = LeaseOutbox(
        services.client,
        lease.lease_id,
        lease.job_id,
        on_stale=lambda: None,
        give_up_after=lease.lease_ttl_seconds,
        first_seq=lease.log_count + 1,
        spill_path=run_dir / SPILL_FILE if run_dir.is_dir() else None,
    )
    try:
        shipped = await _ship_run(run_dir, lease, services, outbox, own=True)
    except OutputKept:  # released all the same: the job goes on; its output waits
        shipped, kept = 0, True
    else:
        kept = False
    outbox.finish("release", partial(services.client.release, lease.lease_id, reason))
    await outbox.run()
    if outbox.delivered and not kept:
        forget_output(run_dir)
    return shipped


async def _ship_run(
    run_dir: Path, lease: Lease, services: AgentServices, outbox: LeaseOutbox, *, own: bool
) -> int:
    """Queue ``run_dir``'s output lines the log lacks (``own``: as the lease's own output)."""
    fd = open_output(run_dir)
    if fd is None:
        return 0
    try:
        skip = stored_output(run_dir, lease.log_count)
        if own:
            outbox.output_logged = skip
        return await _ship(fd, skip, lease, services, outbox, own=own)
    except OSError as exc:
        log.warning("job %s: could not read %s: %s", lease.job_id, run_dir / OUTPUT_FILE, exc)
        return 0
    finally:
        os.close(fd)


async def _ship(
    fd: int, skip: int, lease: Lease, services: AgentServices, outbox: LeaseOutbox, *, own: bool
) -> int:
    """The output lines of ``fd`` after the first ``skip``, masked, into ``outbox``
    (:class:`OutputKept` when the job's secrets do not resolve to mask them)."""
    window = None
    splitter = LineSplitter()
    shipped = 0
    offset = 0
    while True:
        chunk = await anyio.to_thread.run_sync(os.pread, fd, READ_BYTES, offset)
        offset += len(chunk)
        lines = splitter.feed(chunk) if chunk else splitter.flush()
        if skip >= len(lines):
            skip -= len(lines)
        else:
            if window is None:
                if not await _mask_secrets(lease, services):
                    raise OutputKept
                # The new run directory now, so that many leftovers can wait on disk
                # (the outbox's spill file) rather than in memory.
                run_dir = services.work_dir / run_id(lease.job_id, lease.attempt)
                run_dir.mkdir(parents=True, exist_ok=True)
                window = services.redactor.window(partial(outbox.line, output=own))
            for line in lines[skip:]:
                window.feed(line)
            shipped += len(lines) - skip
            skip = 0
        if not chunk:
            break
    if window is not None:
        window.close()
        log.info(
            "job %s: shipping %d output lines of attempt %d that its agent had not",
            lease.job_id,
            shipped,
            lease.attempt if own else lease.attempt - 1,
        )
    return shipped


async def _mask_secrets(lease: Lease, services: AgentServices) -> bool:
    """Register the job's secrets with the redactor; False (said in the log) if they fail."""
    job = lease.resolved
    try:
        await resolve_secrets(
            job.secrets,
            services.registry,
            services.redactor,
            options=job.secret_providers,
            runner=job.resource,
        )
    except PluginError as exc:
        log.warning(
            "job %s: the output its killed agent had not shipped stays in its run directory "
            "(not shipped): the job's secrets did not resolve to mask it (%s)",
            lease.job_id,
            services.redactor.scrub(str(exc)),
        )
        return False
    return True

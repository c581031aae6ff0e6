"""One attempt of a job at a time on a host: a lost agent's workload is stopped first.

A workload that outlives its agent (a docker container; any run
:meth:`~launchplane.core.interfaces.Runner.attach` can find again) keeps
running when its agent dies. An agent back within the lease TTL re-adopts it
(``agent.loop``); one back later, or another agent with the same work
directory, finds the job re-queued as a new attempt: the server knows only
that the lease expired, not whether the workload still runs. Before anything
of attempt N runs, :func:`stop_previous_attempt` asks the job's runner for
attempt N-1's workload on this host and stops it (``Run.cancel``, the agent's
cancel grace, then a kill), so two attempts of one job never run at once on one
host. A local-process job needs none of this (it dies with its agent); across
hosts, see "At-least-once" in docs/api.md.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from launchplane.agent.rundir import run_id
from launchplane.core.lease import Lease

if TYPE_CHECKING:
    from launchplane.agent.services import AgentServices

log = logging.getLogger("launchplane.agent")

WAIT_AFTER_CANCEL_SECONDS = 30.0
"""How long to wait for the stopped workload to be gone after ``cancel``'s own grace."""


async def stop_previous_attempt(lease: Lease, services: AgentServices) -> str | None:
    """Stop attempt N-1's workload of ``lease``'s job if it still runs on this host.

    Returns the line for the job's log that says so, or None when there was
    nothing to stop (first attempt, gone, ended, or a runner that cannot look).
    """
    if lease.attempt < 2:
        return None
    previous = run_id(lease.job_id, lease.attempt - 1)
    try:
        runner = services.registry.runner(lease.resolved.resource)
        run = await runner.attach(previous, services.work_dir / previous)
        if run is None or (await run.status()).final:
            return None
        log.warning(
            "job %s: attempt %d's %s workload still runs (its agent was lost); stopping it",
            lease.job_id,
            lease.attempt - 1,
            lease.resolved.resource,
        )
        await run.cancel(services.cancel_grace)
        with anyio.move_on_after(WAIT_AFTER_CANCEL_SECONDS):
            await run.wait()
    except Exception as exc:  # a runner that cannot look or stop: the launch goes on
        log.warning(
            "job %s: could not check attempt %d's workload: %s",
            lease.job_id,
            lease.attempt - 1,
            exc,
        )
        return None
    return (
        f"attempt {lease.attempt - 1}'s workload still ran on this host (its agent was lost);"
        f" stopped it before attempt {lease.attempt} starts"
    )

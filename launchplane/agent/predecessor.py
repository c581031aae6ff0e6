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
host; what it printed since its agent was lost is shipped as late lines of its
own attempt (``agent.leftovers``). An agent that starts stops such workloads
of its work directory at once (``leftovers.ship_orphans``), whether or not it
claims the job again. A local-process job needs none of this (it dies with its
agent); across hosts, see "At-least-once" in docs/api.md.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from launchplane.agent.leftovers import ship_late, stop_and_drain
from launchplane.agent.rundir import lease_file, run_id
from launchplane.core.lease import Lease

if TYPE_CHECKING:
    from launchplane.agent.services import AgentServices

log = logging.getLogger("launchplane.agent")


async def stop_previous_attempt(lease: Lease, services: AgentServices) -> str | None:
    """Stop attempt N-1's workload of ``lease``'s job if it still runs on this host.

    Its lease kept (``agent.leftovers``), what it printed that the server lacks is
    shipped as late lines of its attempt as it stops (:func:`ship_late`); in any
    case it is stopped. Returns the line for the job's log that says so, or None
    when there was nothing to stop (first attempt, gone, ended, or a runner that
    cannot look).
    """
    if lease.attempt < 2:
        return None
    previous = run_id(lease.job_id, lease.attempt - 1)
    run_dir = services.work_dir / previous
    try:
        runner = services.registry.runner(lease.resolved.resource)
        run = await runner.attach(previous, run_dir)
        if run is None or (await run.status()).final:
            return None
        if lease_file(run_dir).exists():
            await ship_late(run_dir, services, wait=True)
            run = await runner.attach(previous, run_dir)  # stopped and gone, unless refused
        if run is not None:
            log.warning(
                "job %s: attempt %d's %s workload still runs (its agent was lost); stopping it",
                lease.job_id,
                lease.attempt - 1,
                lease.resolved.resource,
            )
            await stop_and_drain(run, services.cancel_grace)
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

"""Claims, heartbeats and lease calls: the agent's half of the API.

Every lease call is fenced: a lease that expired, was released or was
superseded answers 409 and the agent must stop that workload. The one call
made under an ended lease is ``late-logs``: the output its run wrote that its
agent could not send while the lease lived (``store/leases.py``).

Scope: an agent token acts only on the queues it names. A lease id is a
capability (only its claimer learns it), and on top of that every call that
names a lease - events, logs, complete, release, and each lease of a
heartbeat - is refused with 403 when the lease's queue is not the token's.
Registration hands back only the held leases of the token's queues.

Identity: an agent id is bound to the agent token that first used it
(``store/leases.py``): registering, claiming or heartbeating under an id that
another valid token owns is refused with 403, and so is a lease call for a
lease of an agent id this token does not own.
"""

from __future__ import annotations

import contextlib
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request, Response

from launchplane.server.auth import Principal
from launchplane.server.deps import AgentCaller, LeaseId, QueueName, ServerState, State
from launchplane.server.hub import queue_key
from launchplane.server.problems import NotFound
from launchplane.server.schemas import (
    AgentRegister,
    ClaimRequest,
    CompleteIn,
    Empty,
    EventIn,
    HeartbeatRequest,
    HeartbeatResponse,
    Job,
    LateLogsAppended,
    LateLogsIn,
    Lease,
    LogsAppended,
    LogsIn,
    Registered,
    ReleaseIn,
)

router = APIRouter(tags=["agents"])

STALE = {409: {"description": "Stale lease: stop this workload"}}


@router.post("/agents")
async def register_agent(body: AgentRegister, state: State, caller: AgentCaller) -> Registered:
    """Record the agent; answer with the leases it still holds so it can re-adopt their runs."""
    for queue in body.queues:
        caller.require_queue(queue)
    leases = await state.store.register_agent(body, caller.holder)
    # The id is this token's (the store refused it otherwise); a pool token's agents may
    # serve different queues, and each learns only the leases of its token's queues.
    mine = [lease for lease in leases if caller.serves(lease.queue)]
    return Registered(agent_id=body.agent_id, leases=mine)


@router.post(
    "/queues/{name}/claim",
    response_model=Lease,
    responses={204: {"description": "No job arrived within `wait` seconds"}},
)
async def claim(
    name: QueueName,
    body: ClaimRequest,
    request: Request,
    state: State,
    caller: AgentCaller,
    wait: Annotated[float, Query(ge=0)] = 30.0,
) -> Lease | Response:
    """Long-poll: claim the next queued job (highest priority, then oldest), waiting up to
    ``wait`` seconds for one.
    """
    caller.require_queue(name)
    deadline = anyio.current_time() + min(wait, state.settings.max_wait_seconds)
    while True:
        with state.hub.watch(queue_key(name)) as waiter:
            lease = await state.store.claim(name, body.agent_id, caller.holder)
            if lease is not None:
                return lease
            remaining = deadline - anyio.current_time()
            if remaining <= 0 or state.hub.closed:
                return Response(status_code=204)
            await waiter.wait(remaining)
        # An agent that hung up must not be handed a job it will never see.
        if await request.is_disconnected():
            return Response(status_code=204)


@router.post("/heartbeat")
async def heartbeat(body: HeartbeatRequest, state: State, caller: AgentCaller) -> HeartbeatResponse:
    """Renew the agent's leases in one call; stale ones and cancel requests come back."""
    if not caller.all_queues:
        for lease_id in dict.fromkeys(body.leases):
            with contextlib.suppress(NotFound):  # unknown: the store reports it as stale
                caller.require_queue(await state.lease_queue(lease_id))
    return await state.store.heartbeat(body.agent_id, body.leases, caller.holder)


@router.post("/leases/{lease_id}/events", responses=STALE)
async def post_event(lease_id: LeaseId, body: EventIn, state: State, caller: AgentCaller) -> Empty:
    await _authorize(state, caller, lease_id)
    await state.store.post_event(lease_id, body, caller.holder)
    return Empty()


@router.post("/leases/{lease_id}/logs", responses=STALE)
async def append_logs(
    lease_id: LeaseId, body: LogsIn, state: State, caller: AgentCaller
) -> LogsAppended:
    await _authorize(state, caller, lease_id)
    return LogsAppended(
        next=await state.store.append_logs(lease_id, body.lines, body.first_seq, caller.holder)
    )


@router.post(
    "/leases/{lease_id}/late-logs",
    responses={409: {"description": "The lease is live, or ended more than 7 days ago"}},
)
async def append_late_logs(
    lease_id: LeaseId, body: LateLogsIn, state: State, caller: AgentCaller
) -> LateLogsAppended:
    """Lines an ended lease's run wrote that its agent had not sent (an agent down longer
    than the lease TTL): stored at the log's end with the lease's attempt, once."""
    await _authorize(state, caller, lease_id)
    last, position = await state.store.append_late_logs(
        lease_id, body.lines, body.first_seq, caller.holder
    )
    return LateLogsAppended(next=last, position=position)


@router.post("/leases/{lease_id}/complete", responses=STALE)
async def complete(lease_id: LeaseId, body: CompleteIn, state: State, caller: AgentCaller) -> Job:
    await _authorize(state, caller, lease_id)
    return await state.store.complete(lease_id, body, caller.holder)


@router.post("/leases/{lease_id}/release", responses=STALE)
async def release(lease_id: LeaseId, body: ReleaseIn, state: State, caller: AgentCaller) -> Empty:
    await _authorize(state, caller, lease_id)
    await state.store.release(lease_id, body.reason, caller.holder)
    return Empty()


async def _authorize(state: ServerState, caller: Principal, lease_id: str) -> None:
    """404 for an unknown lease, 403 for a lease of a queue this agent token does not serve."""
    caller.require_queue(await state.lease_queue(lease_id))

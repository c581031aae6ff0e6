"""Submitting and following jobs: the submitter's half of the API."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request, Response

from launchplane.core.config.overrides import Layer
from launchplane.core.pins import refuse_unpinned, unpinned_inputs
from launchplane.server.auth import Principal
from launchplane.server.bodies import YamlBodyRoute, yaml_alternative
from launchplane.server.deps import JobId, State, Submitter, hide_secret_refs
from launchplane.server.hub import Waiter, job_key
from launchplane.server.problems import NotFound
from launchplane.server.schemas import (
    MAX_SEQ,
    Job,
    JobAnswer,
    JobList,
    JobState,
    JobSubmit,
    LogPage,
    Text,
)

router = APIRouter(tags=["jobs"])
submissions = APIRouter(route_class=YamlBodyRoute, tags=["jobs"])
"""The submit route: its body (a job) may be JSON or YAML."""


@submissions.post(
    "/jobs",
    status_code=201,
    responses={200: {"description": "Same key: same job"}},
    openapi_extra=yaml_alternative(JobSubmit),
)
async def submit_job(
    body: JobSubmit,
    response: Response,
    state: State,
    caller: Submitter,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobAnswer:
    """Validate and queue a job; a repeated ``Idempotency-Key`` returns the first job (200).

    The body's ``priority`` is one more override layer, the last: it goes through
    the same guards as any layer (a queue may lock ``priority``) and is stored
    with the others, so ``spec``, ``overrides`` and ``template_variables`` still
    say everything the job was resolved from. Unpinned inputs are the answer's
    ``warnings``; with ``strict_pins``, or on a queue whose ``guardrails.require_pins``
    is set (admins included), they refuse the job instead (422, each with its fix).
    """
    scope = f"token-{caller.token_id}"
    if idempotency_key:
        existing = await state.store.find_job_by_key(scope, idempotency_key)
        if existing is not None:
            response.status_code = 200
            return _answer(existing, caller)
    try:
        queue = await state.store.get_queue(body.queue)
    except NotFound as exc:
        raise NotFound(exc.message, [{"path": "queue", "message": "no such queue"}]) from None
    overrides = list(body.overrides)
    if body.priority is not None:
        overrides.append(Layer({"priority": body.priority}, "the request's priority"))
    resolved = state.validator.resolve(
        queue=queue.name,
        raw_config=queue.config,
        job=body.job,
        overrides=overrides,
        variables=body.template_variables,
        trusted=caller.is_admin,
    )
    if body.strict_pins or _requires_pins(queue.config):
        why = "--strict-pins" if body.strict_pins else f"queue {queue.name!r} requires pins"
        refuse_unpinned(unpinned_inputs(resolved), why, source="invalid job")
    job, created = await state.store.submit_job(
        queue=queue.name,
        queue_version=queue.version,
        spec=body.job,
        overrides=overrides,
        template_variables=body.template_variables,
        resolved=resolved,
        idempotency_scope=scope,
        idempotency_key=idempotency_key or None,
    )
    if not created:
        response.status_code = 200
    return _answer(job, caller)


@router.get("/jobs")
async def list_jobs(
    state: State,
    caller: Submitter,
    queue: Annotated[Text | None, Query(max_length=128)] = None,
    job_state: Annotated[JobState | None, Query(alias="state")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> JobList:
    """Newest first, a page at a time (``next``); events are left out (``GET /jobs/{id}``).

    A page holds up to ``limit`` jobs and about 4 MiB of their documents.
    """
    jobs, next_cursor = await state.store.page_of_jobs(
        queue=queue, state=job_state, limit=limit, cursor=cursor
    )
    return JobList(jobs=[_answer(job, caller) for job in jobs], next=next_cursor)


@router.get("/jobs/{job_id}")
async def get_job(job_id: JobId, state: State, caller: Submitter) -> JobAnswer:
    return _answer(await state.store.get_job(job_id), caller)


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: JobId, state: State, caller: Submitter) -> JobAnswer:
    return _answer(await state.store.cancel_job(job_id), caller)


@router.get("/jobs/{job_id}/record")
async def get_record(job_id: JobId, state: State, caller: Submitter) -> dict[str, Any]:
    """The run record; its ``spec`` shows secret references and provider options to admins."""
    record = await state.store.get_record(job_id)
    if isinstance(record.get("spec"), dict):
        record = {**record, "spec": hide_secret_refs(record["spec"], caller)}
    return record


@router.get("/jobs/{job_id}/logs")
async def read_logs(
    job_id: JobId,
    request: Request,
    state: State,
    _: Submitter,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    wait: Annotated[float, Query(ge=0)] = 0,
) -> LogPage:
    """Lines after ``after``; with ``wait`` the call holds until a line arrives or the job ends.

    An unknown job is a 404 before any wait. The wait ends early when the
    client hangs up, and with the request goes its hold on the hub's waiter.
    """
    deadline = anyio.current_time() + min(wait, state.settings.max_wait_seconds)
    while True:
        with state.hub.watch(job_key(job_id)) as waiter:
            page = await state.store.read_logs(job_id, after)
            remaining = deadline - anyio.current_time()
            if page.lines or page.done or remaining <= 0 or state.hub.closed:
                return page
            await _wait_unless_hung_up(waiter, remaining, request)
        if await request.is_disconnected():
            return page


async def _wait_unless_hung_up(waiter: Waiter, timeout: float, request: Request) -> None:
    """``waiter.wait(timeout)``, cut short by the client's disconnect.

    Without this a follower that hung up would hold its waiter (and the
    handler) for the rest of its wait, up to ``max_wait_seconds``.
    """
    async with anyio.create_task_group() as tasks:

        async def hang_up() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tasks.cancel_scope.cancel()

        tasks.start_soon(hang_up)
        await waiter.wait(timeout)
        tasks.cancel_scope.cancel()


def _requires_pins(config: dict[str, Any]) -> bool:
    guardrails = config.get("guardrails")
    return isinstance(guardrails, dict) and guardrails.get("require_pins") is True


def _visible(job: Job, caller: Principal) -> Job:
    return job.model_copy(update={"resolved": hide_secret_refs(job.resolved, caller)})


def _answer(job: Job, caller: Principal) -> JobAnswer:
    """The job as ``caller`` may see it, with the warnings of its resolved spec."""
    warnings = [str(item) for item in unpinned_inputs(job.resolved)]
    return JobAnswer(**dict(_visible(job, caller)), warnings=warnings)


router.include_router(submissions)

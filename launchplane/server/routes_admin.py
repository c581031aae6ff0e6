"""Health, tokens, queues and the agents list: the administrative half of the API."""

from __future__ import annotations

from fastapi import APIRouter

from launchplane._version import __version__
from launchplane.server.auth import ALL_QUEUES, Principal, hash_token, new_token
from launchplane.server.bodies import YamlBodyRoute, yaml_alternative
from launchplane.server.deps import Admin, AnyCaller, QueueName, State, hide_secret_refs
from launchplane.server.problems import Invalid
from launchplane.server.schemas import (
    AgentList,
    Health,
    Queue,
    QueueCreate,
    QueueList,
    QueueUpdate,
    TokenCreate,
    TokenOut,
)

router = APIRouter()
configs = APIRouter(route_class=YamlBodyRoute, tags=["queues"])
"""Routes whose body is a queue config: JSON or YAML."""


@router.get("/health", tags=["server"])
async def health() -> Health:
    return Health(status="ok", version=__version__)


@router.post("/tokens", status_code=201, tags=["tokens"])
async def create_token(body: TokenCreate, state: State, _: Admin) -> TokenOut:
    if body.role == "agent" and not body.queues:
        raise Invalid(
            "an agent token must name its queues",
            [{"path": "queues", "message": f"list the queues it may serve, or '{ALL_QUEUES}'"}],
        )
    if body.role != "agent" and body.queues:
        raise Invalid(
            "only agent tokens are limited to queues",
            [{"path": "queues", "message": f"not allowed for a {body.role} token"}],
        )
    token = new_token()
    await state.store.add_token(hash_token(token), body.role, body.name, body.queues)
    return TokenOut(token=token, role=body.role, name=body.name, queues=body.queues)


@configs.post("/queues", status_code=201, openapi_extra=yaml_alternative(QueueCreate))
async def create_queue(body: QueueCreate, state: State, _: Admin) -> Queue:
    warnings = state.validator.check_queue(body.config)
    return await state.store.create_queue(body.name, body.config, warnings)


@configs.put("/queues/{name}", openapi_extra=yaml_alternative(QueueUpdate))
async def update_queue(name: QueueName, body: QueueUpdate, state: State, _: Admin) -> Queue:
    await state.store.get_queue(name)  # 404 before 422: the name is the first thing to fix
    warnings = state.validator.check_queue(body.config)
    return await state.store.update_queue(name, body.config, warnings)


@router.get("/queues", tags=["queues"])
async def list_queues(state: State, caller: AnyCaller) -> QueueList:
    queues = await state.store.list_queues()
    return QueueList(queues=[_visible(queue, caller) for queue in queues])


@router.get("/queues/{name}", tags=["queues"])
async def get_queue(name: QueueName, state: State, caller: AnyCaller) -> Queue:
    return _visible(await state.store.get_queue(name), caller)


@router.get("/agents", tags=["agents"])
async def list_agents(state: State, _: Admin) -> AgentList:
    return AgentList(agents=await state.store.list_agents())


def _visible(queue: Queue, caller: Principal) -> Queue:
    return queue.model_copy(update={"config": hide_secret_refs(queue.config, caller)})


router.include_router(configs)

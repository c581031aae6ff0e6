"""Health, tokens, queues and the agents list: the administrative half of the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path

from launchplane._version import __version__
from launchplane.server import tables as t
from launchplane.server.auth import ALL_QUEUES, Principal, hash_token, new_token, refusal
from launchplane.server.bodies import YamlBodyRoute, yaml_alternative
from launchplane.server.deps import Admin, AnyCaller, QueueName, State, hide_secret_refs
from launchplane.server.problems import Conflict, Invalid
from launchplane.server.schemas import (
    AgentList,
    Health,
    Queue,
    QueueCreate,
    QueueList,
    QueueUpdate,
    TokenCreate,
    TokenInfo,
    TokenList,
    TokenOut,
)
from launchplane.server.store import TokenInfo as StoredToken

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
    expires_at = (
        None
        if body.expires_in_seconds is None
        else t.utcnow() + timedelta(seconds=body.expires_in_seconds)
    )
    stored = await state.store.add_token(
        hash_token(token), body.role, body.name, body.queues, expires_at
    )
    return TokenOut(
        token=token,
        id=stored.id,
        role=body.role,
        name=body.name,
        queues=body.queues,
        expires_at=stored.expires_at,
    )


@router.get("/tokens", tags=["tokens"])
async def list_tokens(state: State, _: Admin) -> TokenList:
    """Every token ever created, revoked and expired ones too (never a token's value)."""
    return TokenList(tokens=[_token_info(info) for info in await state.store.list_tokens()])


@router.post("/tokens/{token_id}/revoke", tags=["tokens"])
async def revoke_token(
    token_id: Annotated[int, Path(ge=1, lt=2**31)], state: State, caller: Admin
) -> TokenInfo:
    """Refused from the next request on, by every server on this database; kept listed."""
    if token_id == caller.token_id:
        raise Conflict(
            f"token {token_id} is the one making this request: revoke it with another "
            "admin token (create one first: launchplane token create --role admin)"
        )
    return _token_info(await state.store.revoke_token(token_id))


def _token_info(info: StoredToken) -> TokenInfo:
    refused = refusal(info, t.utcnow())
    state = "active" if refused is None else "revoked" if info.revoked_at else "expired"
    return TokenInfo(
        id=info.id,
        role=info.role,  # type: ignore[arg-type]  # stored from a Role
        name=info.name,
        queues=list(info.queues),
        created_at=info.created_at,
        expires_at=info.expires_at,
        revoked_at=info.revoked_at,
        state=state,
    )


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

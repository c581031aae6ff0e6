"""What every route needs: the server's shared state and the caller's identity.

Role checks are FastAPI dependencies (``Admin``, ``Submitter``, ``AgentCaller``,
``AnyCaller``) so each route states its role in its signature, and the
OpenAPI document shows the bearer scheme on every protected path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from launchplane.server.auth import Principal, TokenResolver
from launchplane.server.hub import Hub
from launchplane.server.schemas import Text
from launchplane.server.settings import ServerSettings
from launchplane.server.store import Store
from launchplane.server.validation import Validator

HIDDEN = "<hidden>"
LEASE_QUEUE_CACHE = 100_000
"""Lease id -> queue entries remembered before the cache starts over."""


@dataclass
class ServerState:
    settings: ServerSettings
    store: Store
    hub: Hub
    tokens: TokenResolver
    validator: Validator = field(default_factory=Validator)
    admin_token: str | None = None
    lease_queues: dict[str, str] = field(default_factory=dict)
    """Lease id -> its queue, for token scope checks: a lease never changes queue."""

    async def lease_queue(self, lease_id: str) -> str:
        """The queue of a lease (``NotFound`` for an unknown lease), cached."""
        queue = self.lease_queues.get(lease_id)
        if queue is None:
            queue = (await self.store.lease_info(lease_id)).queue
            if len(self.lease_queues) >= LEASE_QUEUE_CACHE:
                self.lease_queues.clear()
            self.lease_queues[lease_id] = queue
        return queue


async def server_state(request: Request) -> ServerState:
    """``async`` on purpose: FastAPI runs a plain ``def`` dependency on a worker
    thread, a thread hand-off on every request for one attribute read."""
    return request.app.state.launchplane


State = Annotated[ServerState, Depends(server_state)]

_bearer = HTTPBearer(auto_error=False, description="A launchplane token.")


def _caller(*roles: str) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        state: State,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> Principal:
        header = f"Bearer {credentials.credentials}" if credentials else None
        principal = await state.tokens.principal(header)
        principal.require(*roles)
        return principal

    return dependency


Admin = Annotated[Principal, Depends(_caller("admin"))]
Submitter = Annotated[Principal, Depends(_caller("submitter"))]
AgentCaller = Annotated[Principal, Depends(_caller("agent"))]
AnyCaller = Annotated[Principal, Depends(_caller("admin", "submitter", "agent"))]


QueueName = Annotated[Text, Path(max_length=128)]
JobId = Annotated[Text, Path(max_length=200)]
LeaseId = Annotated[Text, Path(max_length=200)]
"""Path parameters: an id no store could hold (a NUL, a lone surrogate) is a 422, not a query."""


ADMIN_ONLY_VALUES = ("secrets", "secret_providers")
"""Keys of a queue config (and of a resolved job) whose values only admins see: secret
references, and the options of the providers that resolve them (a provider's address or
mount path; credentials do not belong there, but an admin may put them there anyway)."""


def hide_secret_refs(document: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """Secret references and provider options are for admins (and agents, through their
    leases): others see the names only."""
    if principal.is_admin:
        return document
    hidden = {
        key: dict.fromkeys(document[key], HIDDEN)
        for key in ADMIN_ONLY_VALUES
        if isinstance(document.get(key), dict)
    }
    return {**document, **hidden} if hidden else document

"""Helpers shared by the queue server tests (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

QUEUE = "q"


async def agent_client(server: EmbeddedServer, queues: Sequence[str]) -> LaunchplaneClient:
    token = await server.create_token("agent", queues=list(queues))
    return LaunchplaneClient(server.url, token, retries=0)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def claim_now(agent: LaunchplaneClient, queue: str = QUEUE) -> dict[str, Any]:
    lease = await agent.claim(queue, "agent-1", wait=5)
    assert lease is not None, "expected a job to claim"
    return lease

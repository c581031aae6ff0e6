"""Who may call what: every endpoint of the OpenAPI document against every kind of caller.

The endpoints are read from the served OpenAPI document, and the test fails if
one has no row in ``MATRIX`` (or a row names an endpoint that is gone), so a
new endpoint cannot ship without a decision about who may call it.

Callers: anonymous, a submitter, an agent token for the queue in question
(``agent``), an agent token for another queue (``stranger``), an admin.
Expected: ``401`` (no valid token), ``403`` (wrong role or queue) or ``2xx``.

Decision recorded in docs/api.md: in v1 a server is one team's trust domain,
so every submitter sees every job (no per-submitter isolation); what a
submitter must not read - secret references - is hidden from them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import httpx
import pytest

from launchplane.core.client import LaunchplaneClient, Unauthorized
from launchplane.core.lease import Lease
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

MINE, THEIRS = "mine", "theirs"
CALLERS = ("anonymous", "submitter", "agent", "stranger", "admin")
OK = "2xx"

Request = tuple[str, dict[str, Any] | None]
"""A path (with its query) and a JSON body."""


@dataclass
class World:
    """A server with two queues, tokens for every caller, and fresh jobs and leases on demand."""

    server: EmbeddedServer
    admin: LaunchplaneClient
    agent: LaunchplaneClient
    tokens: dict[str, str | None]
    names: count[int] = field(default_factory=count)

    async def job(self) -> str:
        return (await self.admin.submit_job(MINE, {"command": ["true"]}))["id"]

    async def lease(self) -> Lease:
        await self.job()
        lease = await self.agent.claim(MINE, "agent-1", wait=5)
        assert lease is not None
        return lease

    async def finished_job(self) -> str:
        lease = await self.lease()
        await self.agent.complete(lease.lease_id, "succeeded", exit_code=0, record={"x": 1})
        return str(lease.job_id)


async def lease_call(world: World, action: str, body: dict[str, Any]) -> Request:
    return f"/leases/{(await world.lease()).lease_id}/{action}", body


async def late_logs_call(world: World) -> Request:
    """Late lines go under a lease that has ended (here: released)."""
    lease = await world.lease()
    await world.agent.release(lease.lease_id, "test")
    return f"/leases/{lease.lease_id}/late-logs", {"lines": ["x"], "first_seq": 1}


async def heartbeat(world: World) -> Request:
    return "/heartbeat", {"agent_id": "agent-1", "leases": [(await world.lease()).lease_id]}


async def new_queue(world: World) -> Request:
    return "/queues", {"name": f"new-{next(world.names)}", "config": {}}


async def fixed(request: Request) -> Request:
    return request


def always(path: str, body: dict[str, Any] | None = None) -> Callable[[World], Awaitable[Request]]:
    return lambda _world: fixed((path, body))


async def job_path(world: World, suffix: str = "") -> Request:
    return f"/jobs/{await world.job()}{suffix}", None


async def revoke_path(world: World) -> Request:
    return f"/tokens/{(await world.admin.create_token('submitter'))['id']}/revoke", None


async def record_path(world: World) -> Request:
    return f"/jobs/{await world.finished_job()}/record", None


# endpoint -> (how to make a request, the answer per caller)
# callers:            anonymous  submitter  agent  stranger  admin
ADMIN_ONLY = {"anonymous": 401, "submitter": 403, "agent": 403, "stranger": 403, "admin": OK}
ANY_TOKEN = {"anonymous": 401, "submitter": OK, "agent": OK, "stranger": OK, "admin": OK}
SUBMITTERS = {"anonymous": 401, "submitter": OK, "agent": 403, "stranger": 403, "admin": OK}
QUEUE_AGENT = {"anonymous": 401, "submitter": 403, "agent": OK, "stranger": 403, "admin": OK}
MATRIX: dict[tuple[str, str], tuple[Callable[[World], Awaitable[Request]], dict[str, Any]]] = {
    ("GET", "/health"): (always("/health"), dict.fromkeys(CALLERS, OK)),
    ("POST", "/tokens"): (always("/tokens", {"role": "submitter"}), ADMIN_ONLY),
    ("GET", "/tokens"): (always("/tokens"), ADMIN_ONLY),
    ("POST", "/tokens/{token_id}/revoke"): (revoke_path, ADMIN_ONLY),
    ("GET", "/queues"): (always("/queues"), ANY_TOKEN),
    ("POST", "/queues"): (new_queue, ADMIN_ONLY),
    ("GET", "/queues/{name}"): (always(f"/queues/{MINE}"), ANY_TOKEN),
    ("PUT", "/queues/{name}"): (
        always(f"/queues/{MINE}", {"config": {"resource": "local-process"}}),
        ADMIN_ONLY,
    ),
    ("GET", "/agents"): (always("/agents"), ADMIN_ONLY),
    ("POST", "/jobs"): (always("/jobs", {"queue": MINE, "job": {"command": ["true"]}}), SUBMITTERS),
    ("GET", "/jobs"): (always("/jobs"), SUBMITTERS),
    ("GET", "/jobs/{job_id}"): (job_path, SUBMITTERS),
    ("POST", "/jobs/{job_id}/cancel"): (lambda world: job_path(world, "/cancel"), SUBMITTERS),
    ("GET", "/jobs/{job_id}/record"): (record_path, SUBMITTERS),
    ("GET", "/jobs/{job_id}/logs"): (lambda world: job_path(world, "/logs"), SUBMITTERS),
    ("POST", "/agents"): (
        always("/agents", {"agent_id": "agent-1", "queues": [MINE]}),
        QUEUE_AGENT,
    ),
    ("POST", "/queues/{name}/claim"): (
        always(f"/queues/{MINE}/claim?wait=0", {"agent_id": "agent-1"}),
        QUEUE_AGENT,
    ),
    ("POST", "/heartbeat"): (heartbeat, QUEUE_AGENT),
    ("POST", "/leases/{lease_id}/events"): (
        lambda world: lease_call(world, "events", {"state": "running"}),
        QUEUE_AGENT,
    ),
    ("POST", "/leases/{lease_id}/logs"): (
        lambda world: lease_call(world, "logs", {"lines": ["x"]}),
        QUEUE_AGENT,
    ),
    ("POST", "/leases/{lease_id}/late-logs"): (late_logs_call, QUEUE_AGENT),
    ("POST", "/leases/{lease_id}/complete"): (
        lambda world: lease_call(world, "complete", {"state": "succeeded", "record": {}}),
        QUEUE_AGENT,
    ),
    ("POST", "/leases/{lease_id}/release"): (
        lambda world: lease_call(world, "release", {"reason": "test"}),
        QUEUE_AGENT,
    ),
}


@pytest.fixture
async def world(server: EmbeddedServer, client: LaunchplaneClient) -> AsyncIterator[World]:
    for queue in (MINE, THEIRS):
        await server.ensure_queue(
            queue, {"resource": "local-process", "secrets": {"HF_TOKEN": "env:HF_TOKEN"}}
        )
    tokens: dict[str, str | None] = {
        "anonymous": None,
        "submitter": await server.create_token("submitter"),
        "agent": await server.create_token("agent", [MINE]),
        "stranger": await server.create_token("agent", [THEIRS]),
        "admin": server.admin_token,
    }
    async with LaunchplaneClient(server.url, tokens["agent"], retries=0) as agent:
        yield World(server, client, agent, tokens)


async def test_every_endpoint_has_a_row_and_every_cell_holds(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.server.url + "/api/v1") as http:
        document = (await http.get("/openapi.json")).json()
        endpoints = {
            (method.upper(), path.removeprefix("/api/v1"))
            for path, item in document["paths"].items()
            for method in item
        }
        assert endpoints - set(MATRIX) == set(), "endpoints without an authorization row"
        assert set(MATRIX) - endpoints == set(), "rows for endpoints that no longer exist"

        failures = []
        for (method, _), (make, expected) in sorted(MATRIX.items()):
            for caller in CALLERS:
                path, body = await make(world)
                token = world.tokens[caller]
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                answer = await http.request(method, path, json=body, headers=headers)
                got = OK if 200 <= answer.status_code < 300 else answer.status_code
                if got != expected[caller]:
                    failures.append(
                        f"{method} {path} as {caller}: {answer.status_code} {answer.text}"
                    )
        assert not failures, "\n".join(failures)


async def test_a_stranger_cannot_renew_or_discover_another_queues_leases(world: World) -> None:
    lease = await world.lease()
    async with LaunchplaneClient(world.server.url, world.tokens["stranger"], retries=0) as stranger:
        with pytest.raises(Unauthorized) as refused:
            await stranger.heartbeat("agent-1", [lease.lease_id])
        assert refused.value.status == 403
        # Posing as the holder's agent id is refused: the id is bound to the agent's token.
        with pytest.raises(Unauthorized) as posing:
            await stranger.register_agent("agent-1", queues=[THEIRS])
        assert posing.value.status == 403
    mine = await world.agent.register_agent("agent-1", queues=[MINE])
    assert [held.lease_id for held in mine] == [lease.lease_id]


async def test_secret_references_are_shown_to_admins_only(world: World) -> None:
    job_id = await world.job()
    async with httpx.AsyncClient(base_url=world.server.url + "/api/v1") as http:
        for caller in ("submitter", "agent", "stranger", "admin"):
            headers = {"Authorization": f"Bearer {world.tokens[caller]}"}
            expected = "env:HF_TOKEN" if caller == "admin" else "<hidden>"
            queue = (await http.get(f"/queues/{MINE}", headers=headers)).json()
            assert queue["config"]["secrets"] == {"HF_TOKEN": expected}, caller
            listed = (await http.get("/queues", headers=headers)).json()["queues"]
            assert {q["config"]["secrets"]["HF_TOKEN"] for q in listed} == {expected}, caller
            if caller in ("submitter", "admin"):
                job = (await http.get(f"/jobs/{job_id}", headers=headers)).json()
                assert job["resolved"]["secrets"] == {"HF_TOKEN": expected}, caller
                jobs = (await http.get("/jobs", headers=headers)).json()["jobs"]
                assert {j["resolved"]["secrets"]["HF_TOKEN"] for j in jobs} == {expected}
    # The agent that runs the job gets the reference it must resolve, in its lease.
    lease = await world.lease()
    assert lease.resolved.secrets == {"HF_TOKEN": "env:HF_TOKEN"}

"""Tokens and roles: 401 without a valid token, 403 for the wrong role or queue."""

from __future__ import annotations

import stat
from typing import Any

import httpx
import pytest
from kit import QUEUE, agent_client, claim_now
from serverkit import bearer

from launchplane.core.client import LaunchplaneClient, Unauthorized, ValidationFailed
from launchplane.server.auth import hash_token
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

# (method, path, body, roles allowed besides admin)
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("POST", "/tokens", {"role": "submitter"}, set()),
    ("POST", "/queues", {"name": "new", "config": {}}, set()),
    ("PUT", f"/queues/{QUEUE}", {"config": {}}, set()),
    ("GET", "/queues", None, {"submitter", "agent"}),
    ("GET", f"/queues/{QUEUE}", None, {"submitter", "agent"}),
    ("GET", "/agents", None, set()),
    ("POST", "/jobs", {"queue": QUEUE, "job": {}}, {"submitter"}),
    ("GET", "/jobs", None, {"submitter"}),
    ("GET", "/jobs/{job}", None, {"submitter"}),
    ("POST", "/jobs/{job}/cancel", None, {"submitter"}),
    ("GET", "/jobs/{job}/record", None, {"submitter"}),
    ("GET", "/jobs/{job}/logs", None, {"submitter"}),
    ("POST", "/agents", {"agent_id": "a", "queues": [QUEUE]}, {"agent"}),
    ("POST", f"/queues/{QUEUE}/claim?wait=0", {"agent_id": "a"}, {"agent"}),
    ("POST", "/heartbeat", {"agent_id": "a", "leases": []}, {"agent"}),
    ("POST", "/leases/{lease}/events", {"state": "running"}, {"agent"}),
    ("POST", "/leases/{lease}/logs", {"lines": ["x"]}, {"agent"}),
    ("POST", "/leases/{lease}/complete", {"state": "succeeded", "record": {}}, {"agent"}),
    ("POST", "/leases/{lease}/release", {}, {"agent"}),
]


async def test_every_endpoint_checks_token_and_role(
    server: EmbeddedServer, http: httpx.AsyncClient
) -> None:
    tokens = {
        "submitter": await server.create_token("submitter"),
        "agent": await server.create_token("agent", queues=[QUEUE]),
    }
    async with LaunchplaneClient(server.url, tokens["submitter"]) as submitter:
        job = await submitter.submit_job(QUEUE, {})
    ids = {"job": job["id"], "lease": "l-unknown"}
    for method, template, body, allowed in ENDPOINTS:
        path = template.format(**ids)
        missing = await http.request(method, path, json=body)
        assert missing.status_code == 401, (method, path)
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["detail"]["errors"] == []
        wrong = await http.request(method, path, json=body, headers=bearer("lp_not-a-token"))
        assert wrong.status_code == 401, (method, path)
        for role, token in tokens.items():
            answer = await http.request(method, path, json=body, headers=bearer(token))
            if role in allowed:
                assert answer.status_code not in (401, 403), (role, method, path, answer.text)
            else:
                assert answer.status_code == 403, (role, method, path, answer.text)
                assert role in answer.json()["detail"]["message"]
    health = await http.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"


async def test_agent_tokens_serve_only_their_queues(
    server: EmbeddedServer, submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    await server.ensure_queue("other", {})
    await submitter.submit_job("other", {})
    with pytest.raises(Unauthorized) as caught:
        await agent.claim("other", "agent-1", wait=0)
    assert caught.value.status == 403
    with pytest.raises(Unauthorized):
        await agent.register_agent("agent-1", queues=[QUEUE, "other"])

    async with await agent_client(server, ["other"]) as other_agent:
        lease = await claim_now(other_agent, "other")
    for call in (
        agent.post_event(lease.lease_id, "running"),
        agent.append_logs(lease.lease_id, ["x"]),
        agent.complete(lease.lease_id, "succeeded"),
        agent.release(lease.lease_id),
    ):
        with pytest.raises(Unauthorized) as caught:
            await call
        assert caught.value.status == 403

    async with await agent_client(server, ["*"]) as any_queue:
        assert await any_queue.claim("other", "agent-2", wait=0) is None


async def test_admin_token_file_is_private_and_only_hashes_are_stored(
    server: EmbeddedServer,
) -> None:
    path = server.admin_token_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == server.admin_token
    found = await server.state.store.find_token(hash_token(server.admin_token))
    assert found is not None
    assert found.role == "admin"
    database = (server.settings.data_dir / "launchplane.db").read_bytes()
    assert server.admin_token.encode() not in database


async def test_admin_token_survives_a_restart(tmp_path) -> None:
    async with EmbeddedServer(data_dir=tmp_path) as first:
        token = first.admin_token
    async with EmbeddedServer(data_dir=tmp_path) as second:
        assert second.admin_token == token
        async with LaunchplaneClient(second.url, token) as admin:
            assert await admin.list_queues() == []


async def test_created_tokens_work_and_are_shown_once(admin: LaunchplaneClient, server) -> None:
    created = await admin.create_token("agent", [QUEUE], name="gpu-box")
    assert (created["role"], created["name"], created["queues"]) == ("agent", "gpu-box", [QUEUE])
    async with LaunchplaneClient(server.url, created["token"]) as agent:
        assert await agent.claim(QUEUE, "gpu-box", wait=0) is None
    with pytest.raises(ValidationFailed) as caught:
        await admin.create_token("agent")
    assert caught.value.errors[0]["path"] == "queues"
    with pytest.raises(ValidationFailed):
        await admin.create_token("submitter", [QUEUE])
    with pytest.raises(ValidationFailed):
        await admin.create_token("root")

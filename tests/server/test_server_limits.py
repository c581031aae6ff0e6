"""Bad input never causes a 500: oversized bodies are 413, malformed JSON 422, all in one format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from kit import QUEUE
from serverkit import bearer

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.settings import ServerSettings

pytestmark = pytest.mark.anyio


async def test_oversized_body_is_413(server: EmbeddedServer, http: httpx.AsyncClient) -> None:
    body = {"queue": QUEUE, "job": {"entry_point": "x" * (2 << 20)}}
    answer = await http.post("/jobs", json=body, headers=bearer(server.admin_token))
    assert answer.status_code == 413
    assert "larger than 1048576 bytes" in answer.json()["detail"]["message"]


async def test_oversized_streamed_body_is_413(tmp_path) -> None:
    settings = ServerSettings(data_dir=tmp_path, max_body_bytes=1000)
    async with EmbeddedServer(settings=settings) as server:

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"queue": "q", "job": {"entry_point": "'
            for _ in range(20):
                yield b"x" * 100
            yield b'"}}'

        async with httpx.AsyncClient(base_url=server.url + "/api/v1") as http:
            answer = await http.post(
                "/jobs",
                content=chunks(),
                headers={**bearer(server.admin_token), "Content-Type": "application/json"},
            )
            assert "content-length" not in answer.request.headers
            assert answer.status_code == 413
            assert answer.json()["detail"]["errors"] == []
            small = await http.post(
                "/tokens", json={"role": "submitter"}, headers=bearer(server.admin_token)
            )
            assert small.status_code == 201


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"[1, 2]", b'{"queue": 5, "job": []}', b'"text"', b"\xff\xfe"],
)
async def test_malformed_bodies_are_422(
    server: EmbeddedServer, http: httpx.AsyncClient, content: bytes
) -> None:
    answer = await http.post(
        "/jobs",
        content=content,
        headers={**bearer(server.admin_token), "Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    if content == b"{not json":
        assert detail["message"] == "malformed JSON body"
    assert isinstance(detail["message"], str)
    assert all(set(error) == {"path", "message"} for error in detail["errors"])


async def test_request_validation_errors_name_their_paths(
    server: EmbeddedServer, http: httpx.AsyncClient
) -> None:
    answer = await http.post(
        "/jobs",
        json={"queue": QUEUE, "job": {}, "overides": []},
        headers=bearer(server.admin_token),
    )
    assert answer.status_code == 422
    assert answer.json()["detail"]["errors"] == [
        {"path": "overides", "message": "Extra inputs are not permitted"}
    ]
    bad_query = await http.get("/jobs?limit=0", headers=bearer(server.admin_token))
    assert bad_query.status_code == 422
    assert bad_query.json()["detail"]["errors"][0]["path"] == "query.limit"


async def test_unknown_route_uses_the_error_format(http: httpx.AsyncClient) -> None:
    answer = await http.get("/nope")
    assert answer.status_code == 404
    assert answer.json() == {"detail": {"message": "Not Found", "errors": []}}


async def test_openapi_document_and_docs_are_served(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    assert document["info"]["title"] == "launchplane queue server"
    paths = set(document["paths"])
    assert {
        "/api/v1/jobs",
        "/api/v1/queues/{name}/claim",
        "/api/v1/leases/{lease_id}/complete",
        "/api/v1/heartbeat",
    } <= paths
    assert "HTTPBearer" in document["components"]["securitySchemes"]
    docs = await http.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_hostile_values_are_422_not_500(
    server: EmbeddedServer,
    http: httpx.AsyncClient,
    submitter: LaunchplaneClient,
    agent: LaunchplaneClient,
) -> None:
    job = await submitter.submit_job(QUEUE, {})
    lease = await agent.claim(QUEUE, "agent-1", wait=5)
    assert lease is not None
    admin = bearer(server.admin_token)
    deep_list = b'{"queue": "q", "job": {"args": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    deep_dict = {"queue": QUEUE, "job": {"hyperparameters": _nested(100)}}
    huge_exit_code = {"state": "failed", "exit_code": 10**30}
    cases = [
        ("POST", "/jobs", {"content": deep_list, "headers": {"Content-Type": "application/json"}}),
        ("POST", "/jobs", {"json": deep_dict}),
        ("GET", f"/jobs/{job['id']}/logs?after={10**30}", {}),
        ("GET", f"/jobs/{job['id']}/logs?wait=nan", {}),
        ("POST", f"/leases/{lease.lease_id}/complete", {"json": huge_exit_code}),
    ]
    for method, path, options in cases:
        headers = {**admin, **options.pop("headers", {})}
        answer = await http.request(method, path, headers=headers, **options)
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["detail"]["message"]


def _nested(depth: int) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for _ in range(depth):
        document = {"a": document}
    return document

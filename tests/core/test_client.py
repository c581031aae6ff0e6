"""The HTTP client and ``launchplane.submit``, against a real server on a loopback port."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import anyio
import pytest

import launchplane
from launchplane.core.client import (
    ApiError,
    ConnectionLost,
    LaunchplaneClient,
    ServerUnreachable,
    Unauthorized,
    UnsafeTokenFile,
    ValidationFailed,
    asubmit,
    find_token,
)
from launchplane.core.pins import UnpinnedInputWarning
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "data") as srv:
        await srv.ensure_queue(
            "q",
            {
                "resource": "local-process",
                "template_variables": {"gpus": {"type": "integer", "min": 1, "max": 8}},
                "env": {"GPUS": "{{gpus}}"},
            },
        )
        yield srv


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unreachable_server_is_one_clear_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    started = time.perf_counter()
    async with LaunchplaneClient(url, "token", retries=2, backoff=0.01) as client:
        with pytest.raises(ServerUnreachable) as caught:
            await client.list_jobs()
    assert str(caught.value).startswith(
        f"cannot reach the queue server at {url}: is 'launchplane server' running?"
    )
    assert time.perf_counter() - started < 5


async def test_errors_carry_status_message_and_paths(server: EmbeddedServer) -> None:
    async with LaunchplaneClient(server.url, "lp_wrong") as client:
        with pytest.raises(Unauthorized) as caught:
            await client.list_jobs()
    assert (caught.value.status, caught.value.message) == (401, "invalid token")
    async with LaunchplaneClient(server.url, server.admin_token) as client:
        with pytest.raises(ValidationFailed) as invalid:
            await client.submit_job("q", {"entry_pont": "x"}, template_variables={"gpus": 9})
    paths = [error["path"] for error in invalid.value.errors]
    assert paths == ["entry_pont", "template_variables.gpus"]


async def test_server_url_may_include_the_api_prefix(server: EmbeddedServer) -> None:
    async with LaunchplaneClient(server.url + "/api/v1/", server.admin_token) as client:
        assert (await client.health())["status"] == "ok"


async def test_submit_generates_an_idempotency_key_per_call(server: EmbeddedServer) -> None:
    async with LaunchplaneClient(server.url, server.admin_token) as client:
        gpus = {"gpus": 1}
        first = await client.submit_job("q", {}, template_variables=gpus)
        second = await client.submit_job("q", {}, template_variables=gpus)
        keyed = await client.submit_job("q", {}, template_variables=gpus, idempotency_key="k")
        again = await client.submit_job("q", {}, template_variables=gpus, idempotency_key="k")
    assert first["id"] != second["id"]
    assert keyed["id"] == again["id"]


async def test_python_submit_like_launch_add(server: EmbeddedServer, tmp_path: Path) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text("entry_point: python train.py\nproject: demo\n")
    job = await anyio.to_thread.run_sync(
        partial(
            launchplane.submit,
            job_file,
            queue="q",
            config={"hyperparameters": {"lr": 0.01}},
            resource_args={"local-process": {"timeout_seconds": 60}},
            template_variables={"gpus": "2"},
            docker_image="python:3.11",
            name="first-run",
            server=server.url,
            token=server.admin_token,
        )
    )
    resolved = job["resolved"]
    assert resolved["entry_point"] == "python train.py"
    assert (resolved["project"], resolved["name"]) == ("demo", "first-run")
    assert resolved["docker"]["image"] == "python:3.11"
    assert resolved["hyperparameters"] == {"lr": 0.01}
    assert resolved["resource_args"] == {"local-process": {"timeout_seconds": 60}}
    assert resolved["env"] == {"GPUS": "2"}
    assert job["overrides"] == [
        {"hyperparameters": {"lr": 0.01}},
        {"resource_args": {"local-process": {"timeout_seconds": 60}}},
    ]

    same = await asubmit(
        {"entry_point": ["python", "eval.py"]},
        queue="q",
        template_variables={"gpus": 1},
        server=server.url,
        token=server.admin_token,
        idempotency_key="eval-1",
    )
    again = await asubmit(
        {"entry_point": ["python", "eval.py"]},
        queue="q",
        template_variables={"gpus": 1},
        server=server.url,
        token=server.admin_token,
        idempotency_key="eval-1",
    )
    assert same["id"] == again["id"]


def test_token_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHPLANE_HOME", str(tmp_path))
    monkeypatch.delenv("LAUNCHPLANE_TOKEN", raising=False)
    assert find_token("http://127.0.0.1:8765") is None
    write_private(tmp_path / "admin-token", "lp_admin\n")
    assert find_token("http://127.0.0.1:8765") == "lp_admin"
    assert find_token("http://localhost:9000") == "lp_admin"
    assert find_token("https://queue.example.com") is None, "never sent to a remote server"
    monkeypatch.setenv("LAUNCHPLANE_TOKEN", "lp_env")
    assert find_token("http://127.0.0.1:8765") == "lp_env"
    assert find_token("http://127.0.0.1:8765", "lp_explicit") == "lp_explicit"


def write_private(path: Path, text: str) -> None:
    """The admin-token file as the server writes it: created 0600, whatever the umask."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(text)


def test_a_token_file_others_may_read_is_refused_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 0644 admin-token file (not written by the server) is never used as the admin token."""
    monkeypatch.setenv("LAUNCHPLANE_HOME", str(tmp_path))
    monkeypatch.delenv("LAUNCHPLANE_TOKEN", raising=False)
    path = tmp_path / "admin-token"
    path.write_text("lp_planted\n")
    path.chmod(0o644)
    with pytest.raises(UnsafeTokenFile) as refused:
        find_token("http://127.0.0.1:8765")
    message = str(refused.value)
    assert str(path) in message and "0644" in message and f"chmod 600 {path}" in message
    assert "lp_planted" not in message
    path.chmod(0o600)
    tmp_path.chmod(0o777)  # a directory anyone may write to: the file could be anyone's
    try:
        with pytest.raises(UnsafeTokenFile, match=f"chmod 700 {tmp_path}"):
            find_token("http://127.0.0.1:8765")
    finally:
        tmp_path.chmod(0o700)
    assert find_token("http://127.0.0.1:8765") == "lp_planted"


class FlakyServer:
    """A real HTTP server answering 503 to the first ``failures`` requests, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode().split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        await reader.readexactly(length)
        self.requests += 1
        if self.requests <= self.failures:
            status, body = "503 Service Unavailable", b'{"detail": {"message": "busy"}}'
        else:
            status, body = "200 OK", b'{"status": "ok", "version": "test", "queues": []}'
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()


async def test_retries_idempotent_calls_on_5xx_only() -> None:
    flaky = FlakyServer(failures=2)
    server = await asyncio.start_server(flaky.handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server, LaunchplaneClient(url, "t", retries=3, backoff=0.01) as client:
        assert (await client.health())["status"] == "ok"
        assert flaky.requests == 3
        flaky.requests, flaky.failures = 0, 1
        with pytest.raises(ApiError) as caught:
            await client.create_queue("q", {})
        assert (caught.value.status, caught.value.message, flaky.requests) == (503, "busy", 1)
        flaky.requests, flaky.failures = 0, 10
        with pytest.raises(ApiError):
            await client.list_queues()
        assert flaky.requests == 4, "bounded: 1 try + 3 retries"


async def test_broken_connection_after_sending_is_not_retried_for_unsafe_calls() -> None:
    requests = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        await reader.readuntil(b"\r\n\r\n")
        requests += 1
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server, LaunchplaneClient(url, "t", retries=3, backoff=0.01) as client:
        with pytest.raises(ConnectionLost):
            await client.append_logs("l-1", ["x"])
        assert requests == 1


async def test_python_submit_warns_of_unpinned_inputs_and_strict_pins_refuses(
    server: EmbeddedServer,
) -> None:
    job = {"entry_point": "python train.py", "docker": {"image": "python:3.11"}}
    common = {"queue": "q", "template_variables": {"gpus": 1}, "server": server.url}
    with pytest.warns(UnpinnedInputWarning, match=r"docker.image: .*digest"):
        submitted = await asubmit(job, token=server.admin_token, **common)
    assert submitted["warnings"], submitted

    with pytest.raises(ValidationFailed) as refused:
        await asubmit(job, token=server.admin_token, strict_pins=True, **common)
    assert "docker.image" in str(refused.value)
    async with LaunchplaneClient(server.url, server.admin_token) as client:
        assert len(await client.list_jobs("q")) == 1

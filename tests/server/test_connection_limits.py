"""One client cannot hold the server: idle and slow connections are closed, a cap refuses
clearly, and a flood of idle sockets does not keep ``/health`` out.

Real sockets on loopback. The timeouts are set low (``ServerSettings``) so
that each test is short; the waits here are bounded loops that fail when the
server never closes, not timed assertions.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest
from click.testing import CliRunner
from kit import LAUNCHPLANE, claim_now, free_port, subprocess_env

from launchplane.cli import cli
from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.limits import LOG_PAGE_BYTES
from launchplane.server.settings import ServerSettings

pytestmark = pytest.mark.anyio
HEALTH = b"GET /api/v1/health HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    settings = ServerSettings(
        data_dir=tmp_path / "server",
        header_timeout=1.0,
        body_timeout=1.0,
        idle_timeout=1.0,
        max_connections=3,
    )
    async with EmbeddedServer(settings=settings) as srv:
        yield srv


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (30 s without a byte fails the test)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"the server kept the connection open; it sent {received[:200]!r}")
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


async def test_idle_connections_are_closed(server: EmbeddedServer) -> None:
    def idle_client() -> tuple[bytes, bytes]:
        with connect(server.url) as fresh, connect(server.url) as used:
            used.sendall(HEALTH)
            after_a_request = read_until_closed(used)
            never_sent = read_until_closed(fresh)
        return never_sent, after_a_request

    never_sent, after_a_request = await anyio.to_thread.run_sync(idle_client)
    assert never_sent.startswith(b"HTTP/1.1 408 "), never_sent
    assert b"no complete request head within 1 s" in never_sent
    assert after_a_request.startswith(b"HTTP/1.1 200 "), after_a_request  # then closed


async def test_a_slowloris_is_cut_off(server: EmbeddedServer) -> None:
    """Headers a byte every 0.05 s: the server closes before 400 bytes (20 s) have gone."""

    def slowloris() -> tuple[int, bytes]:
        header = b"GET /api/v1/health HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"a" * 400
        with connect(server.url) as sock:
            for sent, byte in enumerate(header):
                try:
                    sock.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    return sent, b""
                time.sleep(0.05)
                sock.setblocking(False)
                try:
                    answer = sock.recv(65536)
                    return sent, answer
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
            return len(header), b""

    sent, answer = await anyio.to_thread.run_sync(slowloris)
    assert sent < 400 + 40, "the server read a slowloris' headers for ever"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer


async def test_a_trickled_body_gets_408_and_the_server_stays_responsive(
    server: EmbeddedServer,
) -> None:
    """A whole head, then a body of 400 bytes a byte every 0.05 s (20 s): cut off after the
    1 s body timeout, while /health on another connection is answered."""
    token = await server.create_token("submitter")
    head = (
        "POST /api/v1/jobs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 400\r\n\r\n"
    ).encode()

    def trickle() -> tuple[int, bytes]:
        with connect(server.url) as sock:
            sock.sendall(head)
            for sent in range(400):
                try:
                    sock.sendall(b" ")
                except (BrokenPipeError, ConnectionResetError):
                    return sent, b""
                time.sleep(0.05)
                sock.setblocking(False)
                try:
                    return sent, sock.recv(65536)
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
            return 400, b""

    async with anyio.create_task_group() as tasks:
        result: list[tuple[int, bytes]] = []

        async def run_trickle() -> None:
            result.append(await anyio.to_thread.run_sync(trickle))

        tasks.start_soon(run_trickle)
        await anyio.sleep(0.3)  # the trickle is under way
        async with httpx.AsyncClient(base_url=server.url) as other:
            health = await other.get("/api/v1/health")
    sent, answer = result[0]
    assert health.status_code == 200
    assert sent < 400, "the server read a trickled body for ever"
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"request body not complete within 1 s of its head" in answer
    async with httpx.AsyncClient(base_url=server.url) as after:
        assert (await after.get("/api/v1/health")).status_code == 200


async def test_a_full_server_closes_idle_connections_then_refuses_with_503(
    server: EmbeddedServer,
) -> None:
    """Cap 3: a new connection closes the longest-idle one; with every one busy, a 503."""
    token = await server.create_token("submitter")
    await server.ensure_queue("q", {"resource": "local-process"})
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.url + "/api/v1", headers=headers) as http:
        job = (await http.post("/jobs", json={"queue": "q", "job": {"command": ["true"]}})).json()

    def fill_with_idle_then_check() -> bytes:
        idle = [connect(server.url) for _ in range(3)]
        try:
            with connect(server.url) as newcomer:
                newcomer.sendall(HEALTH)
                answer = newcomer.recv(65536)
            assert idle[0].recv(65536) in (b"",), "the longest-idle connection stays open"
            return answer
        finally:
            for sock in idle:
                sock.close()

    answer = await anyio.to_thread.run_sync(fill_with_idle_then_check)
    assert answer.startswith(b"HTTP/1.1 200 "), answer

    follow = f"/jobs/{job['id']}/logs"
    limits = httpx.Limits(max_connections=10)
    async with (
        httpx.AsyncClient(base_url=server.url + "/api/v1", headers=headers, limits=limits) as busy,
        anyio.create_task_group() as tasks,
    ):
        for _ in range(3):  # three long-polls: every connection busy
            tasks.start_soon(partial(busy.get, follow, params={"wait": 30}))
        await anyio.sleep(0.5)  # let them reach the server (an early 503 fails below)
        async with httpx.AsyncClient(base_url=server.url) as extra:
            refused = await extra.get("/api/v1/health")
        server.state.hub.notify_all()  # the long-polls end
        tasks.cancel_scope.cancel()
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "1"
    assert "too many connections" in refused.json()["detail"]["message"]


@contextlib.contextmanager
def low_descriptor_server(data_dir: Path, limit: int) -> Iterator[str]:
    """``launchplane server`` in a process whose RLIMIT_NOFILE is ``limit`` (soft and hard)."""
    port = free_port()
    argv = [LAUNCHPLANE, "server", "--port", str(port)]
    argv += ["--data-dir", str(data_dir), "--header-timeout", "600", "--log-level", "error"]

    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    process = subprocess.Popen(argv, env=subprocess_env(), preexec_fn=lower_limit)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(httpx.TransportError):
                httpx.get(url + "/api/v1/health", timeout=1)
                break
            assert process.poll() is None, "the server exited"
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_1100_idle_sockets_do_not_keep_health_out(tmp_path: Path) -> None:
    """1,024 descriptors, 1,100 idle client sockets (a long header timeout, so that it is the
    cap that lets /health in, not a timeout)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300:
        if hard < 1300:
            pytest.skip("this test process needs 1,300 descriptors")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with low_descriptor_server(tmp_path / "server", 1024) as url:
        sockets = []
        try:
            for _ in range(1100):
                sockets.append(connect(url))
            answer = httpx.get(url + "/api/v1/health", timeout=30)
            assert answer.status_code == 200, answer.text
        finally:
            for sock in sockets:
                sock.close()


# -- answers: pages capped in bytes, read whole across pages ---------------------------


def cli_output(server: EmbeddedServer, token: str, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--server", server.url, "--token", token])
    assert result.exit_code == 0, result.output
    return result.output


async def test_log_pages_are_capped_in_bytes_and_the_cli_reads_them_all(
    server: EmbeddedServer,
) -> None:
    await server.ensure_queue("q", {"resource": "local-process"})
    submitter = await server.create_token("submitter")
    agent = LaunchplaneClient(server.url, await server.create_token("agent", ["q"]), retries=0)
    lines = [f"{n:02d} " + "x" * 300_000 for n in range(10)]  # 3 MB of log
    async with agent, LaunchplaneClient(server.url, submitter, retries=0) as client:
        job = await client.submit_job("q", {"command": ["true"]})
        lease = await claim_now(agent, "q")
        for start in range(0, len(lines), 3):
            await agent.append_logs(lease.lease_id, lines[start : start + 3], start + 1)
        await agent.complete(lease.lease_id, "succeeded", exit_code=0)
        first = await client.read_logs(job["id"])
        assert 0 < len(first["lines"]) < len(lines)
        page_text = sum(len(line["line"]) for line in first["lines"])
        assert page_text <= LOG_PAGE_BYTES + 300_003
        assert not first["done"]
        followed = [line["line"] async for line in client.follow_logs(job["id"])]
    assert followed == lines
    printed = await anyio.to_thread.run_sync(cli_output, server, submitter, "logs", job["id"])
    assert printed.splitlines() == lines


async def test_job_pages_are_capped_in_bytes_and_the_cli_lists_them_all(
    server: EmbeddedServer,
) -> None:
    """Six jobs of ~1.6 MB each (spec and resolved): more than one 4 MiB page."""
    await server.ensure_queue("q", {"resource": "local-process"})
    submitter = await server.create_token("submitter")
    big = {"command": ["true"], "env": {"BIG": "x" * 800_000}}
    headers = {"Authorization": f"Bearer {submitter}"}
    async with (
        LaunchplaneClient(server.url, submitter, retries=0) as client,
        httpx.AsyncClient(base_url=server.url + "/api/v1", headers=headers) as http,
    ):
        submitted = [(await client.submit_job("q", big))["id"] for _ in range(6)]
        first = (await http.get("/jobs", params={"limit": 100})).json()
        assert 0 < len(first["jobs"]) < 6 and first["next"]
        rest = (await http.get("/jobs", params={"cursor": first["next"]})).json()
        paged = [job["id"] for job in first["jobs"] + rest["jobs"]]
        listed = [job["id"] for job in await client.list_jobs(limit=100)]
        bad = await http.get("/jobs", params={"cursor": "not-a-cursor"})
    assert sorted(paged) == sorted(submitted) and len(set(paged)) == 6
    assert listed == paged  # newest first, across pages
    assert bad.status_code == 422 and bad.json()["detail"]["errors"][0]["path"] == "cursor"
    table = await anyio.to_thread.run_sync(cli_output, server, submitter, "jobs", "--limit", "10")
    assert all(job_id in table for job_id in submitted)

"""One huge log batch neither stalls the server nor is stored in part.

An agent posts one batch of ~349,000 short lines (a body just under the
1 MiB limit, the most rows one call can carry), on SQLite and on
PostgreSQL. While the store is inserting it (seen through SQLAlchemy's own
``before_cursor_execute`` event on the server's engine, not by timing),
``/health`` calls on another connection are answered: the insert yields
the event loop between chunks. The batch is then stored whole, in order.
How long /health waits meanwhile is a figure of ``bench/health_under_load.py``,
not an assertion here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from kit import QUEUE, claim_now, require_service
from sqlalchemy import event
from sqlalchemy.engine import make_url

from launchplane.core.client import LaunchplaneClient
from launchplane.core.limits import MAX_BODY_BYTES
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.settings import ServerSettings

pytestmark = pytest.mark.anyio
LINES = (MAX_BODY_BYTES - 64) // 3 - 1  # '"",' per line, and one longer last line


@contextlib.contextmanager
def database(backend: str, tmp_path: Path) -> Iterator[str | None]:
    """None (the data directory's SQLite file) or a fresh PostgreSQL database's URL."""
    if backend == "sqlite":
        yield None
        return
    url = os.environ.get("LAUNCHPLANE_TEST_DATABASE_URL", "")
    require_service("PostgreSQL", bool(url), "LAUNCHPLANE_TEST_DATABASE_URL is not set")
    import asyncpg

    admin = make_url(url).set(drivername="postgresql", database="postgres")
    name = f"lpresp_{secrets.token_hex(4)}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin.render_as_string(hide_password=False), timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def server(db_url: str | None, tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    settings = ServerSettings(data_dir=tmp_path / "server", db_url=db_url)
    async with EmbeddedServer(settings=settings) as srv:
        await srv.ensure_queue(QUEUE, {"resource": "local-process"})
        yield srv


async def test_a_full_batch_is_stored_whole_while_health_answers(server: EmbeddedServer) -> None:
    lines = [""] * LINES + ["the last line"]
    body = json.dumps({"lines": lines, "first_seq": 1}, separators=(",", ":")).encode()
    assert len(body) <= MAX_BODY_BYTES
    inserting = anyio.Event()

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO LOG_LINES"):
            inserting.set()

    engine = server.state.store.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_execute)
    agent_token = await server.create_token("agent", queues=[QUEUE])
    agent = LaunchplaneClient(server.url, agent_token, retries=0)
    async with agent, httpx.AsyncClient(base_url=server.url + "/api/v1", timeout=120) as http:
        submitter = await server.create_token("submitter")
        job = await http.post(
            "/jobs",
            json={"queue": QUEUE, "job": {"command": ["true"]}},
            headers={"Authorization": f"Bearer {submitter}"},
        )
        lease = await claim_now(agent, QUEUE)
        answered_while_storing = 0
        stored = anyio.Event()

        async def post() -> httpx.Response:
            try:
                return await http.post(
                    f"/leases/{lease.lease_id}/logs",
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        "Authorization": f"Bearer {agent_token}",
                    },
                )
            finally:
                stored.set()

        async def health() -> None:
            nonlocal answered_while_storing
            await inserting.wait()
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as pinger:
                while not stored.is_set():
                    answer = await pinger.get("/api/v1/health")
                    assert answer.status_code == 200
                    if not stored.is_set():
                        answered_while_storing += 1

        result: dict[str, httpx.Response] = {}

        async def run_post() -> None:
            result["answer"] = await post()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(health)
            tasks.start_soon(run_post)
        event.remove(engine, "before_cursor_execute", on_execute)
        answer = result["answer"]
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"next": len(lines)}
        assert answered_while_storing > 0, "/health waited for the whole batch"

        job_id = job.json()["id"]
        seen: list[str] = []
        after = 0
        while True:
            page = await agent_page(http, submitter, job_id, after)
            seen.extend(line["line"] for line in page["lines"])
            if not page["lines"]:
                break
            after = page["next"]
        assert len(seen) == len(lines)
        assert seen[-1] == "the last line" and seen[0] == ""


async def agent_page(http: httpx.AsyncClient, token: str, job_id: str, after: int) -> Any:
    answer = await http.get(
        f"/jobs/{job_id}/logs",
        params={"after": after},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()

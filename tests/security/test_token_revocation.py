"""Tokens (issue 15): revocation, deletion and expiry take effect on the very next request.

Real ``launchplane server`` processes on loopback: one on SQLite, and two on
one PostgreSQL database (``@pytest.mark.postgres``: skipped locally without
``LAUNCHPLANE_TEST_DATABASE_URL``, a failure in CI). Each server is asked with
the token first, so a server that remembered tokens it had seen (as it did
before: a token deleted from the database kept working until a restart)
would still let it through.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from store.storekit import ServerProcess, postgres_database, require_postgres, sqlite_url

from launchplane.cli import cli

CANARY = "submitter-canary"


def api(
    server: ServerProcess, method: str, path: str, token: str, **kwargs: object
) -> httpx.Response:
    return httpx.request(
        method,
        f"{server.url}/api/v1{path}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        **kwargs,  # type: ignore[arg-type]
    )


def new_token(server: ServerProcess, **body: object) -> dict[str, object]:
    answer = api(server, "POST", "/tokens", server.admin_token, json={"role": "submitter", **body})
    assert answer.status_code == 201, answer.text
    return answer.json()


def assert_refused(answer: httpx.Response, token: str, why: str) -> None:
    assert answer.status_code == 401, answer.text
    assert why in answer.json()["detail"]["message"], answer.text
    assert token not in answer.text, "the token is never echoed"


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(sqlite_url(tmp_path / "data"), tmp_path / "data") as server:
        yield server


@pytest.fixture
def pg_servers(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    require_postgres()
    with (
        postgres_database() as url,
        ServerProcess(url, tmp_path / "a") as a,
        ServerProcess(url, tmp_path / "b") as b,
    ):
        yield a, b


def test_a_revoked_token_is_refused_on_the_next_request_sqlite(
    sqlite_server: ServerProcess,
) -> None:
    created = new_token(sqlite_server, name=CANARY)
    token = str(created["token"])
    assert api(sqlite_server, "GET", "/jobs", token).status_code == 200
    admin = sqlite_server.admin_token
    revoked = api(sqlite_server, "POST", f"/tokens/{created['id']}/revoke", admin)
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert_refused(api(sqlite_server, "GET", "/jobs", token), token, "was revoked")


def test_a_token_deleted_in_the_database_is_refused_on_the_next_request_sqlite(
    sqlite_server: ServerProcess,
) -> None:
    created = new_token(sqlite_server)
    token = str(created["token"])
    assert api(sqlite_server, "GET", "/jobs", token).status_code == 200
    with sqlite3.connect(sqlite_server.data_dir / "launchplane.db") as db:
        db.execute("DELETE FROM tokens WHERE id = ?", (created["id"],))
    assert_refused(api(sqlite_server, "GET", "/jobs", token), token, "invalid token")


@pytest.mark.postgres
def test_a_token_revoked_on_one_postgres_server_is_refused_by_the_other_at_once(
    pg_servers: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = pg_servers
    created = new_token(a, name=CANARY)
    token = str(created["token"])
    for server in (a, b):
        assert api(server, "GET", "/jobs", token).status_code == 200
    assert api(a, "POST", f"/tokens/{created['id']}/revoke", a.admin_token).status_code == 200
    # No wait, no restart: the very next request on either server is refused.
    assert_refused(api(b, "GET", "/jobs", token), token, "was revoked")
    assert_refused(api(a, "GET", "/jobs", token), token, "was revoked")


@pytest.mark.postgres
def test_a_token_deleted_in_postgres_is_refused_by_both_servers_at_once(
    pg_servers: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = pg_servers
    created = new_token(a)
    token = str(created["token"])
    for server in (a, b):
        assert api(server, "GET", "/jobs", token).status_code == 200
    asyncio.run(_execute(a.db_url, "DELETE FROM tokens WHERE id = $1", created["id"]))
    for server in (b, a):
        assert_refused(api(server, "GET", "/jobs", token), token, "invalid token")


async def _execute(url: str, statement: str, *args: object) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


def test_an_expired_token_is_refused_saying_so(sqlite_server: ServerProcess) -> None:
    created = new_token(sqlite_server, expires_in_seconds=3600)
    token = str(created["token"])
    expires_at = datetime.fromisoformat(str(created["expires_at"]))
    assert timedelta(minutes=59) < expires_at - datetime.now(UTC) <= timedelta(hours=1)
    assert api(sqlite_server, "GET", "/jobs", token).status_code == 200
    # The hour passes (in the database: no test waits an hour).
    with sqlite3.connect(sqlite_server.data_dir / "launchplane.db") as db:
        past = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
        db.execute("UPDATE tokens SET expires_at = ? WHERE id = ?", (past, created["id"]))
    assert_refused(api(sqlite_server, "GET", "/jobs", token), token, "expired at")
    listed = api(sqlite_server, "GET", "/tokens", sqlite_server.admin_token).json()["tokens"]
    assert [t["state"] for t in listed if t["id"] == created["id"]] == ["expired"]
    assert "token" not in listed[0], "a listing never holds a token's value"


def test_token_cli_create_with_expiry_list_and_revoke_by_name(sqlite_server: ServerProcess) -> None:
    runner = CliRunner()
    env = {"LAUNCHPLANE_SERVER": sqlite_server.url, "LAUNCHPLANE_TOKEN": sqlite_server.admin_token}

    def run(*args: str) -> tuple[int, str, str]:
        done = runner.invoke(cli, ["token", *args], env=env)
        return done.exit_code, done.stdout, done.stderr

    code, out, err = run("create", "--role", "submitter", "--name", CANARY, "--expires", "30d")
    assert code == 0, err
    token = out.strip()
    code, out, _ = run("list", "--json")
    (mine,) = [t for t in json.loads(out)["tokens"] if t["name"] == CANARY]
    expires_at = datetime.fromisoformat(mine["expires_at"])
    assert timedelta(days=29, hours=23) < expires_at - datetime.now(UTC) <= timedelta(days=30)
    assert token not in out

    for bad in ("30", "5x", "0d", "-1h", "1.5d"):
        code, _, err = run("create", "--role", "submitter", "--expires", bad)
        assert code == 2 and "--expires" in err and "s, m, h or d" in err, (bad, err)

    code, out, err = run("revoke", CANARY)
    assert code == 0 and f"token {mine['id']}" in out, err
    assert_refused(api(sqlite_server, "GET", "/jobs", token), token, "was revoked")
    code, _, err = run("revoke", CANARY)
    assert code == 1 and "no unrevoked token is named" in err
    code, out, _ = run("list")
    assert any(" revoked " in line and CANARY in line for line in out.splitlines()), out


def test_a_token_cannot_revoke_itself(sqlite_server: ServerProcess) -> None:
    """The one guard against locking the last admin out."""
    listed = api(sqlite_server, "GET", "/tokens", sqlite_server.admin_token).json()["tokens"]
    (own,) = [t["id"] for t in listed if t["name"] == "admin (local)"]
    answer = api(sqlite_server, "POST", f"/tokens/{own}/revoke", sqlite_server.admin_token)
    assert answer.status_code == 409 and "another admin token" in answer.text

"""A full disk: the server answers 507 and stores nothing, then recovers when space returns.

The server's data directory is on a small tmpfs the test mounts (root only;
skipped otherwise), filled to the last byte with a filler file. Every write
then fails in SQLite with "database or disk is full": a submit and a log
batch under a live lease get 507 naming the cause, not a 500, and the running
job stays held by its lease, not lost. Once the filler is removed the same
calls succeed, the job completes with every line, and ``PRAGMA
integrity_check`` finds the database intact.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kit import agent_client, claim_now

from launchplane.core.client import ApiError
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.settings import DB_FILE, ServerSettings

pytestmark = pytest.mark.anyio
QUEUE = "q"
DISK_BYTES = 4 * 1024 * 1024
BIG = "x" * 300_000
"""A field larger than anything the WAL holds already: its write must grow a file."""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs at ``tmp_path/disk``, unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the disk refuses another byte; return it."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (1 << 16, 1 << 10, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    with pytest.raises(OSError) as refused:
        (disk / "probe").write_bytes(b"\0" * 4096)
    assert refused.value.errno == errno.ENOSPC
    return filler


async def test_full_disk_is_a_507_and_the_server_recovers(small_disk: Path) -> None:
    settings = ServerSettings(data_dir=small_disk / "server", sweep_interval=0.2)
    async with EmbeddedServer(settings=settings) as server:
        await server.ensure_queue(QUEUE, {"resource": "local-process"})
        submitter = await server.create_token("submitter")
        headers = {"Authorization": f"Bearer {submitter}"}
        async with (
            httpx.AsyncClient(base_url=server.url + "/api/v1", headers=headers) as http,
            await agent_client(server, [QUEUE]) as agent,
        ):
            first = await http.post("/jobs", json={"queue": QUEUE, "job": {"command": ["true"]}})
            assert first.status_code == 201, first.text
            lease = await claim_now(agent, QUEUE)
            await agent.post_event(lease.lease_id, "running")

            filler = fill(small_disk)
            big_job = {"queue": QUEUE, "job": {"command": ["true"], "env": {"BIG": BIG}}}
            key = {"Idempotency-Key": "after-the-disk-filled"}
            refused = await http.post("/jobs", json=big_job, headers=key)
            assert refused.status_code == 507, refused.text
            assert "storage is full" in refused.json()["detail"]["message"]
            lines = [f"{n} {BIG[:1000]}" for n in range(300)]
            with pytest.raises(ApiError) as caught:
                await agent.append_logs(lease.lease_id, lines, first_seq=1)
            assert caught.value.status == 507, caught.value
            job = (await http.get(f"/jobs/{first.json()['id']}")).json()
            assert job["state"] == "running"  # held by its live lease, waiting for the disk

            filler.unlink()
            accepted = await http.post("/jobs", json=big_job, headers=key)
            assert accepted.status_code == 201, accepted.text
            assert await agent.append_logs(lease.lease_id, lines, first_seq=1) == len(lines)
            await agent.complete(lease.lease_id, "succeeded", exit_code=0)
            done = (await http.get(f"/jobs/{first.json()['id']}")).json()
            assert done["state"] == "succeeded"
            stored = (await http.get(f"/jobs/{first.json()['id']}/logs")).json()
            assert [line["line"] for line in stored["lines"]] == lines

    with contextlib.closing(sqlite3.connect(small_disk / "server" / DB_FILE)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM jobs").fetchone() == (2,)


def test_postgresql_and_file_disk_full_errors_are_recognised() -> None:
    """No PostgreSQL disk can be filled here: its error class (SQLSTATE 53100) is checked as
    SQLAlchemy hands it over, wrapped; and ENOSPC from a file write."""
    import asyncpg
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
    from sqlalchemy.exc import OperationalError

    from launchplane.server.problems import storage_full

    disk_full = asyncpg.exceptions.DiskFullError("could not extend file: No space left on device")
    adapted = AsyncAdapt_asyncpg_dbapi.OperationalError(str(disk_full), disk_full)
    wrapped = OperationalError("INSERT ...", {}, adapted)
    assert storage_full(wrapped) is not None
    assert storage_full(OSError(errno.ENOSPC, "No space left on device")) is not None
    locked = sqlite3.OperationalError("database is locked")
    assert storage_full(OperationalError("SELECT 1", {}, locked)) is None

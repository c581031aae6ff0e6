"""Log shipping keeps every line: long lines, huge lines, chatty jobs, a server that refuses.

Real jobs (``python -c``) run by an in-process agent against a real server on
loopback. The agent sizes each log batch by bytes under the server's body
limit (``launchplane.core.limits``), cuts lines over 64 KiB into pieces, sends
a batch a stricter server refuses (413) again in smaller ones, makes lines
that do not fit in memory wait in the run directory's spill file, and only
when the disk refuses those too drops lines, keeping the first and the last
and saying how many it dropped.
"""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from agentkit import FAST_QUEUE, QUEUE, agent_process
from kit import log_lines, running_agent, subprocess_env, wait_for_state

from launchplane.agent.outbox import (
    KEEP_LAST_LINES,
    MAX_BUFFERED_LINES,
    SPILL_AFTER_LINES,
    LeaseOutbox,
    split_line,
)
from launchplane.agent.rundir import SPILL_FILE
from launchplane.core.client import LaunchplaneClient
from launchplane.core.limits import MAX_BODY_BYTES, MAX_LINE_BYTES
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.settings import ServerSettings

pytestmark = pytest.mark.anyio

LONG_LEASE = "long-lease"
DROPPED = re.compile(r"\[launchplane: (\d+) lines dropped here")


async def run_job(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path, script: str, timeout: float
) -> list[str]:
    """The stored log of ``python -c script`` once the job has succeeded."""
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(QUEUE, {"command": [sys.executable, "-c", script]})
        done = await wait_for_state(client, job["id"], timeout=timeout)
    assert done["state"] == "succeeded", done["reason"]
    return await log_lines(client, job["id"])


def test_the_server_default_takes_the_batches_the_agent_sends(tmp_path: Path) -> None:
    assert ServerSettings(data_dir=tmp_path).max_body_bytes >= MAX_BODY_BYTES


def test_a_long_line_is_cut_between_characters() -> None:
    text = "aé€😀" * 30_000  # 1, 2, 3 and 4 UTF-8 bytes
    pieces = split_line(text, MAX_LINE_BYTES)
    assert "".join(pieces) == text and len(pieces) == 5
    assert all(len(piece.encode()) <= MAX_LINE_BYTES for piece in pieces)
    assert split_line("short", MAX_LINE_BYTES) == ["short"]


async def test_long_lines_are_all_stored_in_order(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    """400 lines of 20,000 characters: 8 MB, far over one body (main stored 3 of them)."""
    script = "for i in range(400): print(f'{i:05d}' + 'x' * 19995)"
    lines = await run_job(server, client, tmp_path, script, timeout=60)
    assert lines == [f"{i:05d}" + "x" * 19995 for i in range(400)]


async def test_a_10_mb_line_is_stored_whole_as_pieces(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    """One 10 MB line (a progress bar without newlines): every character, in order."""
    script = (
        "import sys; sys.stdout.write(''.join(f'{i:09d}|' for i in range(1_000_000))); "
        "print(); print('after')"
    )
    lines = await run_job(server, client, tmp_path, script, timeout=60)
    assert lines[-1] == "after"
    assert "".join(lines[:-1]) == "".join(f"{i:09d}|" for i in range(1_000_000))
    assert max(len(line.encode()) for line in lines) <= MAX_LINE_BYTES


CANARY = "canary-4f1d9b2e-never-on-disk"


async def peak_rss_kib(pid: int, peak: list[int]) -> None:
    """Sample ``VmRSS`` of ``pid`` every 50 ms into ``peak[0]`` until cancelled or it ends."""
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            text = status.read_text()
        except OSError:
            return
        for row in text.splitlines():
            if row.startswith("VmRSS:"):
                peak[0] = max(peak[0], int(row.split()[1]))
        await anyio.sleep(0.05)


async def test_a_chatty_job_has_every_line_stored_once_in_order(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    """300,000 short lines, faster than the server stores them: none is lost or doubled.

    A real agent process on a healthy server (main kept 106,871 and lost the
    ending). What does not fit in the agent's memory waits in the run
    directory's spill file, which holds only redacted text (the job prints a
    secret) and is the agent's alone (0600). The job's state is reported once
    its last line is stored: the log is read right after ``succeeded``.
    """
    await server.ensure_queue(
        QUEUE, {**FAST_QUEUE, "lease_ttl_seconds": 10, "secrets": {"TOKEN": "env:CANARY"}}
    )
    total = 300_000
    script = (
        "import os\n"
        f"for i in range({total}):\n"
        "    print(f'token {os.environ[\"TOKEN\"]}' if i % 50_000 == 1 else f'line {i}')\n"
        "print('Traceback: the end')"
    )
    expected = [f"line {i}" if i % 50_000 != 1 else "token ***" for i in range(total)]
    peak = [0]
    env = subprocess_env(CANARY=CANARY)
    async with agent_process(server, tmp_path, env=env) as agent:
        async with anyio.create_task_group() as sampler:
            sampler.start_soon(peak_rss_kib, agent.pid, peak)
            job = await client.submit_job(QUEUE, {"command": [sys.executable, "-c", script]})
            done = await wait_for_state(client, job["id"], timeout=300)
            sampler.cancel_scope.cancel()
        assert done["state"] == "succeeded", done["reason"]
        lines = await log_lines(client, job["id"])
    print(f"\nagent peak RSS while shipping {total:,} lines: {peak[0] / 1024:.1f} MiB")
    assert len(lines) == total + 1, f"{total + 1 - len(lines)} lines missing (or doubled)"
    assert lines == [*expected, "Traceback: the end"]
    (spill,) = (tmp_path / "work").glob(f"*/{SPILL_FILE}")
    assert stat.S_IMODE(spill.stat().st_mode) == 0o600
    spilled = spill.read_text()
    assert "token ***" in spilled, "the lines that waited on disk were the redacted ones"
    assert CANARY not in spilled


class Unreachable(httpx.AsyncBaseTransport):
    """Refuses to connect while ``down``: the server is unreachable, then back."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.down = True
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            self.refused += 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def ship_while_unreachable(
    server: EmbeddedServer, client: LaunchplaneClient, total: int, **spill: Any
) -> tuple[list[str], LeaseOutbox]:
    """``total`` lines given to an outbox while the server is unreachable, then shipped.

    ``spill``: the outbox's ``spill_path`` / ``spill_limit``. Returns the stored
    log and the outbox.
    """
    # Nothing heartbeats this lease: it must outlive the test.
    await server.ensure_queue(LONG_LEASE, {"resource": "local-process", "lease_ttl_seconds": 300})
    job = await client.submit_job(LONG_LEASE, {"command": ["true"]})
    token = await server.create_token("agent", queues=[LONG_LEASE])
    transport = Unreachable()
    async with LaunchplaneClient(
        server.url, token, transport=transport, retries=0, backoff=0.01
    ) as agent:
        transport.down = False
        lease = await agent.claim(LONG_LEASE, "agent-1", wait=5)
        assert lease is not None
        transport.down = True
        outbox = LeaseOutbox(
            agent, lease.lease_id, lease.job_id, on_stale=lambda: None, give_up_after=60, **spill
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(outbox.run)
            for i in range(total):
                outbox.line(f"line {i}", output=True)
                if i % 10_000 == 0:
                    await anyio.sleep(0)  # the log lane tries, and fails, meanwhile
            assert transport.refused, "the server was unreachable while lines came"
            transport.down = False
            outbox.finish("complete", lambda: agent.complete(lease.lease_id, "succeeded", 0))
    return await log_lines(client, job["id"]), outbox


def assert_first_and_last_kept(lines: list[str], total: int) -> int:
    """The log is lines 0.., one notice of N dropped, then the newest lines; returns N's
    position (how many of the first lines were kept)."""
    (notice,) = [line for line in lines if DROPPED.match(line)]
    gap = lines.index(notice)
    dropped = int(DROPPED.match(notice).group(1))  # type: ignore[union-attr]
    assert len(lines) - 1 + dropped == total
    assert lines[:gap] == [f"line {i}" for i in range(gap)], "the first lines are kept"
    assert lines[gap + 1 :] == [f"line {i}" for i in range(gap + dropped, total)]
    assert len(lines) - gap - 1 >= KEEP_LAST_LINES, "the newest lines are kept"
    return gap


async def test_while_the_server_is_unreachable_the_first_and_last_lines_are_kept(
    server: EmbeddedServer, client: LaunchplaneClient
) -> None:
    """No spill file: lines past the buffer are dropped from the middle, with one notice."""
    total = MAX_BUFFERED_LINES + 50_000
    lines, outbox = await ship_while_unreachable(server, client, total)
    assert_first_and_last_kept(lines, total)
    assert outbox.output_logged == total, "dropped lines count as handled, for re-adoption"


async def test_while_the_server_is_unreachable_lines_wait_on_disk(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    """With a spill file nothing is dropped: every line is stored once, in order.

    The job can write in its run directory: a link it left under the spill
    file's name is replaced, never followed (its target keeps its content).
    """
    total = MAX_BUFFERED_LINES + 50_000
    spill = tmp_path / SPILL_FILE
    target = tmp_path / "agent-owned"
    target.write_text("precious\n")
    spill.symlink_to(target)
    lines, outbox = await ship_while_unreachable(server, client, total, spill_path=spill)
    assert lines == [f"line {i}" for i in range(total)]
    assert outbox.output_logged == total
    assert target.read_text() == "precious\n"
    assert not spill.is_symlink() and stat.S_IMODE(spill.stat().st_mode) == 0o600
    assert spill.read_text().count("\n") == total - SPILL_AFTER_LINES, "the rest waited there"


@pytest.fixture(params=["spill limit", "disk full"])
def refusing_spill(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A spill file that takes about 1 MiB of lines: by its limit, or on a full disk.

    The full disk is a 1 MiB tmpfs the test mounts (root only; skipped otherwise).
    """
    if request.param == "spill limit":
        yield {"spill_path": tmp_path / SPILL_FILE, "spill_limit": 1 << 20}
        return
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield {"spill_path": disk / SPILL_FILE}
    finally:
        subprocess.run(["umount", str(disk)], check=True)


async def test_when_the_disk_refuses_lines_the_first_and_last_are_kept(
    server: EmbeddedServer, client: LaunchplaneClient, refusing_spill: dict[str, Any]
) -> None:
    """Lines are dropped only once the spill file takes no more, and then from the middle:
    what is kept is the lines in memory, those on disk, the notice, the newest lines."""
    total = MAX_BUFFERED_LINES + 150_000
    lines, outbox = await ship_while_unreachable(server, client, total, **refusing_spill)
    first = assert_first_and_last_kept(lines, total)
    assert first > SPILL_AFTER_LINES, "the lines that fitted on disk are kept"
    assert outbox.output_logged == total


async def test_a_server_with_a_lower_body_limit_gets_smaller_batches(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 413 is a reason to send the batch again in parts, never to drop it."""
    settings = ServerSettings(data_dir=tmp_path / "server", max_body_bytes=48 * 1024)
    async with EmbeddedServer(settings=settings) as strict:
        await strict.ensure_queue(QUEUE, {"resource": "local-process"})
        async with LaunchplaneClient(strict.url, strict.admin_token) as client:
            script = (
                "for i in range(100): print(f'{i:05d}' + 'x' * 19995)\n"
                "print('é' * 100_000)\nprint('the end')"
            )
            lines = await run_job(strict, client, tmp_path, script, timeout=60)
    assert "refused a log batch" in caplog.text, "the server did answer 413"
    expected = [f"{i:05d}" + "x" * 19995 for i in range(100)]
    assert lines[:100] == expected
    assert "".join(lines[100:-1]) == "é" * 100_000
    assert lines[-1] == "the end"

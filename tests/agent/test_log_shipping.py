"""Log shipping keeps every line: long lines, huge lines, chatty jobs, a server that refuses.

Real jobs (``python -c``) run by an in-process agent against a real server on
loopback. The agent sizes each log batch by bytes under the server's body
limit (``launchplane.core.limits``), cuts lines over 64 KiB into pieces, sends
a batch a stricter server refuses (413) again in smaller ones, and when it
must drop lines keeps the first and the last and says how many it dropped.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from agentkit import QUEUE
from kit import log_lines, running_agent, wait_for_state

from launchplane.agent.outbox import KEEP_LAST_LINES, MAX_BUFFERED_LINES, LeaseOutbox, split_line
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


async def test_a_chatty_job_keeps_its_first_and_last_lines(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    """300,000 short lines, faster than the server stores them: the ending is never lost.

    Lines the agent had to drop are said so in one line where they were, and
    everything else is stored in order.
    """
    total = 300_000
    script = f"for i in range({total}): print(f'line {{i}}')\nprint('Traceback: the end')"
    lines = await run_job(server, client, tmp_path, script, timeout=240)
    assert lines[0] == "line 0"
    assert lines[-1] == "Traceback: the end"
    kept = [line for line in lines[:-1] if not DROPPED.match(line)]
    dropped = sum(int(m.group(1)) for line in lines if (m := DROPPED.match(line)))
    assert len(kept) + dropped == total
    numbers = [int(line.removeprefix("line ")) for line in kept]
    assert numbers == sorted(numbers), "lines stored out of order"
    assert numbers[-KEEP_LAST_LINES:] == list(range(total - KEEP_LAST_LINES, total)) or not dropped


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


async def test_while_the_server_is_unreachable_the_first_and_last_lines_are_kept(
    server: EmbeddedServer, client: LaunchplaneClient
) -> None:
    """Lines past the buffer are dropped from the middle, with one line saying how many."""
    # Nothing heartbeats this lease: it must outlive the test.
    await server.ensure_queue(LONG_LEASE, {"resource": "local-process", "lease_ttl_seconds": 300})
    job = await client.submit_job(LONG_LEASE, {"command": ["true"]})
    token = await server.create_token("agent", queues=[LONG_LEASE])
    transport = Unreachable()
    total = MAX_BUFFERED_LINES + 50_000
    async with LaunchplaneClient(
        server.url, token, transport=transport, retries=0, backoff=0.01
    ) as agent:
        transport.down = False
        lease = await agent.claim(LONG_LEASE, "agent-1", wait=5)
        assert lease is not None
        transport.down = True
        outbox = LeaseOutbox(
            agent, lease.lease_id, lease.job_id, on_stale=lambda: None, give_up_after=60
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
    lines = await log_lines(client, job["id"])
    (notice,) = [line for line in lines if DROPPED.match(line)]
    gap = lines.index(notice)
    dropped = int(DROPPED.match(notice).group(1))  # type: ignore[union-attr]
    assert len(lines) - 1 + dropped == total
    assert lines[:gap] == [f"line {i}" for i in range(gap)], "the first lines are kept"
    assert lines[gap + 1 :] == [f"line {i}" for i in range(gap + dropped, total)]
    assert len(lines) - gap - 1 >= KEEP_LAST_LINES, "the newest lines are kept"
    assert outbox.output_logged == total, "dropped lines count as handled, for re-adoption"


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

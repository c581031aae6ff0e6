"""Log batches carry the seq of their first line, so a batch sent twice is stored once.

The agent retries a log batch whose answer it did not get; the server may
have stored it all the same. ``first_seq`` lets the server tell a repeat
from new lines (``Store.append_logs``), on both backends.
"""

from __future__ import annotations

import httpx
import pytest
from storekit import QUEUE, submit_many

from launchplane.agent.outbox import LeaseOutbox
from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.schemas import AgentRegister, CompleteIn
from launchplane.server.store import Store

pytestmark = pytest.mark.anyio


async def lines_of(store: Store, job_id: str) -> list[str]:
    return [line.line for line in (await store.read_logs(job_id, 0)).lines]


async def test_a_repeated_or_overlapping_batch_is_stored_once(store: Store) -> None:
    (job_id,) = await submit_many(store, 1)
    lease = await store.claim(QUEUE, "a1")
    assert lease is not None and lease.log_count == 0
    assert await store.append_logs(lease.lease_id, ["a", "b"], first_seq=1) == 2
    assert await store.append_logs(lease.lease_id, ["a", "b"], first_seq=1) == 2
    assert await store.append_logs(lease.lease_id, ["b", "c"], first_seq=2) == 3
    assert await lines_of(store, job_id) == ["a", "b", "c"]
    # Past the end (a batch in between was given up on): appended as it is.
    assert await store.append_logs(lease.lease_id, ["x"], first_seq=9) == 4
    # Without first_seq every line is appended, as before.
    assert await store.append_logs(lease.lease_id, ["x"]) == 5
    assert await lines_of(store, job_id) == ["a", "b", "c", "x", "x"]


async def test_leases_say_where_their_log_goes_on(store: Store) -> None:
    """A new attempt's lines follow the earlier attempts' (seqs are per job)."""
    (job_id,) = await submit_many(store, 1)
    first = await store.claim(QUEUE, "a1")
    assert first is not None
    await store.append_logs(first.lease_id, ["one", "two"], first_seq=first.log_count + 1)
    await store.release(first.lease_id, "restarting")
    second = await store.claim(QUEUE, "a2")
    assert second is not None and second.log_count == 2
    (held,) = await store.register_agent(AgentRegister(agent_id="a2", queues=[QUEUE]))
    assert held.log_count == 2
    await store.append_logs(second.lease_id, ["three"], first_seq=second.log_count + 1)
    await store.complete(second.lease_id, CompleteIn(state="succeeded", exit_code=0))
    assert await lines_of(store, job_id) == ["one", "two", "three"]


class LoseFirstLogsAnswer(httpx.AsyncBaseTransport):
    """Delivers the first log batch to the server, then fails as if the answer was lost.

    A fault injected at the transport: the server, its database and the
    agent's outbox are all real.
    """

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/logs") and not self.lost:
            await response.aread()
            await response.aclose()
            self.lost += 1
            raise httpx.ReadError("connection reset before the answer", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_the_agent_outbox_retries_a_lost_answer_without_duplicating_lines(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    job = await submitter.submit_job(QUEUE, {})
    token = await server.create_token("agent", queues=[QUEUE])
    transport = LoseFirstLogsAnswer()
    async with LaunchplaneClient(server.url, token, transport=transport, backoff=0.01) as agent:
        lease = await agent.claim(QUEUE, "agent-1", wait=5)
        assert lease is not None
        outbox = LeaseOutbox(
            agent,
            lease.lease_id,
            lease.job_id,
            on_stale=lambda: None,
            give_up_after=30,
            first_seq=lease.log_count + 1,
        )
        for text in ("epoch 1", "epoch 2"):
            outbox.line(text, output=True)
        outbox.finish("complete", lambda: agent.complete(lease.lease_id, "succeeded", 0))
        await outbox.run()
    assert transport.lost == 1, "the fault was injected"
    assert outbox.output_logged == 2
    page = await submitter.read_logs(job["id"])
    assert [line["line"] for line in page["lines"]] == ["epoch 1", "epoch 2"]

"""Helpers of the queue server tests alone (fixtures live in conftest.py).

The queue, the clients and lease helpers that the store suite shares are in tests/kit.py.
"""

from __future__ import annotations

import anyio
import httpx

CONCURRENT = 50


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def flood_of_unknown_reads(url: str, token: str, reads: int) -> None:
    """``reads`` log follows (``wait=30``) of job ids that do not exist, ``CONCURRENT`` at a time.

    Each must be a 404 at once: no read waits for a job that is not there. Each
    of the ``CONCURRENT`` readers sends its reads one after another, so no
    keep-alive connection sits idle long enough for the server to close it.
    """
    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=CONCURRENT)
    async with httpx.AsyncClient(
        base_url=url + "/api/v1", headers=bearer(token), limits=limits, timeout=30
    ) as http:

        async def read(index: int) -> httpx.Response:
            return await http.get(f"/jobs/j-missing{index}/logs", params={"wait": 30})

        async def reader(first: int) -> None:
            for index in range(first, reads, CONCURRENT):
                try:
                    answer = await read(index)
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    # A keep-alive connection the server closed just as it was reused.
                    answer = await read(index)
                assert answer.status_code == 404, answer.text

        async with anyio.create_task_group() as reading:
            for first in range(CONCURRENT):
                reading.start_soon(reader, first)

"""Cross-process wake-ups on PostgreSQL: one LISTEN connection per server process.

Every write transaction that makes something claimable (submit, release,
re-queue, a retry whose backoff ended) or ends a job sends its hub keys with
``pg_notify(CHANNEL, key)``; PostgreSQL delivers them at commit, to every
listening session, in commit order. :class:`PgListener` holds one dedicated
asyncpg connection (outside the SQLAlchemy pool: it must never be recycled or
lent out) and hands each payload to this process's :class:`Hub`.

One channel with the key as payload, rather than a channel per queue: a
server LISTENs once, whatever queues exist now or later.

When the connection drops (database restart, network, ``pg_terminate_backend``)
it reconnects with backoff; after every (re)connect it wakes all waiters,
since notifications sent while it was away are lost. A ping every
``KEEPALIVE_SECONDS`` finds connections that died silently. Meanwhile the
hub's poll interval keeps pickups going (see ``hub.py``).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import anyio

from launchplane.server.hub import Hub

log = logging.getLogger("launchplane.server")

CHANNEL = "launchplane"
KEEPALIVE_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 10.0
_ENGINE_ONLY_ARGS = ("prepared_statement_cache_size", "prepared_statement_name_func")


class PgListener:
    """Feeds NOTIFY payloads on :data:`CHANNEL` into a hub until stopped."""

    def __init__(self, connect_kwargs: dict[str, Any], hub: Hub) -> None:
        self._kwargs = {k: v for k, v in connect_kwargs.items() if k not in _ENGINE_ONLY_ARGS}
        self._kwargs["server_settings"] = {"application_name": "launchplane-listener"}
        self._kwargs["timeout"] = CONNECT_TIMEOUT_SECONDS
        self.hub = hub
        self.connected = anyio.Event()
        """Set while a LISTEN connection is up (tests wait on it)."""

    async def run(self, stop: anyio.Event) -> None:
        """Listen until ``stop`` is set; never raises (the poll interval covers any outage).

        Cancelled at ``stop`` wherever it is, a pending connect included: the
        connection is its own, never the pool's, so nothing is left half-used.
        """
        async with anyio.create_task_group() as tasks:

            async def cancel_on_stop() -> None:
                await stop.wait()
                tasks.cancel_scope.cancel()

            tasks.start_soon(cancel_on_stop)
            tasks.start_soon(self._listen_forever)

    async def _listen_forever(self) -> None:
        import asyncpg

        failures = 0
        while True:
            try:
                conn = await asyncpg.connect(**self._kwargs)
            except Exception as exc:  # refused, DNS, auth, timeout: all mean "try again later"
                failures += 1
                if failures == 1:
                    log.warning("LISTEN connection failed (%s); retrying, polling meanwhile", exc)
                await anyio.sleep(_backoff(failures))
                continue
            failures = 1
            try:
                await self._listen(conn)
            except Exception as exc:
                log.warning("LISTEN connection lost (%s); reconnecting, polling meanwhile", exc)
            finally:
                self.connected = anyio.Event()
                conn.terminate()
            await anyio.sleep(_backoff(failures))

    async def _listen(self, conn: Any) -> None:
        """Deliver notifications until the connection fails (it raises then)."""
        lost = anyio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, self._deliver)
        self.connected.set()
        self.hub.notify_all()  # whatever was sent while nobody listened
        while True:
            with anyio.move_on_after(KEEPALIVE_SECONDS):
                await lost.wait()
            if lost.is_set():
                raise ConnectionError("the database closed the connection")
            with anyio.fail_after(KEEPALIVE_SECONDS):
                await conn.execute("SELECT 1")

    def _deliver(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.hub.notify(payload)


def _backoff(failures: int) -> float:
    """Jittered exponential backoff, from about 0.1 s up to 10 s."""
    return random.uniform(0.05, min(10.0, 0.1 * 2**failures))

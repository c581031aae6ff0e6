"""All database access of the queue server, behind one :class:`Store`.

The HTTP layer calls :class:`Store` methods and never writes SQL. Queries are
SQLAlchemy Core; every method is one short transaction. The store is split by
table family, one module each, composed into :class:`Store`:

``base``     the engine, transactions, wake-ups and the per-backend differences
``tokens``   API tokens (hashes only)
``queues``   queues and their immutable config versions
``jobs``     submit, read, cancel; events, logs, run records
``leases``   agents, claims, heartbeats and every call made under a lease
``sweeper``  expired leases, ended backoffs, leases renewed at start-up

What a job's state becomes is not decided here but by the SQL-free rules of
:mod:`launchplane.server.lifecycle`; the store reads the rows, asks, and writes.
"""

from __future__ import annotations

from launchplane.server.store.jobs import JobStore
from launchplane.server.store.leases import LeaseInfo, LeaseStore
from launchplane.server.store.queues import QueueStore
from launchplane.server.store.sweeper import SweeperStore
from launchplane.server.store.tokens import TokenInfo, TokenStore

__all__ = ["LeaseInfo", "Store", "TokenInfo"]


class Store(TokenStore, QueueStore, JobStore, LeaseStore, SweeperStore):
    """The database behind the API (``Store(url)``, then ``await store.open()``)."""

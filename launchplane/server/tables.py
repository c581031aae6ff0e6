"""The database schema, in SQLAlchemy Core, portable between SQLite and PostgreSQL.

Databases are created and upgraded by the Alembic revisions in
``migrations/`` (never by ``metadata.create_all``): a change here needs a new
revision there, and ``tests/store/test_migrations.py`` checks that the two agree.

JSON documents are stored as text (``JSONText``) and timestamps as
timezone-aware UTC (``UTCDateTime``) so that the same table definitions and
queries run on both engines without dialect-specific column types.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator


class JSONText(TypeDecorator[Any]):
    """A JSON value kept as text: identical on SQLite and PostgreSQL, never queried into."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


class UTCDateTime(TypeDecorator[datetime]):
    """Always UTC and timezone-aware on the way out, even where the engine drops the zone.

    SQLite stores naive text; keeping every value in UTC makes its text
    comparisons (``expires_at < now``) correct.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


metadata = MetaData()

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("name", String(200)),
    Column("queues", JSONText, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # NULL: never expires / not revoked. A revoked or expired token is kept (not deleted)
    # so that a request with it is told why it is refused, and `token list` shows it.
    Column("expires_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
)

queues = Table(
    "queues",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("config", JSONText, nullable=False),
    Column("version", Integer, nullable=False),
    Column("warnings", JSONText, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

queue_versions = Table(
    "queue_versions",
    metadata,
    Column("name", String(128), ForeignKey("queues.name"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("config", JSONText, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("queue", String(128), ForeignKey("queues.name"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("spec", JSONText, nullable=False),
    Column("overrides", JSONText, nullable=False),
    Column("template_variables", JSONText, nullable=False),
    Column("queue_version", Integer, nullable=False),
    Column("resolved", JSONText, nullable=False),
    Column("agent_id", String(200)),
    Column("exit_code", Integer),
    Column("failure_stage", String(64)),
    Column("reason", Text),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("log_count", Integer, nullable=False, default=0),
    # Claim order: the rank of resolved.priority in spec.PRIORITIES (0 critical .. 3 low,
    # W&B's numbers), lowest first; the default is medium's, for rows from before it existed.
    Column("priority", Integer, nullable=False, server_default=text("2")),
    # A retried job is not claimed before this (its backoff); NULL: claimable now.
    Column("not_before", UTCDateTime),
    # The scope makes a key unique per submitter token; NULL keys never collide.
    Column("idempotency_scope", String(40)),
    Column("idempotency_key", String(200)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("idempotency_scope", "idempotency_key", name="uq_jobs_idempotency"),
    # Serves the claim query whole (filter and ORDER BY priority, created_at, id): no sort.
    Index("ix_jobs_claim", "queue", "state", "priority", "created_at", "id"),
    Index("ix_jobs_created", "created_at"),
    Index("ix_jobs_not_before", "not_before"),
)

leases = Table(
    "leases",
    metadata,
    Column("lease_id", String(40), primary_key=True),
    Column("job_id", String(40), ForeignKey("jobs.id"), nullable=False, index=True),
    Column("queue", String(128), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("agent_id", String(200), nullable=False, index=True),
    Column("ttl_seconds", Float, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("active", Boolean, nullable=False),
    # How the lease ended (completed, released, expired, cancelled): lets a
    # retried complete/release be answered instead of refused as stale.
    Column("outcome", String(16)),
    # The lease's own log numbering: the seq, as this lease numbers them, of its last line
    # stored (starts at the job's log_count at claim). Its batches are deduplicated by it,
    # not by the job's log_count, which late lines of an ended lease also move on. 64-bit:
    # a batch past a gap (lines given up on) may number its lines up to MAX_SEQ (2**62).
    Column("log_position", BigInteger, nullable=False, server_default=text("0")),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_leases_active_expiry", "active", "expires_at"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(40), ForeignKey("jobs.id"), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("stage", String(64)),
    Column("reason", Text),
    Column("details", JSONText),
    Column("at", UTCDateTime, nullable=False),
)

log_lines = Table(
    "log_lines",
    metadata,
    Column("job_id", String(40), ForeignKey("jobs.id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("line", Text, nullable=False),
)

records = Table(
    "records",
    metadata,
    Column("job_id", String(40), ForeignKey("jobs.id"), primary_key=True),
    Column("record", JSONText, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

agents = Table(
    "agents",
    metadata,
    Column("agent_id", String(200), primary_key=True),
    Column("host", String(255), nullable=False, default=""),
    Column("queues", JSONText, nullable=False),
    Column("version", String(64), nullable=False, default=""),
    Column("plugins", JSONText, nullable=False),
    Column("last_heartbeat", UTCDateTime),
    Column("registered_at", UTCDateTime, nullable=False),
    # The agent token this agent id is bound to (the first that used it; NULL: none yet,
    # or an admin token). Another token may not use the id while this one is valid.
    # No foreign key: a token deleted by hand frees the id instead of blocking the delete.
    Column("token_id", Integer),
)

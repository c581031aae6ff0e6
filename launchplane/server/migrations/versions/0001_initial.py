"""The initial schema: tokens, queues and their versions, jobs, leases, events, logs, records.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

JSON = sa.Text  # JSON documents are stored as text on both backends
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("queues", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
    )
    op.create_table(
        "queues",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("config", JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("warnings", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
    )
    op.create_table(
        "queue_versions",
        sa.Column("name", sa.String(128), sa.ForeignKey("queues.name"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("config", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("queue", sa.String(128), sa.ForeignKey("queues.name"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("overrides", JSON, nullable=False),
        sa.Column("template_variables", JSON, nullable=False),
        sa.Column("queue_version", sa.Integer, nullable=False),
        sa.Column("resolved", JSON, nullable=False),
        sa.Column("agent_id", sa.String(200)),
        sa.Column("exit_code", sa.Integer),
        sa.Column("failure_stage", sa.String(64)),
        sa.Column("reason", sa.Text),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("log_count", sa.Integer, nullable=False),
        sa.Column("idempotency_scope", sa.String(40)),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.UniqueConstraint("idempotency_scope", "idempotency_key", name="uq_jobs_idempotency"),
    )
    op.create_index("ix_jobs_claim", "jobs", ["queue", "state", "created_at"])
    op.create_index("ix_jobs_created", "jobs", ["created_at"])
    op.create_table(
        "leases",
        sa.Column("lease_id", sa.String(40), primary_key=True),
        sa.Column("job_id", sa.String(40), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("queue", sa.String(128), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("agent_id", sa.String(200), nullable=False),
        sa.Column("ttl_seconds", sa.Float, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("outcome", sa.String(16)),
        sa.Column("created_at", TIMESTAMP, nullable=False),
    )
    op.create_index("ix_leases_job_id", "leases", ["job_id"])
    op.create_index("ix_leases_agent_id", "leases", ["agent_id"])
    op.create_index("ix_leases_active_expiry", "leases", ["active", "expires_at"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(40), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(64)),
        sa.Column("reason", sa.Text),
        sa.Column("details", JSON),
        sa.Column("at", TIMESTAMP, nullable=False),
    )
    op.create_index("ix_events_job_id", "events", ["job_id"])
    op.create_table(
        "log_lines",
        sa.Column("job_id", sa.String(40), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("line", sa.Text, nullable=False),
    )
    op.create_table(
        "records",
        sa.Column("job_id", sa.String(40), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("record", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
    )
    op.create_table(
        "agents",
        sa.Column("agent_id", sa.String(200), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("queues", JSON, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("plugins", JSON, nullable=False),
        sa.Column("last_heartbeat", TIMESTAMP),
        sa.Column("registered_at", TIMESTAMP, nullable=False),
    )

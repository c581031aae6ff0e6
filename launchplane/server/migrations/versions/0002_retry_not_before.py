"""Retries with backoff: a re-queued job is not claimed before ``jobs.not_before``.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # A plain ADD COLUMN of a nullable column: no table copy on SQLite, no rewrite on PostgreSQL.
    op.add_column("jobs", sa.Column("not_before", sa.DateTime(timezone=True)))
    op.create_index("ix_jobs_not_before", "jobs", ["not_before"])

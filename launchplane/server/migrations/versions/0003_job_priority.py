"""Priorities: claims take ``jobs.priority`` first (0 critical .. 3 low), then the oldest.

Revision ID: 0003
Revises: 0002

The column is a rank, not the name, so that one index (``ix_jobs_claim``, now
``queue, state, priority, created_at, id``) serves the claim query's filter
and its whole ORDER BY on both backends. Existing rows take medium (2), the
default, except those whose resolved job already names a priority (a job
file could set ``priority`` before the server ordered by it): they take its
rank, so a queue waiting at upgrade time is claimed in the order it would
have been had it been submitted after it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

_RANK_OF = """
    CASE {name}
        WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 WHEN 'low' THEN 3
        ELSE 2
    END
"""
"""The rank of a priority name (as ``launchplane.core.spec.PRIORITIES`` orders them then)."""


def upgrade() -> None:
    # A constant default: no table copy on SQLite, no rewrite on PostgreSQL (11+).
    op.add_column(
        "jobs", sa.Column("priority", sa.Integer, nullable=False, server_default=sa.text("2"))
    )
    # ``resolved`` is JSON text written with compact separators; the LIKE only skips the rows
    # without a named priority cheaply, the JSON function reads the top-level field itself.
    name = (
        "(resolved::json ->> 'priority')"
        if op.get_bind().dialect.name == "postgresql"
        else "json_extract(resolved, '$.priority')"
    )
    op.execute(
        sa.text(
            f"UPDATE jobs SET priority = {_RANK_OF.format(name=name)} "
            """WHERE resolved LIKE '%"priority":"%'"""
        )
    )
    op.drop_index("ix_jobs_claim", "jobs")
    op.create_index("ix_jobs_claim", "jobs", ["queue", "state", "priority", "created_at", "id"])

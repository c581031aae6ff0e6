"""Tokens: expiry and revocation (``tokens.expires_at``, ``tokens.revoked_at``); agent ids
bound to the agent token that first used them (``agents.token_id``).

Revision ID: 0004
Revises: 0003

Plain ADD COLUMNs of nullable columns (no table copy on SQLite, no rewrite on
PostgreSQL). Existing tokens never expire and are not revoked; existing agent
ids are bound to no token, and the first agent token that uses one after the
upgrade takes it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("tokens", sa.Column("expires_at", sa.DateTime(timezone=True)))
    op.add_column("tokens", sa.Column("revoked_at", sa.DateTime(timezone=True)))
    op.add_column("agents", sa.Column("token_id", sa.Integer))

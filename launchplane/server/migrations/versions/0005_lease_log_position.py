"""Late log lines: each lease numbers its log lines itself (``leases.log_position``).

Revision ID: 0005
Revises: 0004

An agent may now send, under a lease that has ended, the output its run wrote
that the server lacks (``POST /leases/{id}/late-logs``): those lines go to the
log's end, so the job's ``log_count`` no longer says what a lease has stored.
``log_position`` is the seq, in the lease's own numbering (from the job's
``log_count`` at the claim on), of the lease's last line stored; batches of a
lease are deduplicated by it.

A constant default (no table copy on SQLite, no rewrite on PostgreSQL), then
each existing lease takes the seq of the last line stored with its attempt
(attempts are one per lease), or the job's log count if it stored none: what
its agent numbers its next batch from, as long as nothing was stored after
it (always so before this revision, for a live lease).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.add_column(
        "leases",
        sa.Column("log_position", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    )
    op.execute(
        sa.text(
            "UPDATE leases SET log_position = COALESCE("
            "(SELECT MAX(seq) FROM log_lines "
            "WHERE log_lines.job_id = leases.job_id AND log_lines.attempt = leases.attempt), "
            "(SELECT log_count FROM jobs WHERE jobs.id = leases.job_id))"
        )
    )

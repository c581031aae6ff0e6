"""Alembic's entry point: migrate through the connection ``launchplane.server.db`` hands over.

There is no ``alembic.ini`` and no URL here: ``launchplane db upgrade`` and the
server's start-up both run migrations inside their own transaction (which on
PostgreSQL holds an advisory lock, so servers starting together take turns).
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with 'launchplane db upgrade', not the alembic CLI")

context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()

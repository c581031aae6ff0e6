"""The queue server: FastAPI over one SQLAlchemy ``Store`` (SQLite embedded, or PostgreSQL).

Modules: ``app`` (the application, error format, sweeper), ``routes_*`` (the
HTTP API of docs/api.md, by role), ``store/`` (all database access, one
module per table family) and ``tables``, ``lifecycle`` (the rules of a job's
life, without SQL), ``db`` and ``migrations`` (engines per backend, schema
versions), ``auth`` (tokens and roles), ``hub`` and ``listener`` (long-poll
wake-ups, across processes with PostgreSQL LISTEN/NOTIFY), ``validation``
(the config engine at submit time), ``limits`` (body size), ``embedded`` (run
it inside any event loop: ``launchplane server``, ``launchplane run``, tests).
Imported only by those commands, never by the agent or ``launchplane --help``.
"""

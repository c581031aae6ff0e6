"""Alembic migrations of the queue server's schema (see ``launchplane.server.db``), forward only.

Each revision in ``versions/`` is written with plain SQLAlchemy types, never
importing ``tables.py``, so that it keeps describing its own point in
history. A change to ``tables.py`` needs a new revision here;
``tests/store/test_migrations.py`` fails until ``upgrade head`` on an empty
database yields exactly what ``tables.py`` declares, on both backends.
"""

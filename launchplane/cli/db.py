"""``launchplane db upgrade``: bring the queue server's database schema to this version.

A SQLite database is upgraded by the server itself when it starts; a shared
PostgreSQL database only by this command, so that the operator decides when
the schema of a database other servers use changes (see
``launchplane.server.db``). The server stack is imported inside the command.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import click

from launchplane.cli._output import fail

db_option = click.option(
    "--db",
    "db_url",
    envvar="LAUNCHPLANE_DATABASE_URL",
    metavar="URL",
    help="Database: sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB "
    "[default: $LAUNCHPLANE_DATABASE_URL, else SQLite launchplane.db in the data dir].",
)
"""``--db`` of ``launchplane server`` and ``launchplane db upgrade``."""


@click.group("db")
def db() -> None:
    """The queue server's database."""


@db.command("upgrade")
@db_option
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the default SQLite database lives [default: $LAUNCHPLANE_HOME or "
    "~/.local/share/launchplane].",
)
def upgrade(db_url: str | None, data_dir: Path | None) -> None:
    """Upgrade the database schema to this launchplane's (creating it if empty).

    Safe to repeat, and safe while servers of the previous version run on the
    database: they keep working. Start the upgraded servers afterwards.
    """
    from launchplane.core import paths
    from launchplane.server import db as database
    from launchplane.server.settings import ServerSettings

    settings = ServerSettings(data_dir=data_dir or paths.data_dir(), db_url=db_url)
    url = settings.database_url
    if database.backend_of(url) == "sqlite" and not db_url:
        paths.private_dir(settings.data_dir)
    try:
        before = anyio.run(database.upgrade, url)
    except database.DatabaseError as exc:
        fail(str(exc))
    where, head = database.display_url(url), before.head
    if before.current == head:
        click.echo(f"database {where} is up to date (revision {head})")
        return
    if before.legacy:
        was = "a schema from before migrations"
    elif before.current is None:
        was = "an empty database"
    else:
        was = f"revision {before.current}"
    click.echo(f"database {where} upgraded from {was} to revision {head}")

"""``launchplane server``: run the queue server (``token.py`` holds ``launchplane token``).

The server stack (FastAPI, SQLAlchemy, uvicorn) is imported inside the
command, so ``launchplane --help`` and the agent never load it.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import click

from launchplane.cli._output import fail
from launchplane.cli.db import db_option

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@click.command("server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port (0: any free).")
@db_option
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Database and admin token [default: $LAUNCHPLANE_HOME or ~/.local/share/launchplane].",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.05),
    metavar="SECONDS",
    help="PostgreSQL: how often a waiting claim re-checks the database in case a "
    "notification was lost [default: 2].",
)
@click.option(
    "--sweep-interval",
    type=click.FloatRange(min=0.05),
    metavar="SECONDS",
    help="How often expired leases are looked for: a job whose agent died is re-queued "
    "at most this long after its lease expires [default: min(5, shortest lease TTL / 3)].",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="A connection must send a complete request head (request line and headers) "
    "within this long, however slowly its bytes come; else 408 and closed.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="A request must send its whole body within this long after its head (a client "
    "trickling a body is cut off); else 408 and closed.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="A keep-alive connection without a new request for this long is closed.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    metavar="N",
    help="Open client connections at most (past it the longest-idle one is closed, or the "
    "new one gets 503 when none is idle) [default: the descriptor limit minus headroom].",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
@click.option(
    "--plugins",
    "plugin_specs",
    multiple=True,
    metavar="MOD[,MOD...]",
    help="Also load these plugin modules for the submit-time checks (a runner's "
    "resource_args model, a builder's options); 'no:NAME' blocks a plugin. The server "
    "never launches anything. Adds to LAUNCHPLANE_PLUGINS.",
)
def server(
    host: str,
    port: int,
    db_url: str | None,
    data_dir: Path | None,
    poll_interval: float | None,
    sweep_interval: float | None,
    header_timeout: float,
    body_timeout: float,
    idle_timeout: float,
    max_connections: int | None,
    log_level: str,
    plugin_specs: tuple[str, ...],
) -> None:
    """Run the queue server in the foreground (Ctrl-C stops it).

    On first start it writes an admin token to <data dir>/admin-token (mode
    0600), which the CLI on this machine uses when no --token is given.

    \b
    SQLite (the default) serves one server process and is upgraded at start.
    Several servers can share one PostgreSQL database (--db postgresql://...);
    run 'launchplane db upgrade --db URL' after installing a new version.
    """
    from launchplane.core import paths
    from launchplane.core.loader import split_list
    from launchplane.server.db import DatabaseError
    from launchplane.server.embedded import EmbeddedServer
    from launchplane.server.settings import ServerSettings

    settings = ServerSettings(
        data_dir=data_dir or paths.data_dir(),
        db_url=db_url,
        poll_interval=poll_interval,
        sweep_interval=sweep_interval,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        idle_timeout=idle_timeout,
        max_connections=max_connections,
        plugins=tuple(split_list(plugin_specs)),
    )

    async def main() -> None:
        async with EmbeddedServer(
            settings=settings,
            host=host,
            port=port,
            log_level=log_level,
            handle_signals=True,
        ) as running:
            click.echo(f"launchplane server listening on {running.url}")
            click.echo(f"API docs: {running.url}/api/v1/docs")
            click.echo(f"admin token: {running.admin_token_path}")
            await running.wait_closed()

    from sqlalchemy.exc import SQLAlchemyError

    from launchplane.server.auth import UnsafeTokenFile

    try:
        anyio.run(main)
    except (DatabaseError, UnsafeTokenFile) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    except SQLAlchemyError as exc:
        # The driver's own message: SQLAlchemy's adds a link and the failing statement.
        fail(f"cannot open the database: {getattr(exc, 'orig', None) or exc}")

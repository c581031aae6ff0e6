"""What the client commands share: server options, tables, JSON, progress, and error exits.

Exit codes of every command that talks to the server: 0 success, 1 an error
(server unreachable, refused, not found), 2 invalid input (every problem is
printed with its path). Commands that wait for a job exit with the job's
outcome instead (see :func:`job_exit_code`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import anyio
import click

from launchplane.core.client import (
    ApiError,
    ClientError,
    LaunchplaneClient,
    Unauthorized,
    ValidationFailed,
)
from launchplane.core.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

EXIT_ERROR = 1
EXIT_INVALID = 2
EXIT_CANCELLED = 130
"""A cancelled job, like a shell's Ctrl-C (128 + SIGINT)."""


def server_options(command: F) -> F:
    """``--server`` and ``--token`` (parameters ``server``, ``token``) for a client command."""
    command = click.option(
        "--token",
        envvar="LAUNCHPLANE_TOKEN",
        help="API token [default: $LAUNCHPLANE_TOKEN, else the local server's admin token].",
    )(command)
    return click.option(
        "--server",
        envvar="LAUNCHPLANE_SERVER",
        metavar="URL",
        help="Queue server [default: $LAUNCHPLANE_SERVER or http://127.0.0.1:8765].",
    )(command)


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(command)


def call(
    server: str | None,
    token: str | None,
    action: Callable[[LaunchplaneClient], Awaitable[T]],
) -> T:
    """Run ``action`` with a client, turning client and config errors into messages and exits."""

    async def main() -> T:
        async with LaunchplaneClient(server, token) as client:
            return await action(client)

    try:
        return anyio.run(main)
    except (ValidationFailed, ConfigError) as exc:
        fail_invalid(exc)
    except Unauthorized as exc:
        hint = "" if exc.status == 403 else " (pass --token or set LAUNCHPLANE_TOKEN)"
        fail(f"{exc.message}{hint}")
    except ApiError as exc:
        fail(exc.message)
    except ClientError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise SystemExit(EXIT_CANCELLED) from None


def fail(message: str, code: int = EXIT_ERROR) -> Any:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def fail_invalid(exc: ValidationFailed | ConfigError) -> Any:
    """Print every problem with its path and exit 2."""
    if isinstance(exc, ConfigError):
        head = exc.source or "invalid input"
        # FieldError's own rendering keeps the line of a problem found while parsing a file.
        lines = [str(error) for error in exc.errors]
    else:
        head = exc.message.split(":", 1)[0] if exc.errors else exc.message
        lines = [f"{e.get('path') or '<root>'}: {e.get('message', '')}" for e in exc.errors]
    click.echo(f"error: {head}", err=True)
    for line in lines:
        click.echo(f"  {line}", err=True)
    raise SystemExit(EXIT_INVALID)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], indent: str = "") -> None:
    """Left-aligned columns; the last column is never padded (reasons can be long)."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(value)) for width, value in zip(widths, row, strict=True)]
    for row in [list(headers), *cells]:
        padded = [value.ljust(width) for value, width in zip(row[:-1], widths, strict=False)]
        click.echo(indent + "  ".join([*padded, row[-1]]).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return " ".join(str(value).split())


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """``42s``, ``5m``, ``3h``, ``2d`` since an ISO 8601 timestamp."""
    if not timestamp:
        return "-"
    then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def job_exit_code(job: dict[str, Any]) -> int:
    """0 succeeded; the job's own exit code (or 1) when it failed; 130 when cancelled."""
    state = job.get("state")
    if state == "succeeded":
        return 0
    if state == "cancelled":
        return EXIT_CANCELLED
    code = job.get("exit_code")
    return code if isinstance(code, int) and 0 < code < 256 else EXIT_ERROR


def describe_outcome(job: dict[str, Any]) -> str:
    text = f"job {job['id']} {job['state']}"
    if job.get("exit_code") is not None:
        text += f" (exit code {job['exit_code']})"
    if job.get("reason") and job["state"] != "succeeded":
        text += f": {job['reason']}"
    return text


class Progress:
    """A one-line status on stderr, redrawn in place; silent unless stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.clear()

    def update(self, text: str) -> None:
        if not self.enabled:
            return
        sys.stderr.write("\r" + text.ljust(self._width))
        sys.stderr.flush()
        self._width = max(self._width, len(text))

    def clear(self) -> None:
        if self.enabled and self._width:
            sys.stderr.write("\r" + " " * self._width + "\r")
            sys.stderr.flush()
            self._width = 0

"""``launchplane token``: create, list and revoke API tokens (needs an admin token).

A token is printed once, at creation: the server stores only its hash, so
``token list`` shows ids, names, roles and dates, never a value. Revoking
takes effect on the next request, on every server sharing the database.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import click

from launchplane.cli._output import call, fail, json_option, print_json, print_table, server_options

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


class Duration(click.ParamType):
    """``30d``, ``12h``, ``90m``, ``45s``: a positive whole number and one unit, in seconds."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = _DURATION.match(str(value))
        if match is None or int(match.group(1)) == 0:
            self.fail(
                f"{value!r} is not a duration: use a positive number and a unit, "
                "s, m, h or d (30d, 12h, 90m, 45s)",
                param,
                ctx,
            )
        return int(match.group(1)) * DURATION_UNITS[match.group(2)]


@click.group("token")
def token() -> None:
    """Create, list and revoke API tokens (admin, submitter, agent)."""


@token.command("create")
@click.option(
    "--role",
    type=click.Choice(["admin", "submitter", "agent"]),
    required=True,
    help="What it may do.",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    help="Agent tokens: a queue it may serve (repeat; '*': all).",
)
@click.option("--name", help="A label for the token (shown in lists and errors, never secret).")
@click.option(
    "--expires",
    type=Duration(),
    help="Refused after this long: 30d, 12h, 90m, 45s [default: never].",
)
@server_options
@json_option
def create_token(
    role: str,
    queues: Sequence[str],
    name: str | None,
    expires: int | None,
    server: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Create a token; it is printed once and only its hash is stored.

    An agent token is bound to the agent id that first uses it; agents that
    share one token are one principal (docs/security.md).
    """
    created = call(server, token, lambda client: client.create_token(role, queues, name, expires))
    if as_json:
        print_json(created)
        return
    click.echo(created["token"])
    scope = f" for queues {', '.join(created['queues'])}" if created["queues"] else ""
    until = f", expires {created['expires_at']}" if created.get("expires_at") else ""
    click.echo(
        f"created {role} token {created['id']}{scope}{until}; it is shown only this once",
        err=True,
    )


@token.command("list")
@server_options
@json_option
def list_tokens(server: str | None, token: str | None, as_json: bool) -> None:
    """List tokens: id, role, name, queues, state and dates (never a token's value)."""
    tokens = call(server, token, lambda client: client.list_tokens())
    if as_json:
        print_json({"tokens": tokens})
        return
    rows = [
        (
            found["id"],
            found["role"],
            found["state"],
            found["name"],
            ",".join(found["queues"]) or None,
            _day(found["created_at"]),
            _day(found["revoked_at"] or found["expires_at"]),
        )
        for found in tokens
    ]
    print_table(("ID", "ROLE", "STATE", "NAME", "QUEUES", "CREATED", "ENDS"), rows)


@token.command("revoke")
@click.argument("which", metavar="ID|NAME")
@server_options
@json_option
def revoke_token(which: str, server: str | None, token: str | None, as_json: bool) -> None:
    """Revoke a token by id, or by name when one unrevoked token has it.

    It is refused from the next request on, by every server on the database.
    """

    async def revoke(client: Any) -> dict[str, Any]:
        return await client.revoke_token(_token_id(which, await client.list_tokens()))

    revoked = call(server, token, revoke)
    if as_json:
        print_json(revoked)
        return
    label = f" ({revoked['name']})" if revoked["name"] else ""
    click.echo(f"revoked {revoked['role']} token {revoked['id']}{label} at {revoked['revoked_at']}")


def _token_id(which: str, tokens: list[dict[str, Any]]) -> int:
    """The id ``which`` names: a number is an id; a name must match one unrevoked token."""
    if which.isdigit():
        return int(which)
    named = [found for found in tokens if found["name"] == which and not found["revoked_at"]]
    if not named:
        fail(f"no unrevoked token is named {which!r} (see: launchplane token list)")
    if len(named) > 1:
        ids = ", ".join(str(found["id"]) for found in named)
        fail(f"{len(named)} tokens are named {which!r} (ids {ids}): revoke by id")
    return int(named[0]["id"])


def _day(timestamp: str | None) -> str | None:
    """The ``YYYY-MM-DD HH:MM`` of an ISO timestamp (UTC, as the server sends it)."""
    return None if timestamp is None else timestamp.replace("T", " ")[:16]

"""``launchplane queue``: create, update, show and list queues (admin token for changes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from launchplane.cli._output import (
    age,
    call,
    fail_invalid,
    json_option,
    print_json,
    print_table,
    server_options,
)
from launchplane.core.errors import ConfigError

CONFIG_FILE = click.option(
    "-f",
    "--file",
    "config_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The queue config (YAML or JSON).",
)


@click.group("queue")
def queue() -> None:
    """Create, update, show and list queues."""


@queue.command("create")
@click.argument("name")
@CONFIG_FILE
@server_options
@json_option
def create(
    name: str, config_file: Path, server: str | None, token: str | None, as_json: bool
) -> None:
    """Create queue NAME from a config file (its placeholders are checked now)."""
    config = _load(config_file)
    created = call(server, token, lambda client: client.create_queue(name, config))
    _report(created, "created", as_json)


@queue.command("update")
@click.argument("name")
@CONFIG_FILE
@server_options
@json_option
def update(
    name: str, config_file: Path, server: str | None, token: str | None, as_json: bool
) -> None:
    """Replace the config of queue NAME; jobs already queued keep the version they resolved."""
    config = _load(config_file)
    updated = call(server, token, lambda client: client.update_queue(name, config))
    _report(updated, "updated", as_json)


@queue.command("show")
@click.argument("name")
@server_options
@json_option
def show(name: str, server: str | None, token: str | None, as_json: bool) -> None:
    """Show queue NAME: version, warnings and config."""
    found = call(server, token, lambda client: client.get_queue(name))
    if as_json:
        print_json(found)
        return
    from launchplane.core.yamlsafe import dump_document

    click.echo(f"queue    {found['name']}")
    click.echo(f"version  {found['version']} (updated {age(found['updated_at'])} ago)")
    for warning in found["warnings"]:
        click.echo(f"warning  {warning}")
    click.echo("config:")
    click.echo("  " + dump_document(found["config"]).rstrip().replace("\n", "\n  "))


@queue.command("list")
@server_options
@json_option
def list_(server: str | None, token: str | None, as_json: bool) -> None:
    """List queues."""
    queues = call(server, token, lambda client: client.list_queues())
    if as_json:
        print_json({"queues": queues})
        return
    rows = [
        (
            q["name"],
            q["version"],
            q["config"].get("resource", "local-process"),
            age(q["updated_at"]),
        )
        for q in queues
    ]
    print_table(("NAME", "VERSION", "RUNNER", "UPDATED"), rows)


def _load(path: Path) -> dict[str, Any]:
    from launchplane.core.yamlsafe import load_document

    try:
        document = load_document(path.read_text(), source=str(path))
    except ConfigError as exc:
        fail_invalid(exc)
    if not isinstance(document, dict):
        fail_invalid(ConfigError("a queue config must be a mapping of keys", source=str(path)))
    return document


def _report(found: dict[str, Any], verb: str, as_json: bool) -> None:
    if as_json:
        print_json(found)
        return
    click.echo(f"{verb} queue {found['name']} (version {found['version']})")
    for warning in found["warnings"]:
        click.echo(f"warning: {warning}", err=True)

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
from launchplane.core.errors import ConfigError, FieldError

CONFIG_FILE = click.option(
    "-f",
    "--file",
    "config_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The queue config (YAML or JSON); with --type, a W&B queue body.",
)
WANDB_TYPE = click.option(
    "--type",
    "resource_type",
    metavar="TYPE",
    help="The file is a W&B queue body for this W&B runner type: local-container, "
    "local-process, kubernetes, sagemaker or gcp-vertex (also W&B's stored form "
    '{"resource_args": {TYPE: body}}).',
)
TEMPLATE_VARIABLES = click.option(
    "--template-variables",
    "template_variables",
    metavar="FILE|JSON",
    help="Template variable declarations, W&B's ({name: {schema: {type: integer, minimum: 1}}} "
    "or [{name, schema}]) or launchplane's: a .json/.yaml file or inline JSON.",
)


@click.group("queue")
def queue() -> None:
    """Create, update, show and list queues."""


@queue.command("create")
@click.argument("name")
@CONFIG_FILE
@WANDB_TYPE
@TEMPLATE_VARIABLES
@server_options
@json_option
def create(
    name: str,
    config_file: Path,
    resource_type: str | None,
    template_variables: str | None,
    server: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Create queue NAME from a config file (its placeholders are checked now).

    With --type, the file is a queue body as W&B holds it (a Kubernetes
    manifest, a SageMaker request, docker run flags, ...), translated to a
    launchplane queue config.
    """
    config = _queue_config(config_file, resource_type, template_variables)
    created = call(server, token, lambda client: client.create_queue(name, config))
    _report(created, "created", as_json)


@queue.command("update")
@click.argument("name")
@CONFIG_FILE
@WANDB_TYPE
@TEMPLATE_VARIABLES
@server_options
@json_option
def update(
    name: str,
    config_file: Path,
    resource_type: str | None,
    template_variables: str | None,
    server: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Replace the config of queue NAME; jobs already queued keep the version they resolved.

    --type and --template-variables as for ``queue create``.
    """
    config = _queue_config(config_file, resource_type, template_variables)
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
    from launchplane.core.config.wandb_queue import runner_name

    queues = call(server, token, lambda client: client.list_queues())
    if as_json:
        print_json({"queues": queues})
        return
    rows = [
        (
            q["name"],
            q["version"],
            # A config may name its runner the W&B way (resource: local-container).
            runner_name(q["config"].get("resource", "local-process")),
            age(q["updated_at"]),
        )
        for q in queues
    ]
    print_table(("NAME", "VERSION", "RUNNER", "UPDATED"), rows)


def _queue_config(
    path: Path, resource_type: str | None, template_variables: str | None
) -> dict[str, Any]:
    """The launchplane queue config a file (and --type, --template-variables) stands for."""
    from launchplane.core.config import wandb_queue

    document = _load(path, wandb_body=resource_type is not None)
    declared = _declarations(template_variables) if template_variables is not None else None
    if resource_type is not None:
        try:
            return wandb_queue.queue_config_from_wandb(resource_type, document, declared)
        except ConfigError as exc:
            fail_invalid(ConfigError(exc.errors, source=f"{path} (a W&B {resource_type} body)"))
    wandb_type = wandb_queue.stored_form_runner(document)
    if wandb_type is not None:
        fail_invalid(
            ConfigError(
                [
                    FieldError(
                        f"resource_args.{wandb_type}",
                        f"the queue names no runner (resource), so it would run local-process; "
                        f"this looks like W&B's stored form of a {wandb_type} queue: pass "
                        f"--type {wandb_type}, or add resource: "
                        f"{wandb_queue.runner_name(wandb_type)}",
                    )
                ],
                source=str(path),
            )
        )
    if declared is None:
        return document
    current = document.get("template_variables") or {}
    if not isinstance(current, dict) or not isinstance(declared, dict | list):
        fail_invalid(
            ConfigError("--template-variables and the file's template_variables must be mappings")
        )
    names = [entry.get("name") for entry in declared] if isinstance(declared, list) else declared
    twice = sorted(set(current) & {str(name) for name in names})
    if twice:
        fail_invalid(
            ConfigError(
                [
                    FieldError(f"template_variables.{name}", "also in --template-variables")
                    for name in twice
                ],
                source=str(path),
            )
        )
    errors: list[FieldError] = []
    translated = wandb_queue.template_variables_from_wandb(declared, errors)
    if errors:
        fail_invalid(ConfigError(errors, source="--template-variables"))
    return {**document, "template_variables": {**current, **translated}}


def _declarations(value: str) -> Any:
    """``--template-variables``: inline JSON, or the path of a JSON or YAML file."""
    from launchplane.core.yamlsafe import load_document

    candidate = Path(value)
    try:
        if not value.lstrip().startswith(("{", "[")) and candidate.is_file():
            return load_document(candidate.read_text(), source=str(candidate))
        return load_document(value, source="--template-variables", syntax="json")
    except ConfigError as exc:
        fail_invalid(exc)


def _load(path: Path, *, wandb_body: bool = False) -> dict[str, Any]:
    """The file's mapping; a W&B body (``--type``) is read as launchplane reads YAML, with a
    warning for each value W&B's YAML 1.1 reads otherwise (docs/configuration.md, "Files")."""
    from launchplane.core.yamlsafe import load_document, reading_differences

    try:
        text = path.read_text()
        document = load_document(text, source=str(path))
        if wandb_body and not path.name.lower().endswith(".json"):
            for difference in reading_differences(text, source=str(path)):
                click.echo(f"warning: {path}: {difference.message('launchplane')}", err=True)
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

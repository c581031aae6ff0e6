"""``launchplane plugins``: what is installed, what it registered, and what failed.

``--plugins`` / ``--strict-plugins`` are
:func:`launchplane.cli._options.plugin_options`, shared with ``plan`` and ``run``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from launchplane.cli._options import plugin_options
from launchplane.core.plugins import PluginInfo, PluginRegistry, get_plugin_manager
from launchplane.core.registry import KINDS

F = TypeVar("F", bound=Callable[..., Any])

COLUMNS = ("NAME", "VERSION", "SOURCE", "REGISTERED", "ERROR")


@click.command("plugins")
@plugin_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def plugins(plugin_specs: Sequence[str], strict_plugins: bool, as_json: bool) -> None:
    """List installed plugins, their version and source, what they registered, load errors.

    Exits 1 under --strict-plugins when a plugin failed to load.
    """
    registry = get_plugin_manager(plugin_specs, log_failures=False)
    if as_json:
        click.echo(json.dumps(report_json(registry), indent=2))
    else:
        click.echo(render_table(registry.report()))
        click.echo(render_summary(registry))
    if strict_plugins and registry.load_errors:
        failed = ", ".join(sorted(registry.load_errors))
        click.echo(f"error: plugins failed to load (--strict-plugins): {failed}", err=True)
        raise click.exceptions.Exit(1)


def report_json(registry: PluginRegistry) -> dict[str, Any]:
    """A stable shape for scripts: plugins in load order, then each kind's names."""
    return {
        "plugins": [info.as_dict() for info in registry.report()],
        **{kind.plural: sorted(registry.classes(kind)) for kind in KINDS},
        "load_errors": dict(registry.load_errors),
    }


def render_table(infos: Sequence[PluginInfo]) -> str:
    rows = [COLUMNS, *(_row(info) for info in infos)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    return "\n".join(
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]
        ).rstrip()
        for row in rows
    )


def _row(info: PluginInfo) -> tuple[str, str, str, str, str]:
    registered = "(blocked)" if info.blocked else ", ".join(info.registered) or "-"
    return (info.name, info.version, info.source, registered, info.error or "")


def render_summary(registry: PluginRegistry) -> str:
    lines = [
        f"{kind.heading}: {', '.join(sorted(registry.classes(kind))) or 'none'}" for kind in KINDS
    ]
    return "\n" + "\n".join(lines)

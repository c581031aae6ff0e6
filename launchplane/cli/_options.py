"""Click options shared by several commands: one grammar, one help text.

``--set``, ``--resource-args`` and ``--var`` are parsed together by
``config.command_line_layers``; declaring them once keeps ``plan`` and
``submit`` accepting exactly the same flags. ``--plugins`` /
``--strict-plugins`` (:func:`plugin_options`) are the same for ``plugins``,
``plan`` and ``run`` (``launch-agent`` declares its own, which a config file
can also set). ``LAUNCHPLANE_PLUGINS`` and
``LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD`` are read by
:func:`launchplane.core.plugins.get_plugin_manager` itself, not by click, so
they apply to Python callers too. Only click is imported here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])


def override_options(function: F) -> F:
    """Add --set (``sets``), --resource-args (``resource_args``), --var (``variables``)."""
    options = (
        click.option(
            "--set",
            "sets",
            multiple=True,
            metavar="PATH=VALUE",
            help="Override one value, typed like YAML (repeatable), e.g. --set env.LR=3e-4.",
        ),
        click.option(
            "--resource-args",
            "--override-resource-args",
            "resource_args",
            metavar="JSON",
            help="W&B-style resource_args override: a JSON object keyed by runner, "
            "or a .json file.",
        ),
        click.option(
            "--var",
            "variables",
            multiple=True,
            metavar="NAME=VALUE",
            help="Value of a queue template variable (repeatable), e.g. --var volume_size=200.",
        ),
    )
    for option in reversed(options):
        function = option(function)
    return function


def plugin_options(command: F) -> F:
    """Add ``--plugins`` (parameter ``plugin_specs``) and ``--strict-plugins`` to a command."""
    command = click.option(
        "--strict-plugins",
        is_flag=True,
        help="Fail when any plugin fails to load, instead of skipping it.",
    )(command)
    return click.option(
        "--plugins",
        "plugin_specs",
        multiple=True,
        metavar="MOD[,MOD...]",
        help="Also load these plugin modules; 'no:NAME' blocks a plugin. "
        "Adds to LAUNCHPLANE_PLUGINS.",
    )(command)

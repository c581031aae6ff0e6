"""Click options shared by commands that read a job file: one grammar, one help text.

``--set``, ``--resource-args`` and ``--var`` are parsed together by
``config.command_line_layers``; declaring them once keeps ``plan`` and
``submit`` accepting exactly the same flags. Only click is imported here.
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

"""``--strict-pins`` and the unpinned-input warnings of ``plan``, ``submit``, ``run`` and
``reproduce`` (what counts as unpinned: :mod:`launchplane.core.pins`).

The server lists what it can see in the resolved job (the answer's ``warnings``);
a local ``workdir``'s ``requirements.txt`` only this machine can read, so it is
checked here, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from launchplane.core.pins import Unpinned

F = TypeVar("F")


def strict_pins_option(command: F) -> F:
    """``--strict-pins`` (parameter ``strict_pins``)."""
    return click.option(
        "--strict-pins",
        is_flag=True,
        help="Unpinned inputs (a branch without a commit, an image by tag, an artifact by "
        "alias, an unpinned requirement) are errors, not warnings: exit status 2, each listed.",
    )(command)  # type: ignore[return-value]


def local_code_root(layers: Sequence[Mapping[str, Any]]) -> Path | None:
    """The local code directory the layers name (the last ``workdir`` wins), if it is here.

    Only code that is not checked out from git: a relative ``workdir`` of a git job is a
    folder of a checkout this machine does not have.
    """
    if any(layer.get("git") for layer in layers):
        return None
    workdirs = [layer["workdir"] for layer in layers if isinstance(layer.get("workdir"), str)]
    if not workdirs:
        return None
    root = Path(workdirs[-1]).expanduser()
    return root if root.is_absolute() and root.is_dir() else None


def check_local_code(layers: Sequence[Mapping[str, Any]], strict: bool) -> None:
    """Warn about (or, ``strict``, refuse with exit 2) the local code's unpinned requirements."""
    from launchplane.core.pins import refuse_unpinned, requirements_file_unpinned

    root = local_code_root(layers)
    found = requirements_file_unpinned(root) if root is not None else []
    if strict:
        from launchplane.cli._output import fail_invalid
        from launchplane.core.errors import ConfigError

        try:
            refuse_unpinned(found, "--strict-pins", source=f"unpinned inputs in {root}")
        except ConfigError as exc:
            fail_invalid(exc)
    echo_warnings(found)


def echo_warnings(warnings: Iterable[Unpinned | str]) -> None:
    """``warning: <path>: <message>`` on stderr, one a line."""
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)

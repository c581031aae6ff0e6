"""The override grammar of the command line: ``--set``, ``--resource-args``, ``--var``.

Each ``--set`` and the ``--resource-args`` object is one :class:`Layer`,
applied after the job config in the order given; a Layer remembers the flag
it came from, so an error it causes says ``(from --set docker.image=x)``.
Values are YAML, parsed by the safe loader on first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from launchplane.core.config.keypath import scan_path
from launchplane.core.errors import ConfigError, FieldError, kind_of

_SET_EXAMPLE = 'e.g. --set resource_args.kubernetes.requests."nvidia.com/gpu"=4'


class Layer(dict[str, Any]):
    """An override layer that remembers where it came from, for error messages.

    A plain ``dict`` to everyone else; :func:`resolve_job` says ``(from --set
    docker.image=x)`` instead of ``(in override 2)``.
    """

    def __init__(self, data: Mapping[str, Any], origin: str) -> None:
        super().__init__(data)
        self.origin = origin


def parse_set(expr: str) -> Layer:
    """``--set PATH=VALUE`` as a one-key-path layer (a nested dict).

    PATH is keys separated by dots; a double-quoted segment may contain dots,
    ``=`` and spaces (``\\"`` and ``\\\\`` escape a quote and a backslash).
    VALUE is YAML: ``4`` is an int, ``"4"`` a string, ``[a, b]`` a list,
    ``null`` None; an empty VALUE is the empty string. Segments are always
    mapping keys (lists are replaced whole: ``--set 'args=[--lr, "3e-4"]'``).
    """
    segments, end = scan_path(expr, "--set", allow_value=True)
    if end >= len(expr):
        raise ConfigError(
            [FieldError("--set", f"{expr!r} has no '='; write PATH=VALUE, {_SET_EXAMPLE}")]
        )
    value = _parse_value(expr, expr[end + 1 :])
    for segment in reversed(segments[1:]):
        value = {segment: value}
    return Layer({segments[0]: value}, f"--set {expr}")


def _parse_value(expr: str, text: str) -> Any:
    if not text.strip():
        return ""
    from launchplane.core.yamlsafe import load_document

    try:
        return load_document(text, source="--set")
    except ConfigError as exc:
        reason = "; ".join(error.message for error in exc.errors)
        raise ConfigError(
            [
                FieldError(
                    "--set",
                    f"{expr!r}: the value is not valid YAML ({reason}); "
                    "quote it to pass text, e.g. KEY='\"@value\"'",
                )
            ]
        ) from None


def parse_var(expr: str) -> dict[str, str]:
    """``--var NAME=VALUE`` as ``{NAME: VALUE}``; the queue's variable type coerces VALUE later."""
    name, sep, value = expr.partition("=")
    if not sep or not name.strip():
        raise ConfigError(
            [FieldError("--var", f"{expr!r}: write NAME=VALUE, e.g. --var volume_size=200")]
        )
    return {name.strip(): value}


def parse_resource_args(json_text: str) -> Layer:
    """W&B's ``--resource-args JSON`` as a layer: ``{"resource_args": {...}}``."""
    from launchplane.core.yamlsafe import load_document

    try:
        data = load_document(json_text, source="--resource-args", syntax="json")
    except ConfigError as exc:
        raise ConfigError(
            [FieldError("--resource-args", e.message, e.line) for e in exc.errors]
        ) from None
    if not isinstance(data, dict):
        example = '{"kubernetes": {"requests": {"memory": "64Gi"}}}'
        message = f"must be a JSON object keyed by runner, e.g. {example}, not "
        raise ConfigError([FieldError("--resource-args", message + kind_of(data))])
    return Layer({"resource_args": data}, "--resource-args")


def command_line_layers(
    sets: Sequence[str] = (), variables: Sequence[str] = ()
) -> tuple[list[Layer], dict[str, str]]:
    """Parse every ``--set`` and ``--var`` of a command at once.

    ``plan``, ``submit`` and ``run`` share this so they accept the same
    grammar, and a user sees every malformed flag in one error, not one per run.
    (``-R/--resource-args`` and ``-c`` are read as W&B reads them, by
    :func:`launchplane.core.launch_args.read_launch_document`.)
    """
    errors: list[FieldError] = []
    overrides: list[Layer] = []
    values: dict[str, str] = {}
    for expr in sets:
        try:
            overrides.append(parse_set(expr))
        except ConfigError as exc:
            errors += exc.errors
    for expr in variables:
        try:
            values.update(parse_var(expr))
        except ConfigError as exc:
            errors += exc.errors
    if errors:
        raise ConfigError(errors)
    return overrides, values

"""Queue config templates: ``{{var}}`` placeholders, their typed values, substitution.

An admin writes ``VolumeSizeInGB: "{{volume_size}}"`` in a queue config and
types the variable under ``template_variables:`` (integer, min 50, max 500,
default 100); a submitter picks a value (``--var volume_size=200``) and gets
an error at submit time if it is out of bounds. Substitution happens once,
when a job is resolved. A whole-string placeholder takes the variable's type
(``200``, not ``"200"``); inside a longer string it is interpolated as text.

Submitted text is data: values are never re-scanned, so a template value
that contains ``{{x}}`` stays literal, and in a field the agent expands at
launch (``env``, ``command``, ``args``, ``entry_point``, ``resource_args``) a
value's ``$`` is escaped (``$$``), so no value - alone or next to the queue's
own text - becomes a ``${NAME}`` of the agent's environment. Launch-time
macros (``${run_id}``) are another mechanism, in
:mod:`launchplane.core.config.macros`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from launchplane.core.config.keypath import PathKey, show_path
from launchplane.core.config.macros import EXPANDED_FIELDS, agent_env_references, literal_text
from launchplane.core.errors import ConfigError, FieldError, scalar_text, show_value, suggest
from launchplane.core.spec import QUEUE_ONLY_KEYS, Scalar, TemplateVariable

_NAME = r"[A-Za-z0-9_-]+"
PLACEHOLDER_RE = re.compile(r"\{\{\s*(" + _NAME + r")\s*\}\}")
_BRACES_RE = re.compile(r"\{\{(.*?)\}\}")
_VARIABLE_NAME_RE = re.compile(_NAME)
_INTEGER_TEXT_RE = re.compile(r"[-+]?[0-9]+")


# --- placeholders -----------------------------------------------------------------------


_WORD_FIELDS = ("command", "entry_point")
"""Fields a string of which is split into argv words like a shell would (``launch.job_argv``)."""


def split_words(data: dict[str, Any]) -> None:
    """Split a templated ``command``/``entry_point`` string into words *before* substitution.

    ``command: "python train.py --lr {{lr}}"`` is split when the job is
    validated, after the values are in: a value ``0.1 --config /etc/passwd``
    would add words of the submitter's choice. Split first, each placeholder
    sits in one word and its value stays one word, spaces and quotes included.
    A string that does not split (an unbalanced quote) is left for the model's error, and
    a whole-string placeholder (``"{{program}}"``) too: that variable is the whole program.
    """
    import shlex

    for key in _WORD_FIELDS:
        text = data.get(key)
        if isinstance(text, str) and "{{" in text and not PLACEHOLDER_RE.fullmatch(text):
            try:
                data[key] = shlex.split(text)
            except ValueError:
                continue


def find_placeholders(obj: Any) -> dict[PathKey, set[str]]:
    """Every string value that holds ``{{var}}`` placeholders: path -> variable names.

    Keys are not scanned (:func:`check_placeholders`, run when a queue is
    created, refuses placeholders in keys).
    """
    found: dict[PathKey, set[str]] = {}
    for path, text, is_key in _braced(obj):
        names = set() if is_key else set(PLACEHOLDER_RE.findall(text))
        if names:
            found[path] = names
    return found


def _braced(obj: Any, path: PathKey = ()) -> Iterator[tuple[PathKey, str, bool]]:
    """(path, text, is_key) for every string value or mapping key that contains ``{{``."""
    if isinstance(obj, str):
        if "{{" in obj:
            yield path, obj, False
    elif isinstance(obj, dict | Mapping):
        for key, value in obj.items():
            child = (*path, key)
            if isinstance(key, str) and "{{" in key:
                yield child, key, True
            yield from _braced(value, child)
    elif isinstance(obj, list | tuple):
        for index, value in enumerate(obj):
            yield from _braced(value, (*path, index))


def check_placeholders(
    data: Mapping[str, Any],
    declared: Mapping[str, Any],
    errors: list[FieldError],
    warnings: list[str],
) -> dict[PathKey, set[str]]:
    """Check every ``{{...}}`` of a queue config in one walk; return the placeholders.

    Appends to ``errors`` (an undeclared variable, a placeholder in a queue
    setting or a key) and ``warnings`` (``{{...}}`` text that is no placeholder).
    """
    placeholders: dict[PathKey, set[str]] = {}
    for path, text, is_key in _braced(data):
        if is_key:
            errors.append(FieldError(show_path(path), "a mapping key cannot hold a placeholder"))
            continue
        for inner in _BRACES_RE.findall(text):
            if not _VARIABLE_NAME_RE.fullmatch(inner.strip()):
                warnings.append(
                    f"{show_path(path)}: '{{{{{inner}}}}}' is not a placeholder and stays as "
                    "text (variable names use letters, digits, '_' and '-')"
                )
        names = set(PLACEHOLDER_RE.findall(text))
        if not names:
            continue
        placeholders[path] = names
        if path[0] in QUEUE_ONLY_KEYS:
            message = f"'{path[0]}' is a queue setting: it cannot hold placeholders"
            errors.append(FieldError(show_path(path), message))
            continue
        errors += [
            FieldError(show_path(path), _undeclared_message(name, declared))
            for name in sorted(names - set(declared))
        ]
    return placeholders


def _undeclared_message(name: str, declared: Mapping[str, Any]) -> str:
    hint = suggest(name, declared)
    return (
        f"uses template variable '{name}', which is not declared in template_variables{hint}; "
        f"declare it, e.g. template_variables: {{{name}: {{type: string}}}}"
    )


def check_declaration(name: str, variable: TemplateVariable) -> list[FieldError]:
    """The problems of one variable's declaration, each at its own path."""
    base = f"template_variables.{name}"
    errors: list[FieldError] = []
    if not _VARIABLE_NAME_RE.fullmatch(name):
        errors.append(FieldError(base, "variable names use letters, digits, '_' and '-'"))
    numeric = variable.type in ("integer", "float")
    if not numeric and (variable.min is not None or variable.max is not None):
        errors.append(
            FieldError(base, f"min/max apply to integer and float variables, not {variable.type}")
        )
    if variable.min is not None and variable.max is not None and variable.min > variable.max:
        errors.append(
            FieldError(f"{base}.max", f"max {variable.max:g} is below min {variable.min:g}")
        )
    if variable.options is not None and not variable.options:
        errors.append(FieldError(f"{base}.options", "options is empty; remove it or list values"))
    for index, option in enumerate(variable.options or []):
        try:
            value = coerce_value(variable, option)
            _check_bounds(variable, value)
        except ValueError as exc:
            errors.append(FieldError(f"{base}.options.{index}", str(exc)))
    if variable.default is not None:
        try:
            check_value(variable, variable.default)
        except ValueError as exc:
            errors.append(FieldError(f"{base}.default", str(exc)))
    return errors


# --- values -----------------------------------------------------------------------------


def resolve_template_values(
    schema: Mapping[str, TemplateVariable], given: Mapping[str, Any]
) -> dict[str, Scalar]:
    """The typed value of every declared variable: given (coerced) or its default.

    Values from a command line arrive as strings: ``"200"`` becomes ``200``
    for an integer, ``"1e-3"`` a float, ``"true"``/``"false"`` a boolean.
    Every problem - unknown or missing variable, wrong type, out of bounds,
    not an option, a reference to the agent's environment - is reported at
    once, under ``template_variables.<name>``.
    """
    errors: list[FieldError] = []
    for name in given:
        if name not in schema:
            declared = ", ".join(sorted(schema)) or "none"
            errors.append(
                FieldError(
                    f"template_variables.{name}",
                    f"unknown template variable{suggest(name, schema)}; "
                    f"this queue declares: {declared}",
                )
            )
    values: dict[str, Scalar] = {}
    for name, variable in schema.items():
        if name in given and given[name] is not None:
            raw = given[name]
        elif variable.default is not None:
            raw = variable.default
        else:
            errors.append(
                FieldError(
                    f"template_variables.{name}",
                    f"required: the queue gives no default; pass --var {name}=VALUE "
                    f"({describe_variable(variable)})",
                )
            )
            continue
        try:
            values[name] = check_value(variable, raw)
        except ValueError as exc:
            errors.append(FieldError(f"template_variables.{name}", str(exc)))
    if errors:
        raise ConfigError(errors)
    return values


def check_value(variable: TemplateVariable, raw: Any) -> Scalar:
    """``raw`` coerced to the variable's type and checked against every constraint.

    Raises ValueError with a message that names the violated constraint and
    what is allowed.
    """
    value = coerce_value(variable, raw)
    _check_bounds(variable, value)
    if variable.options is not None:
        allowed = [_option(variable, option) for option in variable.options]
        if not any(_same(value, option) for option in allowed):
            shown = ", ".join(scalar_text(option) for option in allowed)
            raise ValueError(f"{show_value(value)} is not one of the allowed options: {shown}")
    if isinstance(value, str):
        for name in agent_env_references(value):
            raise ValueError(
                f"{show_value(value)} refers to the agent's environment (${{{name}}}), which only "
                "a queue config may do; write $$ for a literal dollar sign"
            )
    return value


def coerce_value(variable: TemplateVariable, raw: Any) -> Scalar:
    """``raw`` as the variable's type; ValueError naming the expected type otherwise."""
    coerce = _COERCERS[variable.type]
    value = coerce(raw)
    if value is None:
        raise ValueError(
            f"{show_value(raw)} is not {_TYPE_NAMES[variable.type]} ({describe_variable(variable)})"
        )
    return value


def _coerce_integer(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and _INTEGER_TEXT_RE.fullmatch(raw.strip()):
        return int(raw.strip())
    return None


def _coerce_float(raw: Any) -> int | float | None:
    # "float" is a JSON-style number: a whole number stays an int, so an API
    # field like SageMaker's MaxRuntimeInSeconds still receives an integer.
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if _INTEGER_TEXT_RE.fullmatch(text):
            return int(text)
        try:
            raw = float(text)
        except ValueError:
            return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and math.isfinite(raw):
        return raw
    return None


def _coerce_boolean(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    return None


def _coerce_string(raw: Any) -> str | None:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool | int | float):
        return scalar_text(raw)
    return None


_COERCERS: dict[str, Callable[[Any], Scalar | None]] = {
    "integer": _coerce_integer,
    "float": _coerce_float,
    "boolean": _coerce_boolean,
    "string": _coerce_string,
}


def _same(value: Scalar, option: Scalar) -> bool:
    """Equality that keeps booleans apart from numbers (``True == 1`` in Python)."""
    return isinstance(value, bool) == isinstance(option, bool) and value == option


_TYPE_NAMES = {
    "integer": "an integer",
    "float": "a number",
    "boolean": "true or false",
    "string": "a string",
}


def _option(variable: TemplateVariable, option: Any) -> Scalar:
    try:
        return coerce_value(variable, option)
    except ValueError:
        return option  # reported by check_queue_config; here it simply never matches


def _check_bounds(variable: TemplateVariable, value: Scalar) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    shown, allowed = show_value(value), describe_variable(variable)
    if variable.min is not None and value < variable.min:
        raise ValueError(f"{shown} is below the minimum {variable.min:g} ({allowed})")
    if variable.max is not None and value > variable.max:
        raise ValueError(f"{shown} is above the maximum {variable.max:g} ({allowed})")


def describe_variable(variable: TemplateVariable) -> str:
    """``an integer from 50 to 500`` / ``a string, one of: a, b`` - for error messages."""
    text = _TYPE_NAMES[variable.type]
    low, high = variable.min, variable.max
    if low is not None and high is not None:
        text += f" from {low:g} to {high:g}"
    elif low is not None:
        text += f" >= {low:g}"
    elif high is not None:
        text += f" <= {high:g}"
    if variable.options:
        text += ", one of: " + ", ".join(scalar_text(option) for option in variable.options)
    return text


# --- substitution -----------------------------------------------------------------------


def substitute(obj: Any, values: Mapping[str, Scalar]) -> Any:
    """A copy of ``obj`` with every ``{{var}}`` replaced by its value.

    ``"{{volume_size}}"`` becomes the typed value (``100``); a placeholder in
    a longer string becomes text (``"ml-{{size}}"`` -> ``"ml-100"``). Values
    are inserted once and never re-scanned. ``obj`` is a config (top-level
    keys): under a field the agent expands at launch (:data:`EXPANDED_FIELDS`)
    a string value's ``$`` is doubled (macros such as ``${run_id}`` kept), and
    a result that names an agent environment variable the queue's text did
    not name (``"${{{var}}}"``) is a ConfigError.
    """
    return _substitute(obj, values, ())


def _substitute(obj: Any, values: Mapping[str, Scalar], path: PathKey) -> Any:
    if isinstance(obj, str):
        if "{{" not in obj:
            return obj
        expanded = bool(path) and path[0] in EXPANDED_FIELDS
        result = _substitute_text(obj, values, expanded)
        if expanded and isinstance(result, str):
            _check_no_new_references(obj, result, path)
        return result
    if isinstance(obj, Mapping):
        return {key: _substitute(value, values, (*path, key)) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_substitute(value, values, (*path, index)) for index, value in enumerate(obj)]
    return obj


def _substitute_text(text: str, values: Mapping[str, Scalar], expanded: bool) -> Any:
    def value(name: str) -> Scalar:
        found = _value_of(name, values)
        return literal_text(found) if expanded and isinstance(found, str) else found

    whole = PLACEHOLDER_RE.fullmatch(text)
    if whole is not None:
        return value(whole[1])
    return PLACEHOLDER_RE.sub(lambda match: scalar_text(value(match[1])), text)


def _check_no_new_references(template: str, result: str, path: PathKey) -> None:
    """Refuse a value that completes the queue's text into a ``${NAME}`` of the agent's env."""
    new = set(agent_env_references(result)) - set(agent_env_references(template))
    if new:
        names = ", ".join(f"'{name}'" for name in sorted(set(PLACEHOLDER_RE.findall(template))))
        shown = ", ".join(f"${{{name}}}" for name in sorted(new))
        raise ConfigError(
            [
                FieldError(
                    show_path(path),
                    f"the value of template variable {names} would make {shown} here, which "
                    "reads the agent's environment - only the queue config may do that; "
                    "pick another value",
                )
            ]
        )


def _value_of(name: str, values: Mapping[str, Scalar]) -> Scalar:
    try:
        return values[name]
    except KeyError:
        raise ConfigError(f"template variable '{name}' has no value") from None

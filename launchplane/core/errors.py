"""Errors that name the field at fault and the fix.

Every user-facing validation problem becomes a :class:`FieldError` with a
dotted path (``resource_args.kubernetes.requests``) and a message; a
:class:`ConfigError` carries all of them at once so a user fixes a file in one
pass instead of one error per run.

This module also decides how a value the user gave is shown inside a message
(:func:`show_value`, :func:`kind_of`) and how a runner's own message is
labelled (:func:`runner_message`), so every error reads the same wherever it
was raised.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str
    line: int | None = None
    """The line in the source document, when the problem was found while parsing one."""
    origin: str | None = None
    """The override layer that set the value at fault (``--set a.b=1``), already named
    at the end of ``message``; None for the job or queue config. Lets a command name
    its job file only for the problems that are the file's."""

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path or '<root>'}: {self.message}"
        where = f"{self.path} (line {self.line})" if self.path else f"line {self.line}"
        return f"{where}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class ConfigError(Exception):
    """One or more problems with a job, queue config or override, each with its path."""

    def __init__(self, errors: Sequence[FieldError] | str, *, source: str | None = None) -> None:
        if isinstance(errors, str):
            errors = [FieldError("", errors)]
        self.errors: list[FieldError] = list(errors)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"{self.source}: " if self.source else ""
        if len(self.errors) == 1:
            return head + str(self.errors[0])
        lines = [f"{head}{len(self.errors)} problems:"]
        lines += [f"  - {error}" for error in self.errors]
        return "\n".join(lines)

    def as_dicts(self) -> list[dict[str, str]]:
        return [error.as_dict() for error in self.errors]


def kind_of(value: Any) -> str:
    """``a list`` / ``a string`` / ``a dict``: what a value is, for error messages."""
    return {list: "a list", str: "a string"}.get(type(value), f"a {type(value).__name__}")


def scalar_text(value: Any) -> str:
    """A value as it reads inside a string: YAML spellings for booleans and null."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def show_value(value: Any, *, limit: int | None = None) -> str:
    """A value as an error message quotes it: ``'lots'``, ``5``, ``true``, ``null``.

    Strings are quoted (``repr``), shortened to ``limit`` characters when given.
    """
    if not isinstance(value, str):
        return scalar_text(value)
    if limit is not None and len(value) > limit:
        return repr(value[: max(limit - 3, 1)]) + "..."
    return repr(value)


def runner_message(runner: str, message: str) -> str:
    """``runner 'NAME': message`` - the one place a runner's own error gets its label.

    A plugin should raise its message without the label; one that adds it
    anyway (``PluginError("runner 'slurm': ...")``) is not labelled twice.
    """
    prefix = runner_prefix(runner)
    return message if message.startswith(prefix) else prefix + message


def without_runner_label(runner: str, message: str) -> str:
    """``message`` without a leading ``runner 'NAME': `` (also after pydantic's ``Value error, ``).

    For an error already labelled by its path (``resource_args.NAME.field``),
    where the runner's name would be said twice.
    """
    prefix = runner_prefix(runner)
    for lead in ("", "Value error, ", "Assertion failed, "):
        if message.startswith(lead + prefix):
            return lead + message[len(lead) + len(prefix) :]
    return message


def runner_prefix(runner: str) -> str:
    """The label :func:`runner_message` puts before a runner's message."""
    return f"runner '{runner}': "


def join_path(*parts: Any) -> str:
    """Join path segments with dots as users write paths; empty parts are skipped.

    A segment that holds a dot, a quote, ``=`` or a backslash, or starts or
    ends with a space, is double-quoted (``"nvidia.com/gpu"``) - the grammar
    of ``--set`` and ``locked:`` (:mod:`launchplane.core.config.keypath`).
    """
    return ".".join(quote_segment(str(part)) for part in parts if part is not None and part != "")


def quote_segment(segment: str) -> str:
    """One path segment as users write it: plain, or double-quoted with ``\\"`` escapes."""
    plain = segment and segment == segment.strip() and not any(c in segment for c in '."=\\')
    if plain:
        return segment
    return '"' + segment.replace("\\", "\\\\").replace('"', '\\"') + '"'


def suggest(key: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'entry_point'?)`` for a near miss, else an empty string."""
    normalised = key.replace("-", "_").lower()
    squashed = normalised.replace("_", "")
    choices = list(valid)
    for choice in choices:
        # Case, dashes and camelCase: Resource-Args, entryPoint.
        if choice.lower() in (normalised, squashed) or choice.lower().replace("_", "") == squashed:
            return f" (did you mean '{choice}'?)"
    close = difflib.get_close_matches(normalised, choices, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    # An abbreviation that names exactly one choice: repo -> repository.
    prefixed = [c for c in choices if len(normalised) >= 3 and c.lower().startswith(normalised)]
    return f" (did you mean '{prefixed[0]}'?)" if len(prefixed) == 1 else ""


def from_validation_error(
    exc: Any,
    *,
    prefix: str = "",
    model: Any = None,
    keep: Callable[[Any], bool] | None = None,
) -> list[FieldError]:
    """Turn a pydantic ``ValidationError`` into FieldErrors with paths and suggestions.

    ``model`` (a pydantic model class) lets an unknown key suggest the closest
    valid key of the mapping it was found in. pydantic's own messages gain the
    value given, as :func:`given` decides: ``Input should be a valid string (got 5)``.
    ``keep(item)`` drops the error items it says no to (a partial layer's
    ``missing`` fields, values that hold a placeholder).
    """
    errors: list[FieldError] = []
    for item in exc.errors():
        if keep is not None and not keep(item):
            continue
        loc = [p for p in item["loc"] if not _is_union_tag(p)]
        if item["type"] == "extra_forbidden" and item["loc"]:
            # The unknown key is the user's, whatever it looks like (a key "a[b]" is no union tag).
            loc = [*[p for p in item["loc"][:-1] if not _is_union_tag(p)], item["loc"][-1]]
        path = join_path(prefix, *loc)
        if item["type"] == "extra_forbidden":
            valid = _fields_at(model, loc[:-1]) if model is not None else []
            message = "unknown key" + suggest(str(loc[-1]), valid)
        else:
            message = item["msg"] + given(item, loc)
        errors.append(FieldError(path, message))
    return errors


GIVEN_LIMIT = 40
"""The longest string :func:`given` quotes whole; a longer one is cut (``'abc...'``)."""

_SENSITIVE_KEY_RE = re.compile(r"env|secret|token|passw|credential|auth|api_?key|private", re.I)
_URL_CREDENTIALS_RE = re.compile(r"://[^/\s]*@")
_UNQUOTED_TYPES = frozenset({"missing", "extra_forbidden", "value_error", "assertion_error"})


def given(item: Any, loc: Sequence[Any]) -> str:
    """`` (got 5)`` after one pydantic error, or an empty string when the value stays unsaid.

    The rule, since these messages reach logs, run records and API responses
    and the redactor scrubs only the secrets it was told about:

    * only pydantic's own messages, which never hold the value; a validator's
      message (``ValueError``, a plugin's ``PydanticCustomError``) is its
      author's, who chose what to show. Not for ``missing`` (nothing was
      given) nor an unknown key (the message is the suggestion);
    * never under a key that may hold a secret: a path segment that names an
      environment or a credential (``env``, ``environment``, ``env_from``,
      ``secrets``, ``token``, ``password``, ``auth``, ``api_key``,
      ``credential``, ``private``...) - an env value is where a submitter
      writes a token inline - nor a string that carries URL credentials
      (``https://user:pass@host``);
    * a mapping or list is named by kind (``got a list``), never printed; a
      string is quoted and cut to :data:`GIVEN_LIMIT` characters.
    """
    kind = item.get("type")
    if "input" not in item or kind in _UNQUOTED_TYPES or kind not in _pydantic_types():
        return ""
    if any(isinstance(part, str) and _SENSITIVE_KEY_RE.search(part) for part in loc):
        return ""
    value = item["input"]
    if isinstance(value, str) and _URL_CREDENTIALS_RE.search(value):
        return ""
    if isinstance(value, str | int | float | bool) or value is None:
        return f" (got {show_value(value, limit=GIVEN_LIMIT)})"
    return f" (got {_kind_word(value)})"


def _kind_word(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return kind_of(value)


@functools.cache
def _pydantic_types() -> frozenset[str]:
    """pydantic-core's own error types; a plugin's ``PydanticCustomError`` types are not.

    Read on first use: this module is imported where pydantic is not (``--help``).
    """
    from typing import get_args

    from pydantic_core.core_schema import ErrorType

    return frozenset(get_args(ErrorType))


def _is_union_tag(part: Any) -> bool:
    # pydantic puts union member names ("str", "list[str]", "function-before[...]") in loc.
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


def _fields_at(model: Any, loc: Sequence[Any]) -> list[str]:
    """The field names of the model found by walking ``loc`` from ``model``."""
    from typing import get_args

    from pydantic import BaseModel

    current = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *get_args(annotation)]
        for arg in list(candidates):
            candidates.extend(get_args(arg))
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return []
        current = nested[0]
    return list(getattr(current, "model_fields", {}).keys())

"""Errors that name the field at fault and the fix.

Every user-facing validation problem becomes a :class:`FieldError` with a
dotted path (``resource_args.kubernetes.requests``) and a message; a
:class:`ConfigError` carries all of them at once so a user fixes a file in one
pass instead of one error per run.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str
    line: int | None = None
    """The line in the source document, when the problem was found while parsing one."""

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


def join_path(*parts: Any) -> str:
    """Join path segments with dots, quoting segments that contain a dot."""
    out = []
    for part in parts:
        if part is None or part == "":
            continue
        text = str(part)
        out.append(f'"{text}"' if "." in text else text)
    return ".".join(out)


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


def from_validation_error(exc: Any, *, prefix: str = "", model: Any = None) -> list[FieldError]:
    """Turn a pydantic ``ValidationError`` into FieldErrors with paths and suggestions.

    ``model`` (a pydantic model class) lets an unknown key suggest the closest
    valid key of the mapping it was found in.
    """
    errors: list[FieldError] = []
    for item in exc.errors():
        loc = [p for p in item["loc"] if not _is_union_tag(p)]
        if item["type"] == "extra_forbidden" and item["loc"]:
            # The unknown key is the user's, whatever it looks like (a key "a[b]" is no union tag).
            loc = [*[p for p in item["loc"][:-1] if not _is_union_tag(p)], item["loc"][-1]]
        path = join_path(prefix, *loc)
        if item["type"] == "extra_forbidden":
            valid = _fields_at(model, loc[:-1]) if model is not None else []
            message = "unknown key" + suggest(str(loc[-1]), valid)
        else:
            message = item["msg"]
        errors.append(FieldError(path, message))
    return errors


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

"""Paths into a config: ``resource_args.kubernetes.requests."nvidia.com/gpu"``.

One grammar for every place a user writes a path - ``--set PATH=VALUE``,
``locked:`` entries - and for every place launchplane shows one in a message:
keys separated by dots, a double-quoted segment may hold dots, ``=`` and
spaces (``\\"`` and ``\\\\`` escape a quote and a backslash). Segments are
always mapping keys; there are no list indices in what users write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from launchplane.core.errors import ConfigError, FieldError, quote_segment

PathKey = tuple[str | int, ...]
"""A location in a config: mapping keys and list indices, outermost first."""


def parse_path(text: str, *, where: str = "path") -> PathKey:
    """A dotted path with optional double-quoted segments (the ``--set`` and ``locked`` grammar)."""
    segments, _ = scan_path(text, where, allow_value=False)
    return tuple(segments)


def format_path(path: Sequence[str | int]) -> str:
    """The inverse of :func:`parse_path`: quote segments that need it (empty ones too)."""
    return ".".join(quote_segment(str(segment)) for segment in path)


show_path = format_path
"""A path as users write it (the name the template checks used; same function)."""


def strings(obj: Any, path: PathKey = ()) -> Iterator[tuple[PathKey, str]]:
    """(path, string) for every string value under ``obj``, depth first."""
    if isinstance(obj, str):
        yield path, obj
    elif isinstance(obj, dict | Mapping):
        for key, value in obj.items():
            yield from strings(value, (*path, key))
    elif isinstance(obj, list | tuple):
        for index, value in enumerate(obj):
            yield from strings(value, (*path, index))


def scan_path(text: str, where: str, *, allow_value: bool) -> tuple[list[str], int]:
    """Segments of the path at the start of ``text`` and the index where it ends ('=' or end).

    ``allow_value``: the path may end at an ``=`` (``--set``); else ``=`` must be quoted.
    A malformed path is a ConfigError under ``where`` that names the column.
    """
    segments: list[str] = []
    index, length = 0, len(text)
    while True:
        start = index
        while index < length and text[index] in " \t":
            index += 1
        if index < length and text[index] == '"':
            segment, index = _scan_quoted(text, index, where)
            while index < length and text[index] in " \t":
                index += 1
        else:
            index = start
            while index < length and text[index] not in '.="':
                index += 1
            if index < length and text[index] == '"':
                raise _grammar_error(
                    where, text, index, "a quote may only open a segment; quote the whole key"
                )
            segment = text[start:index].strip()
            if not segment:
                raise _grammar_error(where, text, start, "empty key; write keys between the dots")
        segments.append(segment)
        if index >= length:
            return segments, index
        if text[index] == "=":
            if not allow_value:
                raise _grammar_error(where, text, index, "'=' in a key; quote the key")
            return segments, index
        if text[index] != ".":
            raise _grammar_error(where, text, index, "expected '.' or '=' after a quoted key")
        index += 1


def _scan_quoted(text: str, index: int, where: str) -> tuple[str, int]:
    """The content of the quoted segment opening at ``index`` and the index after its quote."""
    chars: list[str] = []
    position = index + 1
    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text) and text[position + 1] in '"\\':
            chars.append(text[position + 1])
            position += 2
        elif char == '"':
            return "".join(chars), position + 1
        else:
            chars.append(char)
            position += 1
    raise _grammar_error(where, text, index, "unterminated quote")


def _grammar_error(where: str, text: str, index: int, problem: str) -> ConfigError:
    return ConfigError([FieldError(where, f"{text!r}: {problem} (at column {index + 1})")])

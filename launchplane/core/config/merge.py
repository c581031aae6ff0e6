"""The one merge rule: mappings merge key by key, lists and scalars are replaced.

Used for ``base_config`` chains, for the layers of a job and for overrides,
so a user learns one rule. The functions copy: a merged result shares no
container with its inputs, so resolution may modify it freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from launchplane.core.config.keypath import PathKey


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``: mappings merge key by key, anything else is replaced.

    Lists are replaced, not appended (so a job can shorten a queue's list);
    ``null`` replaces too (it does not delete). Neither input is mutated and
    the result shares no container with them, so it is safe to modify.
    """
    result = copy_mapping(base)
    merge_into(result, override)
    return result


def merge_into(target: dict[str, Any], override: Mapping[str, Any]) -> None:
    """:func:`deep_merge` in place: ``target`` (a copy the caller owns) takes ``override``."""
    for key, value in override.items():
        current = target.get(key)
        if isinstance(value, dict | Mapping) and isinstance(current, dict):
            merge_into(current, value)
        else:
            target[key] = copy_value(value)


def merge_tracked(
    target: dict[str, Any],
    override: Mapping[str, Any],
    origin: str,
    origins: dict[PathKey, str],
    path: PathKey = (),
) -> None:
    """:func:`merge_into`, noting in ``origins`` that ``origin`` set each path it replaced.

    After a sequence of layers, the longest prefix of a path found in
    ``origins`` names the layer that last set that path (see :func:`origin_of`),
    so an error in the merged result can say which layer caused it.
    """
    for key, value in override.items():
        current = target.get(key)
        child = (*path, key)
        if isinstance(value, dict | Mapping) and isinstance(current, dict):
            merge_tracked(current, value, origin, origins, child)
            continue
        target[key] = copy_value(value)
        for known in [p for p in origins if p[: len(child)] == child]:
            del origins[known]  # replaced whole: what an earlier layer set below is gone
        origins[child] = origin


def origin_of(path: PathKey, origins: dict[PathKey, str]) -> str | None:
    """The layer that last set ``path`` or a parent of it, per :func:`merge_tracked`."""
    for end in range(len(path), 0, -1):
        found = origins.get(path[:end])
        if found is not None:
            return found
    return None


def copy_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the containers of a config mapping (scalars are shared)."""
    return {key: copy_value(item) for key, item in value.items()}


def copy_value(value: Any) -> Any:
    """A deep copy of the containers of a config value; tuples become lists."""
    if isinstance(value, str | int | float | None):  # the common case, before the ABC check
        return value
    if isinstance(value, dict | Mapping):
        return copy_mapping(value)
    if isinstance(value, list | tuple):
        return [copy_value(item) for item in value]
    return value

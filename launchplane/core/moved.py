"""Deprecated module aliases: modules that moved in 0.2 keep importing, with a warning, until 0.3.

An alias module sets ``__getattr__ = moved_names(__name__, targets)``: a name is
looked up in its new home on first use (so the alias imports nothing, and a
``core/`` alias of an ``agent/`` module imports no floor above it), and each use
warns with ``DeprecationWarning`` naming the new home.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def moved_names(old: str, targets: str | Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old``: every name from ``targets`` (one module, or
    name -> module), with a DeprecationWarning."""

    def __getattr__(name: str) -> Any:
        target = targets if isinstance(targets, str) else targets.get(name)
        if target is None or name.startswith("__"):  # __path__, __spec__: not moved names
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(
            f"{old}.{name} moved to {target}.{name}; {old} goes away in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(target), name)

    return __getattr__

"""Deprecated: moved to :mod:`launchplane.cli` in 0.2; this alias goes away in 0.3."""

from __future__ import annotations

import importlib
import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    warnings.warn(
        f"launchplane.core.cli.{name} moved to launchplane.cli.{name}; "
        "launchplane.core.cli goes away in 0.3",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module("launchplane.cli"), name)

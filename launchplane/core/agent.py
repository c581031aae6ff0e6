"""Deprecated: moved to :mod:`launchplane.agent.loop` in 0.2; this alias goes away in 0.3."""

from __future__ import annotations

import importlib
import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    warnings.warn(
        f"launchplane.core.agent.{name} moved to launchplane.agent.loop.{name}; "
        "launchplane.core.agent goes away in 0.3",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module("launchplane.agent.loop"), name)

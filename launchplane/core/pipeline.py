"""Deprecated: moved to :mod:`launchplane.agent.pipeline` in 0.2; this alias goes away in 0.3."""

from __future__ import annotations

import importlib
import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    warnings.warn(
        f"launchplane.core.pipeline.{name} moved to launchplane.agent.pipeline.{name}; "
        "launchplane.core.pipeline goes away in 0.3",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module("launchplane.agent.pipeline"), name)

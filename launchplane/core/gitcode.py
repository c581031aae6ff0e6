"""Deprecated: moved to :mod:`launchplane.agent.gitcode` in 0.2; this alias goes away in 0.3."""

from __future__ import annotations

import importlib
import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    warnings.warn(
        f"launchplane.core.gitcode.{name} moved to launchplane.agent.gitcode.{name}; "
        "launchplane.core.gitcode goes away in 0.3",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module("launchplane.agent.gitcode"), name)

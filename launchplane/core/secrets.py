"""Deprecated: this module was split in 0.2; it will be removed in 0.3.

* ``Redactor``, ``MASK``, ``MIN_SECRET_LENGTH`` -> :mod:`launchplane.core.redaction`
* ``parse_ref``, ``SecretRefError``, ``SCHEME_RE``, ``REF_FORM``
  -> :mod:`launchplane.core.interfaces`
* ``resolve_secrets`` -> :mod:`launchplane.agent.secrets` (the agent's secrets stage)
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = {
    "Redactor": "launchplane.core.redaction",
    "MASK": "launchplane.core.redaction",
    "MIN_SECRET_LENGTH": "launchplane.core.redaction",
    "parse_ref": "launchplane.core.interfaces",
    "SecretRefError": "launchplane.core.interfaces",
    "SCHEME_RE": "launchplane.core.interfaces",
    "REF_FORM": "launchplane.core.interfaces",
    "resolve_secrets": "launchplane.agent.secrets",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"launchplane.core.secrets.{name} moved to {module}.{name}; "
        "launchplane.core.secrets goes away in 0.3",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(module), name)

"""Deprecated: this module was split in 0.2; it will be removed in 0.3.

* ``Redactor``, ``MASK``, ``MIN_SECRET_LENGTH`` -> :mod:`launchplane.core.redaction`
* ``parse_ref``, ``SecretRefError``, ``SCHEME_RE``, ``REF_FORM``
  -> :mod:`launchplane.core.interfaces`
* ``resolve_secrets`` -> :mod:`launchplane.agent.secrets` (the agent's secrets stage)
"""

from launchplane.core.moved import moved_names

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

__getattr__ = moved_names(__name__, _MOVED)

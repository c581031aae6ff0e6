"""The ``inhouse`` secret scheme: secrets from a JSON file an operator manages.

Stands in for a company's own secret service, and works offline. The file
named by ``INHOUSE_SECRETS_FILE`` maps a path to either a string or an object
of keys::

    {"prod/db": {"user": "app", "password": "..."}, "ci/hf-token": "hf_..."}

``inhouse:prod/db#password`` and ``inhouse:ci/hf-token`` reference them. The
file is read on every resolve, so a rotated secret is picked up without
restarting the agent. Errors name paths and keys, never values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import anyio

from launchplane import hookimpl
from launchplane.core.interfaces import PluginError, SecretProvider, SecretRef

__version__ = "0.1.0"

FILE_ENV = "INHOUSE_SECRETS_FILE"


class InhouseSecretProvider(SecretProvider):
    """``inhouse:PATH[#KEY]`` from the JSON file at ``$INHOUSE_SECRETS_FILE``."""

    scheme = "inhouse"

    async def resolve(self, ref: SecretRef) -> str:
        store = await _load_store()
        if ref.path not in store:
            raise PluginError(f"no secret '{ref.path}' in the {FILE_ENV} file")
        return _select(ref, store[ref.path])


async def _load_store() -> dict[str, Any]:
    location = os.environ.get(FILE_ENV)
    if not location:
        raise PluginError(f"{FILE_ENV} is not set on the agent; point it at the secrets file")
    try:
        text = await anyio.Path(location).read_text(encoding="utf-8")
    except OSError as exc:
        raise PluginError(f"cannot read {FILE_ENV}={location}: {exc.strerror}") from None
    try:
        store = json.loads(text)
    except json.JSONDecodeError as exc:
        # The message holds a position only; never the file's content.
        raise PluginError(
            f"{location} is not valid JSON: line {exc.lineno} col {exc.colno}"
        ) from None
    if not isinstance(store, dict):
        raise PluginError(f"{location} must hold a JSON object of path -> secret")
    return store


def _select(ref: SecretRef, entry: Any) -> str:
    """The string a reference points at: the entry itself, or one key of it."""
    if isinstance(entry, str):
        if ref.key is not None:
            raise PluginError(f"secret '{ref.path}' is a single value; drop '#{ref.key}'")
        return entry
    if not isinstance(entry, dict):
        raise PluginError(f"secret '{ref.path}' must be a string or an object of strings")
    if ref.key is None:
        keys = ", ".join(sorted(entry))
        raise PluginError(f"secret '{ref.path}' has several keys; pick one with #KEY ({keys})")
    value = entry.get(ref.key)
    if not isinstance(value, str):
        raise PluginError(f"secret '{ref.path}' has no string key '{ref.key}'")
    return value


@hookimpl
def launchplane_register_secret_providers(
    register: Callable[[type[SecretProvider]], None],
) -> None:
    register(InhouseSecretProvider)

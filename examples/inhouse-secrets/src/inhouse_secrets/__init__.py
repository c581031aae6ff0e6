"""The ``inhouse`` secret scheme: secrets from a JSON file an operator manages.

Stands in for a company's own secret service, and works offline. The file
maps a path to either a string or an object of keys::

    {"prod/db": {"user": "app", "password": "..."}, "ci/hf-token": "hf_..."}

``inhouse:prod/db#password`` and ``inhouse:ci/hf-token`` reference them.
Where the file is comes from the provider's options - a queue's
``secret_providers: {inhouse: {path: /etc/inhouse.json}}``, over the agent
config's - else from ``INHOUSE_SECRETS_FILE`` on the agent (how 0.1 was
configured). The file is read on every resolve, so a rotated secret is
picked up without restarting the agent. Errors name paths and keys, never
values.
"""

from __future__ import annotations

import json
import os
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict

from launchplane import RegisterSecretProvider, hookimpl
from launchplane.core.interfaces import PluginError, SecretProvider, SecretRef

__version__ = "0.1.0"

FILE_ENV = "INHOUSE_SECRETS_FILE"


class InhouseOptions(BaseModel):
    """``secret_providers.inhouse``: validated by launchplane before the provider is made."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    """The secrets file on the agent. Default: ``$INHOUSE_SECRETS_FILE``, read at each resolve."""


class InhouseSecretProvider(SecretProvider):
    """``inhouse:PATH[#KEY]`` from the JSON file at ``path`` (or ``$INHOUSE_SECRETS_FILE``)."""

    scheme = "inhouse"
    options_model = InhouseOptions

    def __init__(self, options: InhouseOptions | None = None) -> None:
        self.options = options or InhouseOptions()

    async def resolve(self, ref: SecretRef) -> str:
        source, store = await _load_store(self.options)
        if ref.path not in store:
            raise PluginError(f"no secret '{ref.path}' in {source}")
        return _select(ref, store[ref.path])


async def _load_store(options: InhouseOptions) -> tuple[str, dict[str, Any]]:
    """The store, and how errors name where it came from."""
    if options.path is not None:
        location, setting, source = options.path, "secret_providers.inhouse.path", options.path
    else:
        location = os.environ.get(FILE_ENV) or ""
        setting, source = FILE_ENV, f"the {FILE_ENV} file"
    if not location:
        raise PluginError(f"{FILE_ENV} is not set on the agent; point it at the secrets file")
    try:
        text = await anyio.Path(location).read_text(encoding="utf-8")
    except OSError as exc:
        raise PluginError(f"cannot read {setting}={location}: {exc.strerror}") from None
    try:
        store = json.loads(text)
    except json.JSONDecodeError as exc:
        # The message holds a position only; never the file's content.
        raise PluginError(
            f"{location} is not valid JSON: line {exc.lineno} col {exc.colno}"
        ) from None
    if not isinstance(store, dict):
        raise PluginError(f"{location} must hold a JSON object of path -> secret")
    return source, store


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
def launchplane_register_secret_providers(register: RegisterSecretProvider) -> None:
    register(InhouseSecretProvider)

"""The ``env`` secret provider: ``env:NAME`` is the agent's environment variable NAME.

This is how an admin hands a secret the agent already holds (from its own
Kubernetes secret, systemd credential, CI variable) to the jobs of a queue:
``secrets: {HF_TOKEN: "env:HF_TOKEN"}`` in the queue config. Jobs cannot use
it themselves, since only queue configs may hold ``secrets:``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from launchplane import hookimpl
from launchplane.core.interfaces import PluginError, SecretProvider, SecretRef


class EnvSecretProvider(SecretProvider):
    """Reads the variable at resolve time, so an agent restart picks up a rotated value."""

    scheme = "env"

    async def resolve(self, ref: SecretRef) -> str:
        if ref.key is not None:
            raise PluginError(
                f"env:{ref.path}#{ref.key}: environment references take no #key; "
                f"write env:{ref.path}"
            )
        value = os.environ.get(ref.path)
        if value is None:
            raise PluginError(f"environment variable {ref.path} is not set on the agent")
        return value


@hookimpl
def launchplane_register_secret_providers(
    register: Callable[[type[SecretProvider]], None],
) -> None:
    register(EnvSecretProvider)

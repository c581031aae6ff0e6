"""The ``secrets`` stage: a queue's secret references resolved through the providers.

A queue config's ``secrets:`` maps environment variable names to references
(``scheme:path#key``: ``aws-sm:prod/db#password``, ``env:HF_TOKEN``,
``k8s:wandb-credentials#api-key``). Every value is registered with the
agent's :class:`~launchplane.core.redaction.Redactor` as soon as it arrives.

Errors here never contain a secret value: provider errors are scrubbed and
re-raised without their cause.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from launchplane.core.interfaces import PluginError, SecretProvider, SecretRef, parse_ref
from launchplane.core.redaction import MIN_SECRET_LENGTH, Redactor

if TYPE_CHECKING:
    from launchplane.core.plugins import PluginRegistry

log = logging.getLogger(__name__)


async def resolve_secrets(
    secrets: Mapping[str, str],
    registry: PluginRegistry,
    redactor: Redactor,
) -> dict[str, str]:
    """Resolve ``{ENV_NAME: reference}`` to ``{ENV_NAME: value}`` through the providers.

    All references are parsed and their providers looked up before anything is
    fetched; values are fetched concurrently and each is registered with
    ``redactor`` as soon as it arrives, so it is masked even in a sibling's
    error message. Any failure raises one :class:`PluginError` naming every
    failing variable and its reference, scrubbed, with no exception chained
    (a provider's own exception might quote the value).
    """
    import anyio

    providers = _providers_for(secrets, registry)
    refs = {env: ref for env, (ref, _) in providers.items()}
    values: dict[str, str] = {}
    failures: dict[str, str] = {}

    async def fetch(env: str, ref: SecretRef, provider: SecretProvider) -> None:
        try:
            value = await provider.resolve(ref)
        except Exception as exc:
            failures[env] = (
                str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            )
            return
        if not isinstance(value, str):
            failures[env] = f"the {ref.scheme} provider returned {type(value).__name__}, not str"
            return
        if not redactor.add(value) and value:
            log.warning(
                "secret %s is shorter than %d characters and will not be redacted",
                env,
                MIN_SECRET_LENGTH,
            )
        values[env] = value

    async with anyio.create_task_group() as group:
        for env, (ref, provider) in providers.items():
            group.start_soon(fetch, env, ref, provider)
    if failures:
        lines = [
            f"secret {env} ({refs[env]}): {failures[env]}" for env in secrets if env in failures
        ]
        raise PluginError(redactor.scrub(_join(lines, "secrets could not be resolved"))) from None
    return {env: values[env] for env in secrets}


def _providers_for(
    secrets: Mapping[str, str], registry: PluginRegistry
) -> dict[str, tuple[SecretRef, SecretProvider]]:
    """Parse every reference and find its provider; report all problems at once."""
    found: dict[str, tuple[SecretRef, SecretProvider]] = {}
    problems: list[str] = []
    for env, text in secrets.items():
        try:
            ref = parse_ref(text)
            found[env] = (ref, registry.secret_provider(ref.scheme))
        except PluginError as exc:
            problems.append(f"secret {env}: {exc}")
    if problems:
        raise PluginError(_join(problems, "secrets are misconfigured"))
    return found


def _join(lines: list[str], headline: str) -> str:
    if len(lines) == 1:
        return lines[0]
    return "\n".join([f"{len(lines)} {headline}:", *(f"  - {line}" for line in lines)])

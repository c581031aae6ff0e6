"""The ``secrets`` stage: a queue's secret references resolved through the providers.

A queue config's ``secrets:`` maps environment variable names to references
(``scheme:path#key``: ``aws-sm:prod/db#password``, ``env:HF_TOKEN``,
``k8s:wandb-credentials#api-key``). Each provider is built with its options:
the queue's ``secret_providers.<scheme>`` over the agent config's, validated
by the provider's ``options_model``. Every value is registered with the
agent's :class:`~launchplane.core.redaction.Redactor` as soon as it arrives.

Errors here never contain a secret value: provider errors are scrubbed and
re-raised without their cause.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from launchplane.core.interfaces import PluginError, SecretProvider, SecretRef, parse_ref
from launchplane.core.redaction import MIN_SECRET_LENGTH, Redactor
from launchplane.core.registry import SECRET_PROVIDER, PluginOptionsError

if TYPE_CHECKING:
    from launchplane.core.plugins import PluginRegistry

log = logging.getLogger(__name__)


async def resolve_secrets(
    secrets: Mapping[str, str],
    registry: PluginRegistry,
    redactor: Redactor,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    """Resolve ``{ENV_NAME: reference}`` to ``{ENV_NAME: value}`` through the providers.

    ``options`` is the job's ``secret_providers`` (``{scheme: {option: value}}``).
    All references are parsed, their providers built and every scheme's
    options validated before anything is fetched; values are fetched
    concurrently and each is registered with ``redactor`` as soon as it
    arrives, so it is masked even in a sibling's error message. Any failure
    raises one :class:`PluginError` naming every failing variable and its
    reference (or provider option), scrubbed, with no exception chained (a
    provider's own exception might quote the value).
    """
    import anyio

    providers = _providers_for(secrets, registry, options or {})
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
    secrets: Mapping[str, str],
    registry: PluginRegistry,
    options: Mapping[str, Mapping[str, Any]],
) -> dict[str, tuple[SecretRef, SecretProvider]]:
    """Parse every reference, build its provider, check all options; report every problem."""
    found: dict[str, tuple[SecretRef, SecretProvider]] = {}
    problems: list[str] = []
    schemes: set[str] = set()
    for env, text in secrets.items():
        try:
            ref = parse_ref(text)
            schemes.add(ref.scheme)
            found[env] = (ref, registry.secret_provider(ref.scheme, options.get(ref.scheme)))
        except PluginOptionsError as exc:  # one line per provider, not per secret using it
            problems.append(str(exc))
        except PluginError as exc:
            problems.append(f"secret {env}: {exc}")
    for scheme in sorted(set(options) - schemes):
        # No reference uses these options: a misspelt scheme, most likely.
        try:
            registry.validate_options(SECRET_PROVIDER, scheme, options[scheme])
        except PluginOptionsError as exc:
            problems.append(str(exc))
        except PluginError as exc:
            problems.append(f"secret_providers.{scheme}: {exc}")
    problems = list(dict.fromkeys(problems))
    if problems:
        raise PluginError(_join(problems, "secrets are misconfigured"))
    return found


def _join(lines: list[str], headline: str) -> str:
    if len(lines) == 1:
        return lines[0]
    return "\n".join([f"{len(lines)} {headline}:", *(f"  - {line}" for line in lines)])

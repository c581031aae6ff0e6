"""The ``secrets`` stage: a queue's secret references resolved through the providers.

A queue config's ``secrets:`` maps environment variable names to references
(``scheme:path#key``: ``aws-sm:prod/db#password``, ``env:HF_TOKEN``,
``k8s:wandb-credentials#api-key``). Each provider is built with its options:
the queue's ``secret_providers.<scheme>`` over the agent config's, validated
by the provider's ``options_model``. Every value is registered with the
agent's :class:`~launchplane.core.redaction.Redactor` as soon as it arrives.

Native references: for the job's runner, a provider may answer
``native_ref(ref, runner)`` with a reference the runner resolves itself (a
Kubernetes ``secretKeyRef``). Such a secret is not fetched - its value never
passes through the agent - and is handed to the runner in
``JobContext.native_secrets`` instead of ``JobContext.env``.

Errors here never contain a secret value: provider errors are scrubbed and
re-raised without their cause.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from launchplane.core.interfaces import PluginError, SecretProvider, SecretRef, parse_ref
from launchplane.core.redaction import MIN_SECRET_LENGTH, Redactor
from launchplane.core.registry import SECRET_PROVIDER, PluginOptionsError

if TYPE_CHECKING:
    from launchplane.core.plugins import PluginRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedSecrets:
    """What the secrets stage hands on: values for the environment, native references."""

    values: dict[str, str] = field(default_factory=dict)
    """Env name -> value, in the order of the queue's ``secrets``; each one is redacted."""
    native: dict[str, Any] = field(default_factory=dict)
    """Env name -> the provider's native reference for the runner (never fetched)."""

    @property
    def names(self) -> frozenset[str]:
        """Every secret env name, fetched or native."""
        return frozenset(self.values) | frozenset(self.native)


async def resolve_secrets(
    secrets: Mapping[str, str],
    registry: PluginRegistry,
    redactor: Redactor,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    runner: str | None = None,
) -> ResolvedSecrets:
    """Resolve ``{ENV_NAME: reference}`` to values (and native references) via the providers.

    ``options`` is the job's ``secret_providers`` (``{scheme: {option: value}}``).
    With ``runner`` (the job's ``resource``), a provider whose ``native_ref``
    answers for that runner is not asked for the value: the answer goes to
    ``native``.
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
    native: dict[str, Any] = {}
    failures: dict[str, str] = {}

    async def fetch(env: str, ref: SecretRef, provider: SecretProvider) -> None:
        try:
            if runner is not None:
                reference = provider.native_ref(ref, runner)
                if reference is not None:
                    native[env] = reference
                    return
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
    return ResolvedSecrets(
        values={env: values[env] for env in secrets if env in values},
        native={env: native[env] for env in secrets if env in native},
    )


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

"""Secret references, their resolution through providers, and redaction.

A queue config's ``secrets:`` maps environment variable names to references
(``scheme:path#key``: ``aws-sm:prod/db#password``, ``env:HF_TOKEN``,
``k8s:wandb-credentials#api-key``). The agent resolves them at launch with
:func:`resolve_secrets`; every value is registered with one :class:`Redactor`
before anyone else sees it, so logs, run records, API responses and error
messages can be scrubbed.

Errors here never contain a secret value: a text that does not even look like
a reference is not echoed (it may be the secret pasted in by mistake), and
provider errors are scrubbed and re-raised without their cause.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

from launchplane.core.interfaces import PluginError, SecretProvider, SecretRef

if TYPE_CHECKING:
    from launchplane.core.plugins import PluginRegistry

log = logging.getLogger(__name__)

SCHEME_RE = re.compile(r"[a-z][a-z0-9+.-]*")
REF_FORM = "scheme:path[#key], e.g. env:HF_TOKEN or aws-sm:prod/db#password"
MASK = "***"
MIN_SECRET_LENGTH = 4
"""Shorter values are not redacted: scrubbing every "abc" or "1" would mangle all output."""


class SecretRefError(PluginError, ValueError):
    """A malformed secret reference.

    A ``ValueError`` too, so a pydantic validator can raise it and the user
    gets the field's path; a ``PluginError`` so the agent fails the job with it.
    """


def parse_ref(text: str) -> SecretRef:
    """Parse ``scheme:path#key`` (``#key`` optional) into a :class:`SecretRef`.

    The text is echoed in the error only when it starts like a reference
    (``scheme:``); anything else may be a secret pasted where its reference
    belongs, and stays out of messages and logs.
    """
    if not isinstance(text, str):
        raise SecretRefError(
            f"a secret reference is a string ({REF_FORM}), got {type(text).__name__}"
        )
    scheme, colon, rest = text.strip().partition(":")
    if not colon or not SCHEME_RE.fullmatch(scheme):
        raise SecretRefError(
            f"not a secret reference (not shown, in case it is the secret itself); "
            f"expected {REF_FORM}"
        )
    path, hash_, key = rest.partition("#")
    problem = _ref_problem(path, hash_, key)
    if problem:
        raise SecretRefError(f"secret reference {text.strip()!r} {problem}; expected {REF_FORM}")
    return SecretRef(scheme=scheme, path=path, key=key or None)


def _ref_problem(path: str, hash_: str, key: str) -> str | None:
    if not path:
        return "has no path after the scheme"
    if hash_ and not key:
        return "has an empty #key"
    if "#" in key:
        return "has more than one '#'"
    if any(ch.isspace() for ch in path + key):
        return "contains whitespace"
    return None


class Redactor:
    """Replaces every registered secret value, and its common encodings, with ``***``.

    One process holds one redactor, shared by all jobs and tasks: values are
    only ever added, and the compiled pattern is swapped atomically, so
    :meth:`scrub` needs no lock.
    """

    def __init__(self) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str) -> bool:
        """Register a value; False (and nothing registered) when it is too short to redact."""
        if len(value) < MIN_SECRET_LENGTH:
            return False
        forms = {form for form in _encoded_forms(value) if len(form) >= MIN_SECRET_LENGTH}
        with self._lock:
            if not forms <= self._forms:
                self._forms |= forms
                self._pattern = _alternation(self._forms)
        return True

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def scrub_obj(self, obj: Any) -> Any:
        """A copy of ``obj`` with every string (mapping keys too) scrubbed.

        Walks dicts, lists and tuples; other values are returned unchanged.
        """
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, Mapping):
            return {self.scrub_obj(k): self.scrub_obj(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return type(obj)(self.scrub_obj(item) for item in obj)
        return obj


def _encoded_forms(value: str) -> Iterator[str]:
    """The value as it may show up in output: raw, base64, URL-encoded, JSON-escaped, per line.

    base64 forms only match where the value was encoded on its own (``echo -n
    $S | base64``, a ``Basic`` header of a token); a secret embedded in a
    longer base64 blob is not recognisable.
    """
    yield value
    raw = value.encode()
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        yield text
        yield text.rstrip("=")
    yield quote(value)
    yield quote(value, safe="")
    yield quote_plus(value)
    yield json.dumps(value)[1:-1]
    yield from (line.strip() for line in value.splitlines())


def _alternation(forms: set[str]) -> re.Pattern[str]:
    # Longest first, so a value is masked whole, not just a shorter value it contains.
    ordered = sorted(forms, key=lambda form: (-len(form), form))
    return re.compile("|".join(re.escape(form) for form in ordered))


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

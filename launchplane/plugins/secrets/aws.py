"""The ``aws-sm`` secret provider: AWS Secrets Manager values for a queue's jobs.

``aws-sm:NAME`` is the secret's whole ``SecretString``; ``aws-sm:NAME#KEY`` is
one field of a secret that holds a JSON object (what the console's
"key/value" secrets are), e.g. ``secrets: {DB_PASSWORD: "aws-sm:prod/db#password"}``.
``NAME`` is the secret's name or its full ARN (needed for a secret of
another account).

Options (``secret_providers.aws-sm`` in a queue or the agent config) are
:class:`~launchplane.core.aws.AwsOptions` (``region``, ``endpoint_url``,
``profile``; else the standard AWS chain) plus ``version_stage`` (which
version of every secret of that queue: ``AWSCURRENT`` unless set, e.g.
``AWSPREVIOUS`` during a rotation) and ``ttl_seconds``. A value is kept in
the provider's memory (one provider per agent and options) for at most
``ttl_seconds``, so a burst of jobs reads a secret once while a rotated
secret reaches new jobs within that bound; ``0`` reads it for every job.

For the ``sagemaker`` runner nothing is fetched: :meth:`AwsSecretsManagerProvider.native_ref`
hands it the secret's id for the training job's role to read.

Errors name the secret, the stage, the region and AWS's error code and
message (which never quote values); a JSON key that is missing names the
keys the secret has, never their values.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from time import monotonic
from typing import Any

from pydantic import Field

from launchplane import hookimpl
from launchplane.core import aws
from launchplane.core.interfaces import PluginError, SecretProvider, SecretRef

MAX_CACHED = 256
"""Secrets one provider keeps at most; the oldest goes first (the TTL bounds the rest)."""


class AwsSecretsOptions(aws.AwsOptions):
    """``secret_providers.aws-sm``: where the secrets live, which version, how long to keep one."""

    version_stage: str = Field("AWSCURRENT", min_length=1, max_length=256)
    """The staging label read for every secret (``AWSCURRENT``, ``AWSPREVIOUS``, a custom label)."""
    ttl_seconds: float = Field(300, ge=0, le=3600)
    """How long a fetched value serves later jobs of this agent; 0 fetches it every time."""


class AwsSecretsManagerProvider(SecretProvider):
    """Reads ``GetSecretValue`` in a worker thread; keeps values for a bounded time."""

    scheme = "aws-sm"
    options_model = AwsSecretsOptions

    def __init__(self, options: AwsSecretsOptions | None = None) -> None:
        super().__init__(options or AwsSecretsOptions())
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, str]] = OrderedDict()
        """Secret id -> (monotonic expiry, SecretString); touched on the event loop only."""

    @property
    def settings(self) -> AwsSecretsOptions:
        assert isinstance(self.options, AwsSecretsOptions)
        return self.options

    async def resolve(self, ref: SecretRef) -> str:
        import anyio.to_thread

        text = self._cached(ref.path)
        if text is None:
            text = await anyio.to_thread.run_sync(self._fetch, ref.path)
            self._remember(ref.path, text)
        return text if ref.key is None else _field(ref, text)

    def native_ref(self, ref: SecretRef, runner: str) -> dict[str, str] | None:
        """For a SageMaker job, the secret's id for the job's role to read: no value is fetched.

        SageMaker's ``Environment`` is readable through ``DescribeTrainingJob``,
        so the runner passes ``SecretId`` (and ``JsonKey``, ``VersionStage``) to
        the job instead of a value. Every other runner gets the value.
        """
        if runner != "sagemaker":
            return None
        reference = {"SecretId": ref.path, "VersionStage": self.settings.version_stage}
        if ref.key is not None:
            reference["JsonKey"] = ref.key
        return reference

    async def aclose(self) -> None:
        """Forget every value and close the client's connections."""
        self._cache.clear()
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- internals ------------------------------------------------------------------

    def _cached(self, name: str) -> str | None:
        entry = self._cache.get(name)
        if entry is None:
            return None
        expires, text = entry
        if monotonic() >= expires:
            del self._cache[name]
            return None
        return text

    def _remember(self, name: str, text: str) -> None:
        ttl = self.settings.ttl_seconds
        if ttl <= 0:
            return
        self._cache[name] = (monotonic() + ttl, text)
        self._cache.move_to_end(name)
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)

    def _fetch(self, name: str) -> str:
        """``GetSecretValue`` (worker thread): the text, or a PluginError saying why not."""
        client = self._sm()  # a PluginError of its own when boto3 or a region is missing
        stage = self.settings.version_stage
        where = f"Secrets Manager secret '{name}' (stage {stage}, region {client.meta.region_name})"
        try:
            answer = client.get_secret_value(SecretId=name, VersionStage=stage)
        except Exception as exc:
            raise PluginError(f"{where}: {_why(exc)}") from None
        if answer.get("SecretString") is not None:
            return str(answer["SecretString"])
        try:
            return bytes(answer["SecretBinary"]).decode("utf-8")
        except (KeyError, TypeError, UnicodeDecodeError):
            raise PluginError(
                f"{where} is binary and not UTF-8 text, so it cannot be an environment "
                "variable; store it as a SecretString (base64 it if need be)"
            ) from None

    def _sm(self) -> Any:
        with self._client_lock:
            if self._client is None:
                # botocore's parser logs every response body at DEBUG, in the worker
                # thread, before the value reaches the redactor: an agent started with
                # --log-level debug would write the secret to its log.
                logging.getLogger("botocore.parsers").setLevel(logging.INFO)
                self._client = aws.client(
                    "secretsmanager", self.settings, kind="secret provider", name=self.scheme
                )
            return self._client


def _field(ref: SecretRef, text: str) -> str:
    """``#KEY`` of a JSON-object secret; errors say what the secret is, never what it holds."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise PluginError(
            f"Secrets Manager secret '{ref.path}' is not a JSON object, so it has no key "
            f"'{ref.key}'; write aws-sm:{ref.path} for the whole value"
        )
    if ref.key not in data:
        keys = ", ".join(sorted(map(str, data))) or "none"
        raise PluginError(
            f"Secrets Manager secret '{ref.path}' has no key '{ref.key}' (its keys: {keys})"
        )
    value = data[ref.key]
    return value if isinstance(value, str) else json.dumps(value)


def _why(exc: BaseException) -> str:
    """The failure in words, with the fix for the usual ones."""
    code = aws.error_code(exc)
    reason = aws.explain(exc)
    if code == "ResourceNotFoundException":
        return f"not found ({reason}); check the name, the region and version_stage"
    if code in {"AccessDeniedException", "UnrecognizedClientException"}:
        return f"{reason}; the agent's AWS identity needs secretsmanager:GetSecretValue on it"
    if type(exc).__name__ == "NoCredentialsError":
        return (
            "no AWS credentials on the agent; give it a profile (secret_providers.aws-sm.profile "
            "or AWS_PROFILE), access keys or an instance role"
        )
    return reason


@hookimpl
def launchplane_register_secret_providers(
    register: Callable[[type[SecretProvider]], None],
) -> None:
    register(AwsSecretsManagerProvider)

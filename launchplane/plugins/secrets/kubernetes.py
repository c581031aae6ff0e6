"""The ``k8s`` secret provider: ``k8s:NAME#KEY`` is key KEY of the Kubernetes Secret NAME.

``k8s:NAMESPACE/NAME#KEY`` names the namespace too; without it the Secret is
looked up in the provider's namespace (its ``namespace`` option, else the
kubeconfig context's, else the agent pod's, else ``default``).

On the ``kubernetes`` runner the value never passes the agent:
:meth:`KubernetesSecretProvider.native_ref` answers ``{"secretKeyRef":
{"name": NAME, "key": KEY}}`` and the pod reads the Secret itself (a pod
reads Secrets of its own namespace only, so a ``NAMESPACE/`` reference must
name the job's namespace; the runner checks that). For other runners
(``local-process``, ``docker``) :meth:`KubernetesSecretProvider.resolve`
reads the Secret through the API with the agent's credentials (``get`` on
``secrets`` in that namespace). Errors name the namespace, Secret and key,
never a value, and never quote the API's response body (it holds the data).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from launchplane import hookimpl
from launchplane.core.interfaces import PluginError, SecretProvider, SecretRef
from launchplane.plugins.kube import KubeOptions, api_client, call, default_namespace, explain

SCHEME = "k8s"
RUNNER = "kubernetes"
"""The runner that can use a ``secretKeyRef`` itself."""
NATIVE_NAMESPACE = "namespace"
"""Key of a native reference that names the Secret's namespace; the runner checks and drops it."""
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")
FORM = "k8s:NAME#KEY or k8s:NAMESPACE/NAME#KEY"


@dataclass(frozen=True)
class KubeSecretRef:
    """A parsed ``k8s:`` reference: which key of which Secret, in which namespace (if named)."""

    namespace: str | None
    name: str
    key: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{SCHEME}:{where}#{self.key}"


def parse_k8s_ref(ref: SecretRef) -> KubeSecretRef:
    """``ref`` as namespace, Secret name and key; :class:`PluginError` naming the form otherwise.

    Pure, so ``plan`` (through the manifest's ``describe``) shows exactly the
    ``secretKeyRef`` a launch would use.
    """
    if ref.key is None:
        raise PluginError(
            f"{ref}: a k8s reference names one key of the Secret: write {FORM} "
            "(to pass every key, use resource_args.kubernetes.env_from with secret_ref)"
        )
    namespace, slash, name = ref.path.rpartition("/")
    if slash and not _DNS_LABEL.fullmatch(namespace):
        raise PluginError(f"{ref}: {namespace!r} is not a namespace name; expected {FORM}")
    if not _DNS_SUBDOMAIN.fullmatch(name):
        raise PluginError(
            f"{ref}: {name!r} is not a Secret name (lower case letters, digits, '-' and '.'); "
            f"expected {FORM}"
        )
    if not _SECRET_KEY.fullmatch(ref.key):
        raise PluginError(
            f"{ref}: {ref.key!r} is not a Secret key (letters, digits, '-', '_' and '.')"
        )
    return KubeSecretRef(namespace or None, name, ref.key)


def secret_key_ref(parsed: KubeSecretRef) -> dict[str, Any]:
    """The env ``valueFrom`` for ``parsed``, with the namespace for the runner's check."""
    native: dict[str, Any] = {"secretKeyRef": {"name": parsed.name, "key": parsed.key}}
    if parsed.namespace:
        native[NATIVE_NAMESPACE] = parsed.namespace
    return native


class KubernetesSecretProvider(SecretProvider):
    """Reads Secrets through the Kubernetes API, or hands the runner a ``secretKeyRef``."""

    scheme: ClassVar[str] = SCHEME
    options_model = KubeOptions

    def __init__(self, options: KubeOptions | None = None) -> None:
        super().__init__(options)
        self._client: Any = None

    @property
    def _options(self) -> KubeOptions:
        return self.options if isinstance(self.options, KubeOptions) else KubeOptions()

    def native_ref(self, ref: SecretRef, runner: str) -> Any | None:
        if runner != RUNNER:
            return None
        return secret_key_ref(parse_k8s_ref(ref))

    async def resolve(self, ref: SecretRef) -> str:
        parsed = parse_k8s_ref(ref)
        if self._client is None:
            self._client = api_client(self._options, kind="secret provider", name=SCHEME)
        namespace = parsed.namespace or default_namespace(self._options)
        return await call(self._read, namespace, parsed)

    def _read(self, namespace: str, parsed: KubeSecretRef) -> str:
        """One blocking GET of the Secret; the value of ``parsed.key``, decoded."""
        import kubernetes

        where = f"Secret {parsed.name} in namespace {namespace}"
        api = kubernetes.client.CoreV1Api(self._client)
        try:
            secret = api.read_namespaced_secret(parsed.name, namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                raise PluginError(
                    f"{parsed}: {where} does not exist; create it "
                    f"(kubectl create secret generic {parsed.name} -n {namespace} "
                    f"--from-literal={parsed.key}=...) or fix the reference"
                ) from None
            raise PluginError(f"{parsed}: cannot read {where}: {explain(exc)}") from None
        except Exception as exc:  # a connection failure (urllib3): say where, not the request
            host = self._client.configuration.host
            raise PluginError(
                f"{parsed}: cannot reach the Kubernetes API at {host} to read {where}: "
                f"{type(exc).__name__}"
            ) from None
        data = secret.data or {}
        if parsed.key not in data:
            keys = ", ".join(sorted(data)) or "none"
            raise PluginError(f"{parsed}: {where} has no key {parsed.key!r} (its keys: {keys})")
        try:
            return base64.b64decode(data[parsed.key], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise PluginError(
                f"{parsed}: key {parsed.key!r} of {where} is not UTF-8 text; "
                "an environment variable holds text"
            ) from None

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await call(client.close)


@hookimpl
def launchplane_register_secret_providers(
    register: Callable[[type[SecretProvider]], None],
) -> None:
    register(KubernetesSecretProvider)

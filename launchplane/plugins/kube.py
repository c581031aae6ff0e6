"""One way to reach a Kubernetes API for the cluster-facing plugins (runner, kaniko, ``k8s``).

Plugins embed :class:`KubeOptions` in their own options model, so a queue or
an agent config can name a kubeconfig file, a context and a default
namespace; anything left out follows the rules ``kubectl`` users know:

- inside a pod (``KUBERNETES_SERVICE_HOST`` is set and no kubeconfig is
  named) the pod's service account is used (in-cluster config);
- else the kubeconfig is ``options.kubeconfig``, else ``$KUBECONFIG``
  (colon-separated files are merged), else ``~/.kube/config``; the context
  is ``options.context``, else ``$LAUNCHPLANE_KUBE_CONTEXT`` (what
  ``launch-agent --kube-context`` sets), else the file's current context.

The ``kubernetes`` package is imported inside the functions that use it, never
at module import time (``launch-agent --help`` must not pay for it), and a
missing extra is one clear line. Its calls are blocking: :func:`call` runs
them in a worker thread so the agent's event loop keeps serving other jobs.
API errors are put in words by :func:`explain`: status, reason and the API
server's own message, never the response body (which, for a Secret, could
carry its data).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from pydantic import BaseModel, ConfigDict

from launchplane.core.interfaces import MissingExtraError, PluginError

CONTEXT_ENV = "LAUNCHPLANE_KUBE_CONTEXT"
"""The context ``launch-agent --kube-context`` selects for every Kubernetes plugin."""

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where the kubelet mounts a pod's service account (token, CA, namespace)."""

_MESSAGE_LIMIT = 600
"""An API message longer than this is cut: enough for a validation error, not a dump."""

T = TypeVar("T")


class KubeOptions(BaseModel):
    """Which cluster and namespace a plugin talks to; each field falls back as ``kubectl`` does."""

    model_config = ConfigDict(extra="forbid")

    context: str | None = None
    """A context of the kubeconfig; else ``$LAUNCHPLANE_KUBE_CONTEXT``, else the current context."""
    kubeconfig: str | None = None
    """A kubeconfig file (``~`` expanded); else ``$KUBECONFIG``, else ``~/.kube/config``.

    Naming one wins over the in-cluster service account, also inside a pod."""
    namespace: str | None = None
    """The namespace of a job that names none; else the context's, the pod's, or ``default``."""


def _import_kubernetes(kind: str, name: str) -> Any:
    """The ``kubernetes`` package, or :class:`MissingExtraError` naming the plugin."""
    try:
        import kubernetes
    except ImportError:
        raise MissingExtraError(kind, name, "kubernetes") from None
    return kubernetes


def in_cluster(options: KubeOptions | None = None) -> bool:
    """True when the pod's service account is the way in (inside a pod, no kubeconfig named)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not (options and options.kubeconfig)


def _kubeconfig_file(options: KubeOptions) -> str:
    """The kubeconfig path(s) to load, read at call time (``$KUBECONFIG`` may change in tests)."""
    if options.kubeconfig:
        return os.path.expanduser(options.kubeconfig)
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def _context(options: KubeOptions) -> str | None:
    return options.context or os.environ.get(CONTEXT_ENV) or None


def api_client(
    options: KubeOptions | None = None, *, kind: str = "plugin", name: str = "kubernetes"
) -> Any:
    """A ``kubernetes.client.ApiClient`` for ``options``; each call makes a new, independent one.

    Raises :class:`MissingExtraError` without the extra and :class:`PluginError`
    naming the kubeconfig file and context when the configuration cannot be
    loaded. The client is thread-safe for requests; a plugin makes one and
    keeps it (and closes it in ``aclose``).
    """
    kubernetes = _import_kubernetes(kind, name)
    from kubernetes.config.config_exception import ConfigException

    options = options or KubeOptions()
    configuration = kubernetes.client.Configuration()
    if in_cluster(options):
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise PluginError(
                f"{kind} '{name}': in-cluster Kubernetes config failed ({exc}); "
                "set the plugin option kubeconfig to use a kubeconfig file instead"
            ) from None
        return kubernetes.client.ApiClient(configuration=configuration)
    path, context = _kubeconfig_file(options), _context(options)
    try:
        kubernetes.config.load_kube_config(
            config_file=path,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (ConfigException, OSError, ValueError) as exc:
        where = f"kubeconfig {path}" + (f", context {context!r}" if context else "")
        raise PluginError(
            f"{kind} '{name}': cannot load {where}: {exc}; set the plugin options "
            f"kubeconfig/context, $KUBECONFIG or ${CONTEXT_ENV}"
        ) from None
    return kubernetes.client.ApiClient(configuration=configuration)


def default_namespace(options: KubeOptions | None = None) -> str:
    """The namespace of a job that names none: the option, the context's, the pod's, ``default``."""
    options = options or KubeOptions()
    if options.namespace:
        return options.namespace
    if in_cluster(options):
        try:
            return (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip() or "default"
        except OSError:
            return "default"
    try:
        from kubernetes.config import list_kube_config_contexts
        from kubernetes.config.config_exception import ConfigException
    except ImportError:
        return "default"
    try:
        contexts, current = list_kube_config_contexts(config_file=_kubeconfig_file(options))
    except (ConfigException, OSError, ValueError):
        return "default"
    wanted = _context(options)
    chosen = next((c for c in contexts if c.get("name") == wanted), None) if wanted else current
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a worker thread: the kubernetes client blocks on its sockets."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a ``kubernetes`` ``ApiException`` (404, 409, 410...), else None."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def explain(exc: BaseException) -> str:
    """An API failure in words: ``403 Forbidden: <the API server's message>``.

    Only the ``message`` of a ``Status`` body is shown (it names objects and
    fields, e.g. ``secrets "db" not found``); the raw body never is, because
    for a Secret it could carry the data. Long messages are cut. Callers still
    pass the text through the redactor like every error.
    """
    status, reason = status_of(exc), getattr(exc, "reason", None)
    if status is None:
        return f"{type(exc).__name__}: {exc}"
    head = f"{status} {reason}" if reason else str(status)
    message = ""
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.strip().startswith("{"):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            message = parsed["message"]
    if len(message) > _MESSAGE_LIMIT:
        message = message[:_MESSAGE_LIMIT] + "..."
    return f"{head}: {message}" if message else head

"""The ``k8s`` secret provider and ``plugins/kube.py``'s connection, against a Kubernetes API.

The API is kmock's emulator (as extended in ``k8skit``) on a loopback port,
reached by the real ``kubernetes`` client through a kubeconfig file, as an
agent reaches a cluster. No pods run here, so no pod controller is started.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import kmock
import pytest
from click.testing import CliRunner
from k8skit import Emulator, write_kubeconfig
from kit import LAUNCHPLANE, subprocess_env

from launchplane.cli import cli
from launchplane.core.interfaces import MissingExtraError, PluginError, parse_ref
from launchplane.plugins import kube
from launchplane.plugins.secrets.kubernetes import KubernetesSecretProvider

pytestmark = [pytest.mark.kubernetes, pytest.mark.anyio]

CANARY = "canary-k8s-8d2e41"
REPO = str(Path(__file__).parents[2])
OTHER_CANARY = "canary-other-key-5b90"


@dataclass
class Api:
    emulator: Emulator
    url: str
    kubeconfig: Path

    def create_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        import kubernetes

        client = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))
        with client:
            kubernetes.client.CoreV1Api(client).create_namespaced_secret(
                namespace,
                {
                    "metadata": {"name": name},
                    "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
                },
            )


@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    """The emulator alone; ``$KUBECONFIG`` (context namespace ``ml``) points clients at it."""
    async with Emulator(strict=False) as emulator, kmock.Server(emulator) as server:
        url = str(server.url).rstrip("/")
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url, namespace="ml")
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.delenv(kube.CONTEXT_ENV, raising=False)
        yield Api(emulator, url, kubeconfig)


async def resolve(text: str, **options: Any) -> str:
    provider = KubernetesSecretProvider(kube.KubeOptions(**options))
    try:
        return await provider.resolve(parse_ref(text))
    finally:
        await provider.aclose()


async def failure(text: str, **options: Any) -> str:
    with pytest.raises(PluginError) as caught:
        await resolve(text, **options)
    message = str(caught.value)
    assert CANARY not in message and OTHER_CANARY not in message
    return message


async def test_resolve_reads_the_key_in_the_contexts_namespace_or_the_named_one(api: Api) -> None:
    await anyio.to_thread.run_sync(
        api.create_secret, "ml", "db", {"password": CANARY, "user": OTHER_CANARY}
    )
    await anyio.to_thread.run_sync(api.create_secret, "team", "db", {"password": "team-value"})
    assert await resolve("k8s:db#password") == CANARY
    assert await resolve("k8s:team/db#password") == "team-value"
    assert await resolve("k8s:db#password", namespace="team") == "team-value"


async def test_a_missing_secret_or_key_names_it_and_never_a_value(api: Api) -> None:
    await anyio.to_thread.run_sync(
        api.create_secret, "ml", "db", {"password": CANARY, "user": OTHER_CANARY}
    )
    message = await failure("k8s:nope#password")
    assert message.startswith("k8s:nope#password: Secret nope in namespace ml does not exist")
    assert "kubectl create secret generic nope -n ml --from-literal=password=..." in message
    message = await failure("k8s:db#token")
    assert message == (
        "k8s:db#token: Secret db in namespace ml has no key 'token' (its keys: password, user)"
    )


async def test_an_unreachable_api_is_a_clear_failure(tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9")
    message = await failure("k8s:db#password", kubeconfig=str(config))
    assert message.startswith(
        "k8s:db#password: cannot reach the Kubernetes API at http://127.0.0.1:9 "
        "to read Secret db in namespace default"
    )


def test_native_ref_is_a_secret_key_ref_for_the_kubernetes_runner_only() -> None:
    provider = KubernetesSecretProvider(kube.KubeOptions())
    assert provider.native_ref(parse_ref("k8s:wandb-credentials#api-key"), "kubernetes") == {
        "secretKeyRef": {"name": "wandb-credentials", "key": "api-key"}
    }
    assert provider.native_ref(parse_ref("k8s:team/db#pw"), "kubernetes") == {
        "secretKeyRef": {"name": "db", "key": "pw"},
        "namespace": "team",
    }
    assert provider.native_ref(parse_ref("k8s:db#pw"), "docker") is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("k8s:db", "a k8s reference names one key of the Secret"),
        ("k8s:DB#pw", "'DB' is not a Secret name"),
        ("k8s:a/b/c#pw", "'a/b' is not a namespace name"),
        ("k8s:db#p:w", "'p:w' is not a Secret key"),
    ],
)
def test_malformed_references_say_the_form(text: str, problem: str) -> None:
    with pytest.raises(PluginError, match=problem):
        KubernetesSecretProvider(kube.KubeOptions()).native_ref(parse_ref(text), "kubernetes")


async def test_plan_check_secrets_resolves_a_k8s_secret_through_the_registry(
    api: Api, tmp_path: Path
) -> None:
    await anyio.to_thread.run_sync(api.create_secret, "ml", "wandb", {"api-key": CANARY})
    job, queue = tmp_path / "job.yaml", tmp_path / "queue.yaml"
    job.write_text("command: [python, -c, 'print(1)']\n")
    queue.write_text(
        "secrets:\n  WANDB_API_KEY: k8s:wandb#api-key\n"
        f"secret_providers:\n  k8s:\n    kubeconfig: {api.kubeconfig}\n"
    )

    def plan() -> Any:
        args = ["plan", str(job), "--queue-config", str(queue), "--check-secrets", "--json"]
        return CliRunner().invoke(cli, args, catch_exceptions=False)

    result = await anyio.to_thread.run_sync(plan)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["secrets_check"] == {
        "WANDB_API_KEY": f"resolved ({len(CANARY)} characters)"
    }
    assert CANARY not in result.stdout + result.stderr


async def test_a_local_process_job_gets_the_value_through_the_agent(
    api: Api, tmp_path: Path
) -> None:
    """``launchplane run`` (embedded server + agent, local-process runner) as a real process."""
    await anyio.to_thread.run_sync(api.create_secret, "ml", "db", {"password": CANARY})
    job, queue = tmp_path / "job.yaml", tmp_path / "queue.yaml"
    script = (
        "import hashlib, os; "
        "print('sha', hashlib.sha256(os.environ['DB_PASSWORD'].encode()).hexdigest()); "
        "print('echo', os.environ['DB_PASSWORD'])"
    )
    job.write_text(json.dumps({"command": [sys.executable, "-c", script]}))
    queue.write_text("secrets:\n  DB_PASSWORD: k8s:db#password\n")
    done = await anyio.run_process(
        [
            LAUNCHPLANE,
            "run",
            str(job),
            "--queue-config",
            str(queue),
            "--data-dir",
            str(tmp_path / "d"),
        ],
        env=subprocess_env(KUBECONFIG=str(api.kubeconfig), PYTHONPATH=REPO),
        check=False,
    )
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, out
    assert hashlib.sha256(CANARY.encode()).hexdigest() in out
    assert "echo " in out and CANARY not in out  # the job printed it; the redactor masked it
    files = [path for path in (tmp_path / "d").rglob("*") if path.is_file()]
    assert any(path.name == "record.json" for path in files)
    for path in files:
        assert CANARY.encode() not in path.read_bytes(), path


# --- plugins/kube.py: which cluster --------------------------------------------------------


def two_context_kubeconfig(path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "a", "cluster": {"server": "http://127.0.0.1:7001"}},
                    {"name": "b", "cluster": {"server": "http://127.0.0.1:7002"}},
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "a", "context": {"cluster": "a", "user": "u", "namespace": "ns-a"}},
                    {"name": "b", "context": {"cluster": "b", "user": "u"}},
                ],
                "current-context": "a",
            }
        )
    )
    return path


def test_context_comes_from_the_option_then_the_agent_flag_then_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv(kube.CONTEXT_ENV, raising=False)
    config = two_context_kubeconfig(tmp_path / "config")
    monkeypatch.setenv("KUBECONFIG", str(config))

    def host(**options: Any) -> str:
        client = kube.api_client(kube.KubeOptions(**options))
        client.close()
        return client.configuration.host

    assert host() == "http://127.0.0.1:7001"
    assert kube.default_namespace() == "ns-a"
    monkeypatch.setenv(kube.CONTEXT_ENV, "b")
    assert host() == "http://127.0.0.1:7002"
    assert kube.default_namespace() == "default"
    assert host(context="a") == "http://127.0.0.1:7001"
    assert kube.default_namespace(kube.KubeOptions(namespace="mine")) == "mine"
    with pytest.raises(PluginError, match="context 'zz'"):
        host(context="zz")
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(PluginError, match=r"cannot load kubeconfig .*\.kube/config"):
        host()
    assert host(kubeconfig=str(config), context="a") == "http://127.0.0.1:7001"


def test_in_a_pod_the_service_account_is_used_unless_a_kubeconfig_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert kube.in_cluster()
    # No service account is mounted on this machine: the in-cluster loader says so.
    with pytest.raises(PluginError, match="in-cluster Kubernetes config failed"):
        kube.api_client(kube.KubeOptions())
    config = two_context_kubeconfig(tmp_path / "config")
    options = kube.KubeOptions(kubeconfig=str(config))
    assert not kube.in_cluster(options)
    assert kube.api_client(options).configuration.host == "http://127.0.0.1:7001"


def test_without_the_extra_the_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    with pytest.raises(MissingExtraError) as caught:
        kube.api_client(kind="secret provider", name="k8s")
    assert str(caught.value) == "secret provider 'k8s' needs: pip install 'launchplane[kubernetes]'"


def test_explain_shows_the_apis_message_never_the_body() -> None:
    from kubernetes.client.exceptions import ApiException

    exc = ApiException(status=403, reason="Forbidden")
    exc.body = json.dumps(
        {
            "kind": "Status",
            "message": 'secrets "db" is forbidden: User "agent" cannot get resource "secrets"',
            "details": {"data": {"password": CANARY}},
        }
    )
    text = kube.explain(exc)
    assert text == (
        '403 Forbidden: secrets "db" is forbidden: User "agent" cannot get resource "secrets"'
    )
    raw = ApiException(status=500, reason="Internal Server Error")
    raw.body = f"password={CANARY}"
    assert kube.explain(raw) == "500 Internal Server Error"
    assert kube.status_of(raw) == 500
    assert kube.explain(ValueError("x")) == "ValueError: x"


async def test_call_runs_blocking_client_calls_off_the_event_loop() -> None:
    import threading

    loop_thread = threading.get_ident()
    assert await kube.call(threading.get_ident) != loop_thread
    assert await kube.call(lambda a, b=0: a + b, 1, b=2) == 3

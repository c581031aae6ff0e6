"""Where the Kubernetes end-to-end tests run: the emulator here, or a real cluster (opt-in).

The end-to-end tests (``test_runner_e2e.py``) are written once against
:class:`Target` and run twice:

* ``emulator`` (always): kmock's API emulator and the test-side pod
  controller of ``k8skit``, pods run on the local Docker engine;
* ``cluster`` (marker ``cluster``, skipped unless ``LAUNCHPLANE_TEST_KUBECONFIG``
  is set, also in CI): a real cluster through that kubeconfig.

For a real cluster the tests need a registry both this host can push to and
the cluster can pull from, and the base image in it:

=====================================  ==============================================
``LAUNCHPLANE_TEST_KUBECONFIG``        the kubeconfig file (required)
``LAUNCHPLANE_TEST_KUBE_CONTEXT``      its context [the file's current context]
``LAUNCHPLANE_TEST_CLUSTER_NAMESPACE`` a namespace the tests may use [launchplane-test]
``LAUNCHPLANE_TEST_CLUSTER_REGISTRY``  registry/prefix for built images [required]
``LAUNCHPLANE_TEST_CLUSTER_IMAGE``     an image with ``python3`` the cluster can pull
                                       [the test base image, pushed to the registry]
=====================================  ==============================================

What only the emulator can do (force a ``410 Gone``, script an eviction, list
the API's DELETE calls) is asked through :attr:`Target.emulated`, and those
tests skip on a real cluster, saying why.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from k8skit import Cluster, cluster
from kit import DOCKER_BASE_IMAGE

JOB_LABEL = "launchplane.job_id"
EMULATOR_NAMESPACE = "ml"
EMULATOR_REGISTRY = "127.0.0.1:5000"
KUBECONFIG_ENV = "LAUNCHPLANE_TEST_KUBECONFIG"


class Target:
    """What the end-to-end tests ask of a cluster, emulated or real."""

    emulated: bool
    kubeconfig: Path
    context: str
    namespace: str
    registry: str
    """Registry and prefix the docker builder pushes to (the cluster pulls from it)."""
    image: str
    """An image with ``python3`` the cluster can pull: what ``command_job`` runs."""

    def job(self, name: str) -> dict[str, Any] | None:
        """The Job ``name`` in :attr:`namespace`, or None."""
        raise NotImplementedError

    def pods(self, job_id: str) -> list[dict[str, Any]]:
        """The pods of a launchplane job (by its label), as dicts."""
        raise NotImplementedError

    async def release(self, pod: dict[str, Any]) -> None:
        """``touch /tmp/go`` in the pod's container: the test scripts wait for that file."""
        raise NotImplementedError

    def running(self, job_id: str) -> bool:
        """Whether a container of the job still runs."""
        raise NotImplementedError

    async def eventually(
        self, check: Callable[[], Any], timeout: float = 60, what: str = "the cluster"
    ) -> Any:
        """Poll ``check()`` (sync) until it is truthy; a real cluster's garbage collector lags."""
        with anyio.move_on_after(timeout):
            while True:
                value = await anyio.to_thread.run_sync(check)
                if value:
                    return value
                await anyio.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


@dataclass
class EmulatorTarget(Target):
    """kmock's emulator and k8skit's pod controller, pods on the local Docker engine."""

    cluster: Cluster
    emulated = True
    context = "kmock"
    namespace = EMULATOR_NAMESPACE
    registry = f"{EMULATOR_REGISTRY}/lptest"
    image = DOCKER_BASE_IMAGE

    @property
    def kubeconfig(self) -> Path:  # type: ignore[override]
        return self.cluster.kubeconfig

    def job(self, name: str) -> dict[str, Any] | None:
        return self.cluster.emulator.get("batch/v1/jobs", self.namespace, name)

    def pods(self, job_id: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.cluster.emulator.list("v1/pods", self.namespace)
            if p["metadata"]["labels"].get(JOB_LABEL) == job_id
        ]

    def _containers(self, prefix: str) -> list[Any]:
        docker = self.cluster.controller.docker
        return docker.containers.list(filters={"name": f"k8skit-{prefix}"})

    async def release(self, pod: dict[str, Any]) -> None:
        (container,) = self._containers(pod["metadata"]["name"])
        await anyio.to_thread.run_sync(lambda: container.exec_run(["touch", "/tmp/go"]))

    def running(self, job_id: str) -> bool:
        return bool(self._containers(f"lp-{job_id}-"))


class ClusterTarget(Target):
    """A real cluster through ``LAUNCHPLANE_TEST_KUBECONFIG`` (the ``cluster`` suite)."""

    emulated = False

    def __init__(self, kubeconfig: Path, context: str | None) -> None:
        import kubernetes

        _, current = kubernetes.config.list_kube_config_contexts(str(kubeconfig))
        self.kubeconfig = kubeconfig
        self.context = context or current["name"]
        self.namespace = os.environ.get("LAUNCHPLANE_TEST_CLUSTER_NAMESPACE", "launchplane-test")
        registry = os.environ.get("LAUNCHPLANE_TEST_CLUSTER_REGISTRY")
        if not registry:
            pytest.fail(
                "LAUNCHPLANE_TEST_CLUSTER_REGISTRY is needed with LAUNCHPLANE_TEST_KUBECONFIG: "
                "a registry this host pushes to and the cluster pulls from"
            )
        self.registry = registry.rstrip("/")
        self.image = os.environ.get("LAUNCHPLANE_TEST_CLUSTER_IMAGE") or self._push_base_image()
        api = kubernetes.config.new_client_from_config(str(kubeconfig), context=self.context)
        self._api = api
        self._core = kubernetes.client.CoreV1Api(api)
        self._batch = kubernetes.client.BatchV1Api(api)
        self._ensure_namespace()

    def _push_base_image(self) -> str:
        """The test base image, tagged into the cluster's registry and pushed there."""
        from kit import require_docker

        docker = require_docker()
        repository = f"{self.registry}/python-base"
        docker.images.get(DOCKER_BASE_IMAGE).tag(repository, "bookworm")
        for status in docker.images.push(repository, "bookworm", stream=True, decode=True):
            if "error" in status:
                pytest.fail(f"cannot push the base image to {repository}: {status['error']}")
        return f"{repository}:bookworm"

    def _ensure_namespace(self) -> None:
        import kubernetes

        try:
            self._core.read_namespace(self.namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
            body = {"metadata": {"name": self.namespace}}
            self._core.create_namespace(body)

    def _dict(self, obj: Any) -> dict[str, Any]:
        return self._api.sanitize_for_serialization(obj)

    def job(self, name: str) -> dict[str, Any] | None:
        import kubernetes

        try:
            return self._dict(self._batch.read_namespaced_job(name, self.namespace))
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pods(self, job_id: str) -> list[dict[str, Any]]:
        listed = self._core.list_namespaced_pod(
            self.namespace, label_selector=f"{JOB_LABEL}={job_id}"
        )
        return [self._dict(p) for p in listed.items]

    async def release(self, pod: dict[str, Any]) -> None:
        from kubernetes.stream import stream

        def touch() -> None:
            stream(
                self._core.connect_get_namespaced_pod_exec,
                pod["metadata"]["name"],
                self.namespace,
                command=["touch", "/tmp/go"],
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
            )

        await anyio.to_thread.run_sync(touch)

    def running(self, job_id: str) -> bool:
        for pod in self.pods(job_id):
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                if "running" in (status.get("state") or {}):
                    return True
        return False


@contextlib.asynccontextmanager
async def emulated_cluster(
    tmp_path: Path, docker: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Cluster]:
    """A fresh emulator + controller; ``$KUBECONFIG`` points this process's clients at it."""
    async with cluster(tmp_path, docker) as running:
        monkeypatch.setenv("KUBECONFIG", str(running.kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.delenv("LAUNCHPLANE_KUBE_CONTEXT", raising=False)
        yield running


@pytest.fixture(params=["emulator", pytest.param("cluster", marks=pytest.mark.cluster)])
async def target(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    k8s_docker: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Target]:
    """The cluster of one end-to-end test; ``$KUBECONFIG`` points the agent's client at it."""
    if request.param == "emulator":
        async with emulated_cluster(tmp_path, k8s_docker, monkeypatch) as running:
            yield EmulatorTarget(running)
        return
    path = os.environ.get(KUBECONFIG_ENV)
    if not path:
        pytest.skip(f"set {KUBECONFIG_ENV} (a real cluster's kubeconfig) to run the cluster suite")
    real = ClusterTarget(Path(path), os.environ.get("LAUNCHPLANE_TEST_KUBE_CONTEXT"))
    monkeypatch.setenv("KUBECONFIG", str(real.kubeconfig))
    monkeypatch.setenv("LAUNCHPLANE_KUBE_CONTEXT", real.context)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield real

"""Fixtures for the Kubernetes tests: kmock's API emulator on loopback and the pod controller.

``kube`` is the emulator (extended in ``k8skit``) plus a kubeconfig the real
``kubernetes`` client reads and a test-side controller that runs pods on the
real Docker engine (skipped locally, failing in CI, without one). ``kube_api``
is the emulator alone, for tests that need no pods to run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from k8skit import Cluster, cleanup_containers, cluster
from kit import require_docker


@pytest.fixture(scope="session")
def k8s_docker() -> Iterator[Any]:
    """The Docker engine the controller runs pods on; removes its containers at the end."""
    client = require_docker()
    try:
        yield client
    finally:
        cleanup_containers(client)


@pytest.fixture
async def kube(
    tmp_path: Path, k8s_docker: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Cluster]:
    """A fresh emulator + controller; ``$KUBECONFIG`` points this process's clients at it."""
    async with cluster(tmp_path, k8s_docker) as running:
        monkeypatch.setenv("KUBECONFIG", str(running.kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.delenv("LAUNCHPLANE_KUBE_CONTEXT", raising=False)
        yield running

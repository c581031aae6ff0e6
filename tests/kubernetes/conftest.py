"""Fixtures for the Kubernetes tests: kmock's API emulator on loopback and the pod controller.

``kube`` is the emulator (extended in ``k8skit``) plus a kubeconfig the real
``kubernetes`` client reads and a test-side controller that runs pods on the
real Docker engine (skipped locally, failing in CI, without one). ``kube_api``
is the emulator alone, for tests that need no pods to run. ``target``
(``targets.py``) is what the end-to-end tests run on: ``kube``, or a real
cluster when ``LAUNCHPLANE_TEST_KUBECONFIG`` is set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from k8skit import Cluster, cleanup_containers
from kit import require_docker
from targets import emulated_cluster, target

__all__ = ["target"]  # the end-to-end tests' fixture: the emulator, or a real cluster


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
    async with emulated_cluster(tmp_path, k8s_docker, monkeypatch) as running:
        yield running

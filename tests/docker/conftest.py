"""Fixtures for tests against a real Docker engine (scripts/services/docker.sh starts one).

Without an engine (or docker-py, or the base image) these tests skip locally
and fail in CI (``LAUNCHPLANE_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from dockerkit import (
    BASE_IMAGE,
    REGISTRY,
    Log,
    cleanup,
    context,
    job_spec,
    make_app,
    registry_up,
)
from kit import DOCKER_HINT, require_docker, require_service

from launchplane.core.interfaces import Image
from launchplane.plugins.builders.docker import BASE_IMAGE_ENV, DockerBuilder


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    """The docker-py client of the running engine; cleans up what the tests made."""
    client = require_docker()
    try:
        yield client
    finally:
        cleanup(client)


@pytest.fixture
def docker(engine: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The engine, with the default base image pointed at the local one (no registry pulls)."""
    monkeypatch.setenv(BASE_IMAGE_ENV, BASE_IMAGE)
    return engine


@pytest.fixture
def registry(engine: Any) -> str:
    """``<registry>/lptest``: where push tests put their images."""
    require_service(f"Docker registry on {REGISTRY}", registry_up(), DOCKER_HINT)
    return f"{REGISTRY}/lptest"


@pytest.fixture(scope="session")
def hello_image(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """examples/hello built once per session by the docker builder (a generated Dockerfile)."""
    tmp = tmp_path_factory.mktemp("hello-image")
    app = make_app(tmp / "hello")
    job = job_spec("hello", workdir=str(app), entry_point="train.py")
    image = anyio.run(DockerBuilder().build, job, context(tmp, "hello-build", log=Log()))
    assert image is not None
    return image

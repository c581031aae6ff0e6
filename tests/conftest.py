"""Shared test fixtures.

Tests run real components: the queue server on a random loopback port, real
agent processes, real child processes. A test that needs an external service
(Docker engine, PostgreSQL) skips locally when it is missing, but fails in CI:
``.ci/run`` sets ``LAUNCHPLANE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def require_service(name: str, available: bool, why: str = "") -> None:
    """Skip (locally) or fail (in CI) when an external service is missing."""
    if available:
        return
    message = f"{name} is not available{': ' + why if why else ''}"
    if os.environ.get("LAUNCHPLANE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (LAUNCHPLANE_REQUIRE_SERVICES=1: CI must provide it)")
    pytest.skip(message)

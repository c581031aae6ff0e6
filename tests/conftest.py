"""Shared test fixtures.

Tests run real components: the queue server on a random loopback port, real
agent processes, real child processes. A test that needs an external service
(Docker engine, PostgreSQL) skips locally when it is missing, but fails in CI
(``kit.require_service``).

Each test directory defines its own ``server`` fixture (its queues, its
sweeper, its backend); the clients below talk to whichever one the test's
directory has, so they are written once here. Helpers are in tests/kit.py:
never import from a conftest.py (see kit's docstring).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from kit import AWS_TEST_ENV, QUEUE, agent_client, moto_server

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(server: EmbeddedServer) -> AsyncIterator[LaunchplaneClient]:
    """The admin's client (with the client's default retries, as users have them)."""
    async with LaunchplaneClient(server.url, server.admin_token) as admin:
        yield admin


@pytest.fixture
async def submitter(server: EmbeddedServer) -> AsyncIterator[LaunchplaneClient]:
    """A submitter's client without retries, so that tests see every answer."""
    token = await server.create_token("submitter", name="tests")
    async with LaunchplaneClient(server.url, token, retries=0) as client:
        yield client


@pytest.fixture
async def agent(server: EmbeddedServer) -> AsyncIterator[LaunchplaneClient]:
    """An agent's client for ``kit.QUEUE``, which the server and store suites' servers have."""
    async with await agent_client(server, [QUEUE]) as client:
        yield client


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """One moto server for the session (tests use unique resource names)."""
    with moto_server() as url:
        yield url


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's AWS configuration pointed at moto: what a subprocess agent gets too.

    Returns the variables, for ``kit.subprocess_env(**aws_env)``. Any profile or
    config file of the machine is hidden, so a test can never reach a real account.
    """
    env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_url}
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {**env, "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}

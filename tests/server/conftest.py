"""Fixtures for queue server tests: a real server on a random loopback port, in this loop.

The sweeper runs every 50 ms so lease expiry tests take a fraction of a second.
The ``submitter`` and ``agent`` clients are tests/conftest.py's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from kit import QUEUE

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.settings import ServerSettings


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    settings = ServerSettings(data_dir=tmp_path / "data", sweep_interval=0.05)
    async with EmbeddedServer(settings=settings) as srv:
        await srv.ensure_queue(QUEUE, {"resource": "local-process"})
        yield srv


@pytest.fixture
async def admin(server: EmbeddedServer) -> AsyncIterator[LaunchplaneClient]:
    async with LaunchplaneClient(server.url, server.admin_token, retries=0) as client:
        yield client


@pytest.fixture
async def http(server: EmbeddedServer) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client for what the typed client cannot send (bad bodies, no token)."""
    async with httpx.AsyncClient(base_url=server.url + "/api/v1") as client:
        yield client

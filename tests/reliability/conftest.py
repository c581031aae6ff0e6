"""Fixtures for the reliability tests: a real queue server on a loopback port, in this loop.

The sweeper runs every 100 ms, so a lost lease is re-queued within its TTL +
0.1 s; queues use TTLs of a few seconds so that chaos tests stay short. The
admin's ``client`` is tests/conftest.py's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from chaoskit import SWEEP_SECONDS

from launchplane.server.embedded import EmbeddedServer
from launchplane.server.settings import ServerSettings


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    settings = ServerSettings(data_dir=tmp_path / "server", sweep_interval=SWEEP_SECONDS)
    async with EmbeddedServer(settings=settings) as srv:
        yield srv

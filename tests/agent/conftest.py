"""Fixtures for agent tests: a real queue server on a loopback port (helpers: agentkit, kit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agentkit import FAST_QUEUE, QUEUE

from launchplane.server.embedded import EmbeddedServer


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        await srv.ensure_queue(QUEUE, FAST_QUEUE)
        yield srv

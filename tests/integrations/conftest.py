"""Fixtures of the integration tests: a real queue server on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from launchplane.server.embedded import EmbeddedServer


@pytest.fixture
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path_factory.mktemp("server")) as srv:
        yield srv

"""The W&B integration on the docker runner: a real engine, server and agent.

The test image has no ``wandb`` package (no index reachable from a build here),
so the job does what ``wandb.init()`` in offline mode does with the variables it
is given: it writes ``$WANDB_DIR/wandb/offline-run-<time>-$WANDB_RUN_ID``. The
real SDK's own use of these variables is tested on the local-process runner
(tests/integrations/test_wandb_integration.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dockerkit import BASE_IMAGE
from kit import log_lines, running_agent, wait_for_state

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

QUEUE = "docker-wandb"
OFFLINE_RUN = (
    'echo "dir $WANDB_DIR"; mkdir -p "$WANDB_DIR/wandb/offline-run-20261203_120000-$WANDB_RUN_ID"'
)


@pytest.fixture
async def server(tmp_path: Path, docker: Any) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        await srv.ensure_queue(
            QUEUE,
            {
                "resource": "docker",
                "lease_ttl_seconds": 30,
                "integrations": {"wandb": {"project": "lp-mnist", "mode": "offline"}},
            },
        )
        yield srv


async def test_an_offline_run_in_a_container_lands_in_the_output_dir_and_the_record(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(
            QUEUE, {"docker": {"image": BASE_IMAGE}, "command": ["sh", "-c", OFFLINE_RUN]}
        )
        done = await wait_for_state(client, job["id"], timeout=60)
        record = await client.get_record(job["id"])

    assert done["state"] == "succeeded", done
    assert "dir /launchplane/output" in await log_lines(client, job["id"])
    run_id = f"{job['id']}-1"
    assert record["integrations"]["wandb"]["offline_run_dirs"] == [
        f"output/wandb/offline-run-20261203_120000-{run_id}"
    ]
    assert (tmp_path / "work" / run_id / "output" / "wandb").is_dir()

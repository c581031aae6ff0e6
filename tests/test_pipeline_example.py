"""examples/pipeline end to end: preprocess -> processed-dataset -> train, then reproduce.

A real server and agent on loopback (local-process runner, the ``file`` store
in a tmp directory instead of the example's ``~/.local/share`` one); jobs are
submitted and reproduced with the ``launchplane`` command, as the example's
README does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from kit import LAUNCHPLANE, log_lines, running_agent, subprocess_env, wait_for_state

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pipeline"
QUEUE = "pipeline"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    config = yaml.safe_load((EXAMPLE / "queue.yaml").read_text())
    config["artifact_store"]["options"]["root"] = str(tmp_path / "store")
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        await srv.ensure_queue(QUEUE, config)
        yield srv


async def launchplane(server: EmbeddedServer, *args: str) -> dict[str, Any]:
    """``launchplane ARGS --json`` as a real process: its JSON answer."""
    argv = [LAUNCHPLANE, *args, "--server", server.url, "--token", server.admin_token, "--json"]
    done = await anyio.run_process(argv, env=subprocess_env(), check=False)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


async def finished(client: LaunchplaneClient, job_id: str) -> tuple[dict[str, Any], str]:
    """The record of a succeeded job and its last log line (the result it printed)."""
    job = await wait_for_state(client, job_id, timeout=120)
    record = await client.get_record(job_id)
    assert job["state"] == "succeeded", record["result"]
    return record, (await log_lines(client, job_id))[-1]


async def test_train_pins_the_dataset_version_and_reproduce_trains_on_it_again(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    preprocess, train = str(EXAMPLE / "preprocess.yaml"), str(EXAMPLE / "train.yaml")
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        made = await launchplane(server, "submit", preprocess, "-q", QUEUE)
        pre, _ = await finished(client, made["id"])
        [output] = pre["artifacts"]["outputs"]
        assert (output["name"], output["version"], output["aliases"]) == (
            "processed-dataset",
            "v0",
            ["latest"],
        )

        first = await launchplane(server, "submit", train, "-q", QUEUE)
        trained, result = await finished(client, first["id"])
        [pinned] = trained["artifacts"]["inputs"]
        assert (pinned["alias"], pinned["version"]) == ("latest", "v0")
        assert pinned["digest"] == output["digest"]
        assert result.startswith("final loss ")

        # The dataset changes: latest moves to v1, and a new train run uses it ...
        changed = await launchplane(
            server, "submit", preprocess, "-q", QUEUE, "--set", "hyperparameters.samples=500"
        )
        await finished(client, changed["id"])
        second = await launchplane(server, "submit", train, "-q", QUEUE)
        retrained, other = await finished(client, second["id"])
        assert retrained["artifacts"]["inputs"][0]["version"] == "v1"
        assert other != result

        # ... but reproducing the first train run trains on v0 again: same result, same hash.
        again = await launchplane(server, "reproduce", first["id"])
        reproduced, same = await finished(client, again["submitted"]["id"])
    assert reproduced["artifacts"]["inputs"][0]["version"] == "v0"
    assert reproduced["artifacts"]["inputs"][0]["digest"] == output["digest"]
    assert same == result
    assert reproduced["spec_hash"] == trained["spec_hash"]
    assert reproduced["spec_hash"] != retrained["spec_hash"]

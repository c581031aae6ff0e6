"""Input artifacts in a container: a real engine, server, agent and ``file`` store.

The agent's cache entry is bind-mounted read-only: the job reads it through
its variable, and its write there fails (even as root in the container).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dockerkit import BASE_IMAGE, job_spec
from kit import log_lines, running_agent, wait_for_state

from launchplane.core.client import LaunchplaneClient
from launchplane.core.interfaces import Image, PluginError
from launchplane.plugins.artifacts.file import FileArtifactStore, FileStoreOptions
from launchplane.plugins.runners.docker import DockerRunner
from launchplane.server.embedded import EmbeddedServer

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

QUEUE = "docker-artifacts"
READ_AND_WRITE = (
    'cat "$LAUNCHPLANE_ARTIFACT_DATASET/data.txt"; echo; echo "at $LAUNCHPLANE_ARTIFACT_DATASET"; '
    'if echo x > "$LAUNCHPLANE_ARTIFACT_DATASET/data.txt"; then echo writable; '
    "else echo read-only; fi; "
    'cp "$LAUNCHPLANE_ARTIFACT_DATASET/data.txt" "$LAUNCHPLANE_OUTPUT_DIR/copy.txt"'
)


@pytest.fixture
async def server(tmp_path: Path, docker: Any) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        await srv.ensure_queue(
            QUEUE,
            {
                "resource": "docker",
                "lease_ttl_seconds": 30,
                "artifact_store": {"type": "file", "options": {"root": str(tmp_path / "store")}},
            },
        )
        yield srv


async def test_the_input_is_a_readable_read_only_mount_and_outputs_come_back(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    store = FileArtifactStore(FileStoreOptions(root=tmp_path / "store"))
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "data.txt").write_text("rows 1-100")
    version = await store.upload(seed, "dataset")
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(
            QUEUE,
            {
                "docker": {"image": BASE_IMAGE},
                "command": ["sh", "-c", READ_AND_WRITE],
                "input_artifacts": ["dataset"],
                "output_artifacts": [{"name": "copied", "path": "copy.txt"}],
            },
        )
        done = await wait_for_state(client, job["id"], timeout=60)
        record = await client.get_record(job["id"])

    assert done["state"] == "succeeded", done
    lines = await log_lines(client, job["id"])
    assert "rows 1-100" in lines
    assert "at /launchplane/artifacts/dataset" in lines
    assert "read-only" in lines and "writable" not in lines
    assert record["artifacts"]["inputs"][0]["digest"] == version.digest
    copied = await store.resolve("copied")
    assert record["artifacts"]["outputs"][0]["digest"] == copied.digest
    assert copied.size == len("rows 1-100")


def test_describe_shows_the_read_only_mount_and_its_variable() -> None:
    job = job_spec(
        "describe",
        input_artifacts=[{"name": "dataset", "alias": "v2", "path": "/data/train"}, "tok"],
        artifact_store={"type": "file", "options": {"root": "/mnt/a"}},
    )
    shown = DockerRunner().describe(job, Image(ref=BASE_IMAGE))
    assert "<agent artifact cache>/dataset:/data/train:ro" in shown["volumes"]
    assert "<agent artifact cache>/tok:/launchplane/artifacts/tok:ro" in shown["volumes"]
    assert {"LAUNCHPLANE_ARTIFACT_DATASET", "LAUNCHPLANE_ARTIFACT_TOK"} <= set(
        shown["environment"]["names"]
    )


def test_a_uri_input_the_runner_cannot_read_is_refused() -> None:
    job = job_spec("uri", input_artifacts=["s3://bucket/data"])
    with pytest.raises(PluginError, match="runner 'docker' cannot read a URI input"):
        DockerRunner().describe(job, Image(ref=BASE_IMAGE))

"""Many submits with one Idempotency-Key, at the same time, through the paths users take.

50 concurrent ``launchplane.asubmit`` calls (each its own client and
connection) and 6 concurrent ``launchplane submit --idempotency-key``
processes race on one key: exactly one job exists afterwards and every caller
got its id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from chaoskit import BIN, subprocess_env

import launchplane
from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

QUEUE = "idem"
SUBMITS = 50
CLI_SUBMITS = 6


async def test_concurrent_submits_with_one_key_make_one_job(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    await server.ensure_queue(QUEUE, {"resource": "local-process"})
    token = await server.create_token("submitter", name="racer")
    job_file = tmp_path / "job.yaml"
    job_file.write_text(f"queue: {QUEUE}\ncommand: [echo, once]\n")
    key = "nightly-2024-06-01"
    answers: list[dict[str, Any]] = []

    async def python_api(n: int) -> None:
        answers.append(
            await launchplane.asubmit(
                {"command": ["echo", "once"], "name": f"racer-{n}"},
                queue=QUEUE,
                server=server.url,
                token=token,
                idempotency_key=key,
            )
        )

    command = [str(BIN / "launchplane"), "submit", str(job_file), "--json"]
    command += ["--idempotency-key", key, "--server", server.url, "--token", token]

    async def cli() -> None:
        result = await anyio.run_process(
            command,
            env=subprocess_env(),
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
        answers.append(json.loads(result.stdout))

    async with anyio.create_task_group() as racers:
        for _ in range(CLI_SUBMITS):
            racers.start_soon(cli)
        for n in range(SUBMITS):
            racers.start_soon(python_api, n)

    assert len(answers) == SUBMITS + CLI_SUBMITS
    ids = {answer["id"] for answer in answers}
    assert len(ids) == 1, f"{len(ids)} jobs for one key"
    jobs = await client.list_jobs(QUEUE)
    assert [job["id"] for job in jobs] == list(ids)

    # The key is the token's: another submitter with the same key gets its own job.
    other = await server.create_token("submitter", name="other")
    again = await launchplane.asubmit(
        {"command": ["echo"]}, queue=QUEUE, server=server.url, token=other, idempotency_key=key
    )
    assert again["id"] not in ids


def test_asubmit_is_public() -> None:
    assert "asubmit" in launchplane.__all__
    assert launchplane.asubmit.__module__ == "launchplane.core.client"

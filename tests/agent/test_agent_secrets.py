"""A planted secret never leaves the job: not in logs, records, API answers or agent logs."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest
from agentkit import QUEUE, agent_process, b64
from kit import log_lines, subprocess_env, wait_for_state

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

SECRET = "pl4nted-S3cret-Zq81-value"
SHOUT = (
    'echo "token is $TOKEN"; printf %s "$TOKEN" | base64; echo "stderr $TOKEN" >&2; '
    "python3 -c 'import hashlib, os; "
    'print(hashlib.sha256(os.environ["TOKEN"].encode()).hexdigest())\''
)


async def every_get_response(server: EmbeddedServer, job_ids: list[str]) -> dict[str, str]:
    """The body of every GET endpoint the server publishes, for each job and the queue."""
    bodies: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        spec = (await http.get("/api/v1/openapi.json")).json()
        for template, methods in spec["paths"].items():
            if "get" not in methods:
                continue
            names = re.findall(r"{(\w+)}", template)
            ids = job_ids if any("id" in name for name in names) else [""]
            for job_id in ids:
                url = re.sub(r"{\w*id\w*}", job_id, template)
                url = re.sub(r"{\w+}", QUEUE, url)
                path = url if url.startswith("/api/v1") else "/api/v1" + url
                response = await http.get(path)
                bodies[path] = response.text
    return bodies


async def test_planted_secret_never_appears_anywhere(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    await server.ensure_queue(
        QUEUE,
        {
            "resource": "local-process",
            "lease_ttl_seconds": 3,
            "secrets": {"TOKEN": "env:PLANTED_SECRET"},
        },
    )
    env = subprocess_env(PLANTED_SECRET=SECRET)
    async with agent_process(server, tmp_path, "--log-level", "debug", env=env):
        ok = await client.submit_job(QUEUE, {"command": ["sh", "-c", SHOUT]})
        bad = await client.submit_job(
            QUEUE, {"command": ["sh", "-c", 'echo "fatal: bad token $TOKEN"; exit 4']}
        )
        ok_job = await wait_for_state(client, ok["id"])
        bad_job = await wait_for_state(client, bad["id"])

    # The job did get the real value...
    lines = await log_lines(client, ok["id"])
    assert hashlib.sha256(SECRET.encode()).hexdigest() in lines
    assert ok_job["state"] == "succeeded"
    # ...and printed it, raw and base64-encoded, but the log holds only the mask.
    assert "token is ***" in lines and "stderr ***" in lines
    assert bad_job["state"] == "failed" and "fatal: bad token ***" in bad_job["reason"]

    forbidden = [SECRET, b64(SECRET), b64(SECRET).rstrip("=")]
    places = await every_get_response(server, [ok["id"], bad["id"]])
    assert any("/record" in path for path in places) and any("/logs" in path for path in places)
    for run_dir in (tmp_path / "work").iterdir():
        if run_dir.is_dir() and not run_dir.name.startswith("."):  # .leases: below
            places[str(run_dir / "record.json")] = (run_dir / "record.json").read_text()
    for kept in (tmp_path / "work" / ".leases").glob("*.json"):  # a lease still kept
        places[str(kept)] = kept.read_text()
    places["agent log"] = (tmp_path / "agent.log").read_text()
    assert "job " in places["agent log"]  # the agent did log at debug level
    for where, text in places.items():
        for value in forbidden:
            assert value not in text, f"secret leaked in {where}"

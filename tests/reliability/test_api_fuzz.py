"""Property-based fuzzing of the whole API from its OpenAPI document: no input makes a 5xx.

Schemathesis generates requests for every operation of the served document -
valid ones (positive) and ones that break the schema (negative), JSON and YAML
bodies alike - and sends them, as an admin, to a live server on loopback.
Operations with path parameters run a second time against real entities (a
queue, a job, a lease), so the generated bodies get past the 404 and reach
validation and the store. Every answer must be below 500, and every error
must be in the API's error format.

Bounded and deterministic: ``derandomize`` fixes the examples,
``FUZZ_EXAMPLES`` (default 25) caps them per operation and mode. Set
``LAUNCHPLANE_FUZZ_EXAMPLES=300`` for a deeper local run.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from launchplane.core.client import LaunchplaneClient
from launchplane.server.bodies import YAML_MEDIA_TYPES
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.settings import ServerSettings

FUZZ_EXAMPLES = int(os.environ.get("LAUNCHPLANE_FUZZ_EXAMPLES", "25"))
QUEUE = "fuzz"


class ThreadServer:
    """A real server in a thread of its own, for a synchronous HTTP client in the test thread."""

    def __init__(self, data_dir: Path) -> None:
        # Long-polls capped at 0.2 s: a generated ``wait=1e9`` must not stall the run.
        self.settings = ServerSettings(data_dir=data_dir, sweep_interval=0.1, max_wait_seconds=0.2)
        self.url = ""
        self.token = ""
        self.entities: dict[str, str] = {}
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=anyio.run, args=(self._serve,), daemon=True)

    def __enter__(self) -> ThreadServer:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the fuzz server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _serve(self) -> None:
        async with EmbeddedServer(settings=self.settings) as server:
            await server.ensure_queue(QUEUE, {"resource": "local-process"})
            async with LaunchplaneClient(server.url, server.admin_token) as admin:
                job = await admin.submit_job(QUEUE, {"command": ["true"]})
                await admin.submit_job(QUEUE, {"command": ["true"]})
                lease = await admin.claim(QUEUE, "fuzz-agent", wait=1)
                token = await admin.create_token("submitter", name="fuzz-victim")
            assert lease is not None
            self.entities = {
                "name": QUEUE,
                "job_id": job["id"],
                "lease_id": lease.lease_id,
                "token_id": str(token["id"]),
            }
            self.url, self.token = server.url, server.admin_token
            self._ready.set()
            await anyio.to_thread.run_sync(self._stop.wait)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[ThreadServer]:
    with ThreadServer(tmp_path / "server") as server:
        yield server


def test_no_generated_request_gets_a_server_error(live_server: ThreadServer) -> None:
    schema = schemathesis.openapi.from_url(live_server.url + "/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {live_server.token}"}
    problems: list[str] = []
    sent = 0
    yaml_bodies = 0

    def check(case: Any) -> None:
        nonlocal sent, yaml_bodies
        sent += 1
        if case.media_type in YAML_MEDIA_TYPES:
            yaml_bodies += 1
        response = case.call(base_url=live_server.url, headers=headers, timeout=10)
        where = f"{case.operation.label}: {response.status_code} for {case.as_curl_command()}"
        if response.status_code >= 500:
            problems.append(where)
        elif response.status_code >= 400:
            detail = response.json().get("detail")
            if not (isinstance(detail, dict) and isinstance(detail.get("message"), str)):
                problems.append(f"{where}: not in the error format: {response.text[:200]}")

    for result in schema.get_all_operations():
        operation = result.ok()
        known = {
            parameter.name: live_server.entities[parameter.name]
            for parameter in operation.path_parameters
        }
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for fixed in ({}, known) if known else ({},):
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)

                @settings(
                    max_examples=FUZZ_EXAMPLES,
                    derandomize=True,
                    deadline=None,
                    database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=strategy)
                def fuzz(case: Any) -> None:
                    check(case)

                with contextlib.suppress(Unsatisfiable):  # GET /health: no input to break
                    fuzz()

    print(
        f"\nfuzzed {sent} requests ({yaml_bodies} with YAML bodies), "
        f"{FUZZ_EXAMPLES} examples per operation and mode"
    )
    assert sent > 500
    assert yaml_bodies > 50, "the YAML alternative of the body routes was not fuzzed"
    assert not problems, "\n".join(problems[:20])

"""A re-adopted run's record is as complete as that of a run its agent saw through.

The agent that launches a workload keeps what the record knows (code, image,
builder, variable names, stage times) in ``<run dir>/launch.json``; an agent
killed with SIGKILL and started again with the same id re-adopts the run
(the ``detached-process`` test runner) and writes its record from that file.
Without the file (or with a corrupt one) the run is still completed.
"""

from __future__ import annotations

import json
import subprocess
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path

import pytest
from chaoskit import (
    HERE,
    AgentProcess,
    agent_process,
    agent_token,
    eventually,
    pythonpath,
    subprocess_env,
    wait_for_line,
    wait_for_state,
)

from launchplane.agent.records import STAGES
from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

LONG_TTL = 30.0
"""Far longer than a test takes: nothing here may wait for a lease to expire."""
SECRET = "readopt-secret-value-0123456789"
IMAGE = "registry.example.invalid/team/app:1"
LAUNCHED = ("code", "image", "builder", "runner", "environment")
"""The record's fields that the launching agent learned and a re-adopting one cannot."""


def dirty_repo(path: Path) -> str:
    """A git work tree with an uncommitted change; returns its HEAD."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(path), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    path.mkdir()
    git("init", "--quiet")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (path / "main.py").write_text("print('v1')\n")
    git("add", ".")
    git("commit", "--quiet", "-m", "v1")
    (path / "main.py").write_text("print('v2, uncommitted')\n")
    return git("rev-parse", "HEAD")


class Scenario:
    """A detached-process queue with env, a secret and an image; agents ``box-r`` in turn."""

    def __init__(self, server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path) -> None:
        self.server = server
        self.client = client
        self.queue = "detached-record"
        self.work = tmp_path / "work"
        self.go = tmp_path / "go"
        self.repo = tmp_path / "code"
        self.head = dirty_repo(self.repo)
        self.env = subprocess_env(
            PYTHONPATH=pythonpath(HERE),
            DETACHED_RUNNER_DIR=str(tmp_path / "runs"),
            READOPT_SECRET=SECRET,
        )
        self.token = ""

    async def setup(self) -> None:
        config = {
            "resource": "detached-process",
            "lease_ttl_seconds": LONG_TTL,
            "env": {"RUN_LABEL": "r-${run_id}"},
            "secrets": {"TOKEN": "env:READOPT_SECRET"},
        }
        await self.server.ensure_queue(self.queue, config)
        self.token = await agent_token(self.client, [self.queue])

    def agent(self, log_name: str) -> AbstractAsyncContextManager[AgentProcess]:
        return agent_process(
            self.server.url,
            self.token,
            self.work,
            agent_id="box-r",
            queues=[self.queue],
            args=["--plugins", "detached_runner"],
            env=self.env,
            log_name=log_name,
        )

    async def submit(self) -> str:
        script = (
            f"echo start; while [ ! -e {self.go} ]; do sleep 0.05; done; "
            'echo "token=$TOKEN"; echo done'
        )
        job = {
            "workdir": str(self.repo),
            "command": ["sh", "-c", script],
            "docker": {"image": IMAGE},
        }
        return (await self.client.submit_job(self.queue, job))["id"]

    async def started(self, job_id: str) -> Path:
        """Wait until the job's first line is stored (and noted); its run directory."""
        await wait_for_line(self.client, job_id, lambda line: line == "start")
        run_dir = self.work / f"{job_id}-1"

        async def noted() -> bool:
            return (run_dir / "logged-lines").exists()

        await eventually(noted, 10, "the logged-lines count")
        return run_dir


def seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


async def test_readopted_run_has_the_record_of_a_normal_run(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    scenario = Scenario(server, client, tmp_path)
    await scenario.setup()

    async with scenario.agent("first.log") as first:
        adopted_id = await scenario.submit()
        run_dir = await scenario.started(adopted_id)
        await first.kill()
    killed_at = datetime.now().timestamp()
    facts = (run_dir / "launch.json").read_text()

    async with scenario.agent("second.log") as second:
        await second.wait_log(f"job {adopted_id}: re-adopted")
        scenario.go.touch()
        adopted_job = await wait_for_state(client, adopted_id, timeout=20)
        normal_id = await scenario.submit()  # the same job, seen through by one agent
        normal_job = await wait_for_state(client, normal_id, timeout=20)
        assert "without its launch facts" not in second.log()

    assert (adopted_job["state"], adopted_job["attempt"]) == ("succeeded", 1)
    assert normal_job["state"] == "succeeded"
    adopted = await client.get_record(adopted_id)
    normal = await client.get_record(normal_id)
    assert {key: adopted[key] for key in LAUNCHED} == {key: normal[key] for key in LAUNCHED}
    assert adopted["code"]["commit"] == scenario.head and adopted["code"]["dirty"] is True
    assert adopted["image"]["ref"] == IMAGE and adopted["builder"] == "noop"
    assert "RUN_LABEL" in adopted["environment"]["env"]
    assert adopted["environment"]["secrets"] == ["TOKEN"]
    assert list(adopted["timestamps"]) == list(STAGES)
    # The stages before the restart keep the first agent's times.
    assert seconds(adopted["timestamps"]["running"]) < killed_at
    assert adopted["timestamps"] == {
        **json.loads(facts)["timestamps"],
        "finished": adopted["timestamps"]["finished"],
    }
    assert SECRET not in facts and SECRET not in json.dumps(adopted)
    # The adopting agent resolved the secret again only to mask the run's output.
    page = await client.read_logs(adopted_id)
    lines = [line["line"] for line in page["lines"]]
    assert "token=***" in lines and not any(SECRET in line for line in lines)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
async def test_readoption_without_launch_facts_still_completes_the_run(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path, damage: str
) -> None:
    scenario = Scenario(server, client, tmp_path)
    await scenario.setup()

    async with scenario.agent("first.log") as first:
        job_id = await scenario.submit()
        run_dir = await scenario.started(job_id)
        await first.kill()
    if damage == "missing":
        (run_dir / "launch.json").unlink()
    else:
        (run_dir / "launch.json").write_text('{"version": 1, "commit": ')

    async with scenario.agent("second.log") as second:
        await second.wait_log(f"job {job_id}: re-adopted")
        scenario.go.touch()
        done = await wait_for_state(client, job_id, timeout=20)
        assert f"job {job_id}: re-adopted without its launch facts" in second.log()

    assert (done["state"], done["attempt"]) == ("succeeded", 1)
    record = await client.get_record(job_id)
    assert record["result"]["state"] == "succeeded"
    assert record["builder"] == "noop"  # known from the job itself
    assert record["code"]["commit"] is None and record["code"]["workdir"] == str(scenario.repo)
    assert record["spec"]["docker"]["image"] == IMAGE

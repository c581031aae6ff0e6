"""``launch-agent`` with W&B's ``wandb launch-agent`` flags and W&B's launch-config.yaml."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from agentkit import FAST_QUEUE, QUEUE, agent_process
from kit import LAUNCH_AGENT, subprocess_env

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

# W&B's documented launch-config.yaml shape (docs: "Set up launch agent"), every key
WANDB_CONFIG = """\
max_jobs: 010
entity: my-team
queues:
  - not-this-one
max_schedulers: 2
builder:
  type: kaniko
  destination: 123456789012.dkr.ecr.us-east-1.amazonaws.com/launch
  platform: linux/amd64
  build-context-store: s3://my-bucket/build-context
  build-job-name: wandb-launch-container-build
  secret-name: kaniko-secret
  secret-key: config.json
  kaniko-image: gcr.io/kaniko-project/executor:latest
registry:
  type: ecr
  uri: 123456789012.dkr.ecr.us-east-1.amazonaws.com/launch
environment:
  type: aws
  region: us-east-1
verbosity: 2
stopped_run_timeout: 3
secure_mode: false
"""


async def test_a_wandb_launch_config_runs_the_agent_and_answers_each_key(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    config = tmp_path / "launch-config.yaml"
    config.write_text(WANDB_CONFIG)
    async with agent_process(server, tmp_path, "-c", str(config), "-e", "other-team") as agent:
        await agent.wait_log("serving queue", timeout=15)
        agent.signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await agent.wait() == 0
    log = agent.log()
    assert f"queue(s) {QUEUE} " in log  # the -q flag wins over the file's queues
    assert "(max 8 jobs" in log  # read as W&B reads it: 010 is eight
    assert (
        f"warning: {config}: max_jobs: read as wandb reads it, 010 is the number 8; "
        "launchplane's own files read the number 10; quote it to say which"
    ) in log
    assert "DEBUG" in log.upper()  # verbosity: 2
    prefix = f"note: {config}: "
    notes = [line for line in log.splitlines() if line.startswith(prefix)]
    assert [line.removeprefix(prefix).split(":")[0] for line in notes] == [
        "entity",
        "max_schedulers",
        "builder.type",
        "builder.destination",
        "builder.platform",
        "builder.build-context-store",
        "builder.build-job-name",
        "builder.secret-name",
        "builder.secret-key",
        "builder.kaniko-image",
        "registry",
        "environment",
    ]
    assert (
        "note: -e/--entity other-team ignored: launchplane queues are not scoped by entity" in log
    )
    assert (
        f"note: {config}: builder.destination: ignored: set it per queue, in the queue config: "
        "builder.options.registry"
    ) in log
    assert "Traceback" not in log


async def test_max_jobs_minus_one_is_no_limit(server: EmbeddedServer, tmp_path: Path) -> None:
    # Six jobs that each wait for a file: all six run at once only without a limit
    # (the default is 4). The sandboxed jobs see the file's directory because the
    # queue lists it in read_only_paths.
    gate = tmp_path / "gate"
    gate.mkdir()
    release = gate / "release"
    local_args = {"local-process": {"read_only_paths": [str(gate)]}}
    await server.ensure_queue(QUEUE, {**FAST_QUEUE, "resource_args": local_args})
    script = f"import os, time\nwhile not os.path.exists({str(release)!r}): time.sleep(0.05)"
    async with LaunchplaneClient(server.url, server.admin_token) as client:
        ids = [
            (await client.submit_job(QUEUE, {"command": [sys.executable, "-c", script]}))["id"]
            for _ in range(6)
        ]
        async with agent_process(server, tmp_path, "-j", "-1") as agent:
            log = await agent.wait_log("serving queue", timeout=15)
            assert "no job limit" in log

            async def all_running() -> bool:
                states = [(await client.get_job(job_id))["state"] for job_id in ids]
                return all(state == "running" for state in states)

            with anyio.fail_after(20):
                while not await all_running():
                    await anyio.sleep(0.1)
            release.touch()
            agent.signal(signal.SIGTERM)
            with anyio.fail_after(20):
                assert await agent.wait() == 0


def run_agent(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(LAUNCHPLANE_HOME=str(tmp_path))
    return subprocess.run(
        [LAUNCH_AGENT, "--token", "t", "--server", "http://127.0.0.1:9", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("config", "args", "expected"),
    [
        (
            "queues: [a]\nsecure_mode: true\n",
            (),
            "secure_mode: launchplane has no agent-side secure mode: lock the fields in each "
            "queue config instead (locked: [entry_point, command, args, docker.image])",
        ),
        ("queues: [a]\nentity: e\nmax_jobs: 0\n", (), "0: must be at least 1, or -1 for no limit"),
        ("queues: [a]\nentity: e\nmax_jobss: 3\n", (), "unknown setting(s) max_jobss"),
        (None, ("-q", "a", "-j", "0"), "0: must be at least 1, or -1 for no limit"),
        (None, ("-q", "a", "-j", "-2"), "-2 is not in the range x>=-1"),
        (None, ("-q", "a", "-l", "agent.log"), "the agent logs to stderr: redirect it instead"),
    ],
)
def test_what_cannot_be_honoured_is_one_clear_line(
    tmp_path: Path, config: str | None, args: tuple[str, ...], expected: str
) -> None:
    if config is not None:
        path = tmp_path / "launch-config.yaml"
        path.write_text(config)
        args = ("-c", str(path), *args)
    done = run_agent(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_help_shows_wandbs_flags() -> None:
    shown = subprocess.run([LAUNCH_AGENT, "--help"], capture_output=True, text=True, check=True)
    for flag in ("-q, --queue", "-j, --max-jobs", "-e, --entity", "-v, --verbose", "-c, --config"):
        assert flag in shown.stdout
    assert "-1: no limit" in shown.stdout

"""The ``launch-agent`` command line: fast help, config files, identity, errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from agentkit import QUEUE, agent_process
from kit import LAUNCH_AGENT, subprocess_env

from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

HEAVY = ("httpx", "pydantic", "anyio", "fastapi", "sqlalchemy", "uvicorn", "yaml")


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    probe = (
        "import json, sys\n"
        "from launchplane.cli import agent_main\n"
        "try:\n    agent_main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "--drain-timeout" in done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []

    script = subprocess.run([LAUNCH_AGENT, "--help"], capture_output=True, text=True)
    assert script.returncode == 0 and "--max-jobs" in script.stdout


async def test_config_file_settings_and_flags_win(server: EmbeddedServer, tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        "queues: [not-this-one]\nmax-jobs: 7\ndrain_timeout: 5\njson_logs: true\n"
        "agent_id: from-config\n"
    )
    async with agent_process(server, tmp_path, "-c", str(config), "--max-jobs", "2") as agent:
        text = await agent.wait_log("serving queue", timeout=10)
        agent.signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await agent.wait() == 0
    records = [json.loads(line) for line in agent.log().splitlines()]  # --json-logs
    serving = next(r["message"] for r in records if "serving queue" in r["message"])
    assert f"queue(s) {QUEUE} " in serving  # the --queue flag replaced the config's list
    assert "max 2 jobs" in serving and "agent from-config " in serving
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert "serving" in text


async def test_second_agent_with_the_same_identity_is_refused(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    async with agent_process(server, tmp_path, "--agent-id", "twin") as first:
        await first.wait_log("serving queue", timeout=10)
        token = await server.create_token("agent", queues=[QUEUE])
        with anyio.fail_after(30):  # the server runs in this loop: never block it
            second = await anyio.run_process(
                [
                    LAUNCH_AGENT,
                    "--server", server.url, "--token", token, "--queue", QUEUE,
                    "--agent-id", "twin", "--work-dir", str(tmp_path / "work"),
                ],
                env=subprocess_env(), check=False,
            )  # fmt: skip
        first.signal(signal.SIGTERM)
        with anyio.fail_after(10):
            await first.wait()
    assert second.returncode == 1
    assert b"another agent with id twin is running" in second.stderr


async def test_refused_token_is_a_clear_error(server: EmbeddedServer, tmp_path: Path) -> None:
    with anyio.fail_after(30):
        done = await anyio.run_process(
            [LAUNCH_AGENT, "--server", server.url, "--token", "wrong", "--queue", QUEUE,
             "--work-dir", str(tmp_path / "work")],
            env=subprocess_env(), check=False,
        )  # fmt: skip
    assert done.returncode == 1
    assert b"the server refused this agent" in done.stderr


def test_missing_queue_and_bad_config_are_usage_errors(tmp_path: Path) -> None:
    env = subprocess_env(LAUNCHPLANE_HOME=str(tmp_path))
    no_queue = subprocess.run(
        [LAUNCH_AGENT, "--token", "t"], capture_output=True, text=True, env=env
    )
    assert no_queue.returncode == 2 and "--queue" in no_queue.stderr

    config = tmp_path / "agent.yaml"
    config.write_text("queues: [a]\nmax_jbos: 3\n")
    bad = subprocess.run(
        [LAUNCH_AGENT, "--token", "t", "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and "max_jbos" in bad.stderr


async def test_unreachable_server_is_retried_not_fatal(tmp_path: Path) -> None:
    with anyio.fail_after(20):
        process = await anyio.open_process(
            [LAUNCH_AGENT, "--server", "http://127.0.0.1:9", "--token", "t", "--queue", "q",
             "--work-dir", str(tmp_path / "work")],
            env=subprocess_env(),
        )  # fmt: skip
        async with process:
            assert process.stderr is not None
            seen = b""
            while b"unreachable" not in seen:
                seen += await process.stderr.receive()
            await anyio.sleep(1)
            assert process.returncode is None  # still retrying
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    assert seen.count(b"unreachable") == 1  # one line per state change, not per retry

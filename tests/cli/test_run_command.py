"""``launchplane run JOB.yaml`` as a user runs it: a real process, embedded server and agent."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from kit import LAUNCHPLANE

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello" / "job.yaml"


def run(
    *args: str, data_dir: Path, timeout: float = 60, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHPLANE_")}
    env["LAUNCHPLANE_HOME"] = str(data_dir / "home")
    env.update(extra_env or {})
    return subprocess.run(
        [LAUNCHPLANE, "run", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=data_dir,  # not the example's folder: the job file locates its code
    )


def test_hello_example_runs_and_writes_a_checkpoint(tmp_path: Path) -> None:
    done = run(str(HELLO), data_dir=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "epoch 300/300" in done.stdout
    checkpoint = Path(re.search(r"wrote checkpoint to (\S+)", done.stdout)[1])
    assert checkpoint.is_file() and checkpoint.is_relative_to(tmp_path / "work")
    assert json.loads(checkpoint.read_text())["metrics"]["accuracy"] > 0.7
    assert "succeeded (exit code 0)" in done.stderr
    record = Path(re.search(r"record: (\S+)", done.stderr)[1])
    data = json.loads(record.read_text())
    assert data["result"]["state"] == "succeeded"
    assert data["code"]["workdir"] == str(HELLO.parent)
    assert not (HELLO.parent / "output").exists()  # outputs go to the run directory


def test_the_quick_start_works_without_bubblewrap_and_says_it_is_unsandboxed(
    tmp_path: Path,
) -> None:
    """A fresh machine has no ``bwrap``: ``launchplane run`` still runs the job, and says so.

    The PATH here is real: the venv's scripts and a folder with git and sh,
    not /usr/bin, where this machine's bwrap is.
    """
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("git", "sh"):
        found = shutil.which(name)
        assert found is not None
        (tools / name).symlink_to(found)
    path = f"{Path(LAUNCHPLANE).parent}{os.pathsep}{tools}"
    done = run(str(HELLO), data_dir=tmp_path / "data", extra_env={"PATH": path})

    assert done.returncode == 0, done.stderr
    assert "bubblewrap is not installed, so the job runs unsandboxed" in done.stderr
    assert "epoch 300/300" in done.stdout


def test_json_summary_and_overrides(tmp_path: Path) -> None:
    done = run(str(HELLO), "--set", "hyperparameters.epochs=3", "--json", data_dir=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "epoch   3/3" in done.stderr  # with --json the log goes to stderr
    summary = json.loads(done.stdout)
    assert summary["state"] == "succeeded" and summary["exit_code"] == 0
    assert any(path.endswith("checkpoint.json") for path in summary["outputs"])
    assert json.loads(Path(summary["record"]).read_text())["spec"]["hyperparameters"]["epochs"] == 3


def test_failing_job_exit_code_is_the_commands(tmp_path: Path) -> None:
    job = tmp_path / "fail.yaml"
    job.write_text('command: ["sh", "-c", "echo about to fail; exit 7"]\n')
    done = run(str(job), data_dir=tmp_path)
    assert done.returncode == 7
    assert "about to fail" in done.stdout
    assert "failed (exit code 7)" in done.stderr


def test_invalid_job_is_refused_with_its_path(tmp_path: Path) -> None:
    job = tmp_path / "bad.yaml"
    job.write_text("entry_piont: train.py\n")
    done = run(str(job), data_dir=tmp_path)
    assert done.returncode == 2
    assert "entry_piont" in done.stderr and "entry_point" in done.stderr


def test_ctrl_c_cancels_the_job(tmp_path: Path) -> None:
    job = tmp_path / "slow.yaml"
    job.write_text('command: ["sh", "-c", "echo ready; sleep 300"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHPLANE_")}
    process = subprocess.Popen(
        [LAUNCHPLANE, "run", str(job), "--data-dir", str(tmp_path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 30
        while process.stderr.readline().strip() != "ready":
            assert time.monotonic() < deadline
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert json.loads(stdout)["state"] == "cancelled"


@pytest.mark.parametrize("workdir", [None, "."])
def test_local_code_is_found_next_to_the_job_file(tmp_path: Path, workdir: str | None) -> None:
    code = tmp_path / "project"
    code.mkdir()
    (code / "main.py").write_text("import os; print('cwd', os.getcwd())\n")
    job = code / "job.yaml"
    job.write_text("entry_point: main.py\n" + (f"workdir: {workdir}\n" if workdir else ""))
    done = run(str(job), data_dir=tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert f"cwd {code}" in done.stdout


PLUGIN = """
from launchplane import hookimpl


@hookimpl
def launchplane_prepare_job(job, ctx):
    ctx.env["FROM_PLUGIN"] = "prepared by run_test_plugin"
"""


def _with_plugin_dir(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "run_test_plugin.py").write_text(PLUGIN)
    (tmp_path / "plugins" / "run_broken_plugin.py").write_text("raise RuntimeError('boom')\n")
    job = tmp_path / "job.yaml"
    job.write_text(
        "command: [python3, -c, \"import os; print(os.environ.get('FROM_PLUGIN', 'absent'))\"]\n"
    )
    return {
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(tmp_path / "plugins"), os.environ.get("PYTHONPATH")])
        )
    }


def test_plugins_option_loads_a_plugin_for_the_embedded_agent(tmp_path: Path) -> None:
    extra_env = _with_plugin_dir(tmp_path)
    done = run(
        str(tmp_path / "job.yaml"),
        "--plugins",
        "run_test_plugin",
        data_dir=tmp_path / "data",
        extra_env=extra_env,
    )
    assert done.returncode == 0, done.stderr
    assert "prepared by run_test_plugin" in done.stdout


def test_strict_plugins_stops_run_before_the_job(tmp_path: Path) -> None:
    extra_env = _with_plugin_dir(tmp_path)
    done = run(
        str(tmp_path / "job.yaml"),
        "--plugins",
        "run_broken_plugin",
        "--strict-plugins",
        data_dir=tmp_path / "data",
        extra_env=extra_env,
    )
    assert done.returncode == 1
    assert "run_broken_plugin" in done.stderr and "--strict-plugins" in done.stderr
    assert "absent" not in done.stdout  # the job never ran


def test_the_embedded_server_checks_a_job_with_the_plugins_of_run(tmp_path: Path) -> None:
    """--plugins reaches the embedded server too: a bad resource_args is an invalid job at
    submit (exit 2, the path and the fix), not a run that fails at the agent."""
    # tests/agent/strict_runner_plugin.py: a runner whose resource_args model has `gpus`.
    path = [str(REPO / "tests" / "agent"), os.environ.get("PYTHONPATH", "")]
    queue = tmp_path / "queue.yaml"
    queue.write_text("resource: strict-runner\n")
    job = tmp_path / "strict-job.yaml"
    job.write_text("command: [python3, -c, 'print(1)']\nresource_args: {strict-runner: {gpu: 2}}\n")
    done = run(
        str(job),
        "--queue-config",
        str(queue),
        "--plugins",
        "strict_runner_plugin",
        data_dir=tmp_path / "data",
        extra_env={"PYTHONPATH": os.pathsep.join(filter(None, path))},
    )
    assert done.returncode == 2, done.stderr
    assert "resource_args.strict-runner.gpu: unknown key (did you mean 'gpus'?)" in done.stderr

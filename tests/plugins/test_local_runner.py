"""The local-process runner on its own: real child processes, real signals."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest
from kit import find_process, unique_seconds, wait_gone
from pydantic import ValidationError

from launchplane.core.interfaces import JobContext, PluginError, RunState
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.runners.local import LocalProcessRunner, LocalRun

pytestmark = pytest.mark.anyio

BASELINE = {"PATH", "HOME", "TMPDIR", "PYTHONUNBUFFERED", "PWD"}
GONE_WITHIN = 5.0
"""How long a process the runner killed may take to be gone (tighter than the kit's 10 s)."""


ISOLATIONS = pytest.mark.parametrize("isolation", ["sandbox", "none"])
"""What holds with and without the sandbox (the default is the sandbox)."""


@pytest.fixture
def ctx(tmp_path: Path) -> JobContext:
    # Inside a work directory, as an agent's run directories are: the sandbox
    # refuses to show a job anything else in it.
    run_dir = tmp_path / "work" / "j-1-1"
    run_dir.mkdir(parents=True)
    return JobContext(
        job_id="j-1", run_id="j-1-1", attempt=1, queue="local", workdir=run_dir, env={}
    )


async def run_job(job: ResolvedJob, ctx: JobContext) -> tuple[list[str], object]:
    run = await LocalProcessRunner().submit(job, None, ctx)
    lines: list[str] = []

    async def read() -> None:
        async for line in run.logs():
            lines.append(line)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        result = await run.wait()
    return lines, result


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_environment_is_exactly_declared_plus_baseline(
    ctx: JobContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_ONLY_VALUE", "agent-private-9f1c")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    ctx.env = {"LEARNING_RATE": "0.1", "LAUNCHPLANE_JOB_ID": "j-1"}
    job = ResolvedJob(command=python("import json, os; print(json.dumps(dict(os.environ)))"))

    lines, result = await run_job(job, ctx)

    assert result.state is RunState.SUCCEEDED
    env = json.loads(lines[0])
    assert set(env) == BASELINE | {"LANG", "LEARNING_RATE", "LAUNCHPLANE_JOB_ID"}
    assert "agent-private-9f1c" not in lines[0]
    assert env["HOME"] == str(ctx.workdir / "home") and Path(env["HOME"]).is_dir()
    assert env["TMPDIR"] == str(ctx.workdir / "tmp") and Path(env["TMPDIR"]).is_dir()
    assert env["PATH"] == os.environ["PATH"]


async def test_declared_env_wins_over_baseline(ctx: JobContext) -> None:
    ctx.env = {"HOME": "/nonexistent-home"}
    job = ResolvedJob(command=python("import os; print(os.environ['HOME'])"))
    lines, _ = await run_job(job, ctx)
    assert lines == ["/nonexistent-home"]


async def test_exit_codes_map_to_states(ctx: JobContext) -> None:
    _, ok = await run_job(ResolvedJob(command=["true"]), ctx)
    assert (ok.state, ok.exit_code, ok.reason) == (RunState.SUCCEEDED, 0, None)

    script = "for i in $(seq 1 30); do echo line-$i; done; echo boom >&2; exit 3"
    lines, failed = await run_job(ResolvedJob(command=["sh", "-c", script]), ctx)
    assert failed.state is RunState.FAILED and failed.exit_code == 3
    assert lines[-1] == "boom"  # stderr is merged into the same stream
    assert "exit code 3" in failed.reason
    assert failed.reason.endswith("line-29\nline-30\nboom")
    assert "line-20" not in failed.reason  # only the last lines

    _, killed = await run_job(ResolvedJob(command=["sh", "-c", "kill -9 $$"]), ctx)
    assert killed.state is RunState.FAILED and killed.exit_code == 137
    assert "SIGKILL" in killed.reason


async def test_entry_point_py_runs_with_the_agents_python(ctx: JobContext, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(
        "import os, sys\nprint(sys.executable)\nprint(os.getcwd())\nprint(sys.argv[1:])\n"
    )
    job = ResolvedJob(entry_point="train.py", args=["--epochs", "2"], workdir=str(code))

    lines, result = await run_job(job, ctx)

    assert result.state is RunState.SUCCEEDED
    assert lines == [sys.executable, str(code), "['--epochs', '2']"]


async def test_runs_in_code_checkout_and_its_subfolder(ctx: JobContext, tmp_path: Path) -> None:
    ctx.code_dir = tmp_path / "checkout"
    (ctx.code_dir / "sub").mkdir(parents=True)
    lines, _ = await run_job(ResolvedJob(command=["pwd"]), ctx)
    assert lines == [str(ctx.code_dir)]
    lines, _ = await run_job(ResolvedJob(command=["pwd"], workdir="sub"), ctx)
    assert lines == [str(ctx.code_dir / "sub")]


async def test_without_code_or_workdir_runs_in_the_run_directory(ctx: JobContext) -> None:
    lines, _ = await run_job(ResolvedJob(command=["pwd"]), ctx)
    assert lines == [str(ctx.workdir)]


async def test_bad_command_and_directory_are_clear_errors(ctx: JobContext) -> None:
    runner = LocalProcessRunner()
    with pytest.raises(PluginError, match="neither 'command' nor 'entry_point'"):
        await runner.submit(ResolvedJob(), None, ctx)
    with pytest.raises(PluginError, match="cannot start 'no-such-program-xyz'"):
        await runner.submit(ResolvedJob(command=["no-such-program-xyz"]), None, ctx)
    with pytest.raises(PluginError, match="is relative"):
        await runner.submit(ResolvedJob(command=["true"], workdir="rel"), None, ctx)
    with pytest.raises(PluginError, match="does not exist"):
        await runner.submit(ResolvedJob(command=["true"], workdir="/no/such/dir"), None, ctx)


@ISOLATIONS
async def test_cancel_kills_the_whole_process_group(ctx: JobContext, isolation: str) -> None:
    # The parent ignores SIGTERM, so only SIGKILL after the grace period stops it;
    # its child `sleep` must die with it.
    marker = unique_seconds(300)
    script = f"trap '' TERM; sleep {marker} & echo up; wait"
    job = ResolvedJob(
        command=["sh", "-c", script, f"parent-{marker}"],
        resource_args={"local-process": {"isolation": isolation}},
    )
    run = await LocalProcessRunner().submit(job, None, ctx)
    assert isinstance(run, LocalRun)
    lines = run.logs()
    while await lines.__anext__() != "up":
        pass
    child = await find_process(marker, "sleep")
    parent = await find_process(f"parent-{marker}", "sh")

    with anyio.fail_after(10):
        await run.cancel(grace=0.5)
        result = await run.wait()

    assert result.state is RunState.CANCELLED
    assert await wait_gone(parent, timeout=GONE_WITHIN) >= 0
    assert await wait_gone(child, timeout=GONE_WITHIN) >= 0


async def test_cancel_with_a_cooperative_process_is_quick(ctx: JobContext) -> None:
    code = "import signal, sys, time\nprint('up', flush=True)\ntime.sleep(300)"
    run = await LocalProcessRunner().submit(ResolvedJob(command=python(code)), None, ctx)
    lines = run.logs()
    assert await lines.__anext__() == "up"
    with anyio.fail_after(3):  # SIGTERM's default action ends it long before the grace
        await run.cancel(grace=60)
        result = await run.wait()
    assert result.state is RunState.CANCELLED
    assert await run.status() is RunState.CANCELLED


@ISOLATIONS
async def test_processes_left_behind_are_killed_when_the_main_one_exits(
    ctx: JobContext, isolation: str
) -> None:
    marker = unique_seconds(300)
    # The main process ends once the test has seen its child (the file `go`).
    script = f"sleep {marker} >/dev/null 2>&1 & echo started; until [ -e go ]; do sleep 0.05; done"
    job = ResolvedJob(
        command=["sh", "-c", script], resource_args={"local-process": {"isolation": isolation}}
    )
    run = await LocalProcessRunner().submit(job, None, ctx)
    lines = run.logs()
    assert await lines.__anext__() == "started"
    left_behind = await find_process(marker, "sleep")
    (ctx.workdir / "go").touch()
    with anyio.fail_after(10):
        result = await run.wait()
    assert result.state is RunState.SUCCEEDED
    assert await wait_gone(left_behind, timeout=GONE_WITHIN) >= 0


async def test_output_is_drained_when_nobody_reads_it(ctx: JobContext) -> None:
    code = "import sys\nfor i in range(20000): print('x' * 100)\nprint('last')"
    run = await LocalProcessRunner().submit(ResolvedJob(command=python(code)), None, ctx)
    with anyio.fail_after(10):
        result = await run.wait()
    assert result.state is RunState.SUCCEEDED


async def test_timeout_fails_the_run(ctx: JobContext) -> None:
    job = ResolvedJob(
        command=["sleep", "300"], resource_args={"local-process": {"timeout_seconds": 0.3}}
    )
    with anyio.fail_after(10):
        _, result = await run_job(job, ctx)
    assert result.state is RunState.FAILED
    assert "timed out after 0.3s" in result.reason


@pytest.mark.parametrize("isolation", ["sandbox", "none"])
async def test_nice_applies_to_the_process(ctx: JobContext, isolation: str) -> None:
    """Set before the job starts: the agent's ``setpriority`` after the spawn once lost the
    race with the job's first instruction in CI (the job read 0)."""
    job = ResolvedJob(
        command=python("import os; print(os.getpriority(os.PRIO_PROCESS, 0))"),
        resource_args={"local-process": {"nice": 5, "isolation": isolation}},
    )
    lines, _ = await run_job(job, ctx)
    assert lines[-1] == "5"


def test_resource_args_are_strict() -> None:
    model = LocalProcessRunner.resource_args_model
    assert model is not None
    with pytest.raises(ValidationError) as info:
        model.model_validate({"timeout_secs": 5})
    assert info.value.errors()[0]["loc"] == ("timeout_secs",)
    with pytest.raises(ValidationError):
        model.model_validate({"nice": 40})
    assert model.model_validate({"timeout_seconds": 5}) is not None


def test_describe_shows_names_and_references_never_values() -> None:
    job = ResolvedJob(
        entry_point="train.py",
        args=["--lr", "0.1"],
        env={"LR": "0.1", "FROM_AGENT": None},
        secrets={"TOKEN": "env:PLANTED_SECRET"},
        git={"repository": "https://example.com/repo.git", "commit": "abc123"},
    )
    plan = LocalProcessRunner().describe(job, None)
    assert plan["argv"] == [sys.executable, "train.py", "--lr", "0.1"]
    assert plan["cwd"] == "<checkout of https://example.com/repo.git>"
    assert plan["env"] == ["FROM_AGENT", "LR"]
    assert plan["secrets"] == {"TOKEN": "env:PLANTED_SECRET"}
    assert set(plan["baseline_env"]) == BASELINE | {"LANG", "LC_ALL"}


async def test_attach_is_unsupported(tmp_path: Path) -> None:
    assert await LocalProcessRunner().attach("j-1-1", tmp_path / "j-1-1") is None


async def test_command_takes_args_appended(ctx: JobContext) -> None:
    lines, _ = await run_job(ResolvedJob(command=["echo", "a"], args=["b", "c"]), ctx)
    assert lines == ["a b c"]

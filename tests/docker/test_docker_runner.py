"""The docker runner against a real engine: logs, exit codes, cancel, OOM, re-adoption, env."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from dockerkit import BASE_IMAGE, NONCE, Log, collect, context, eventually, job_spec

from launchplane.core.interfaces import Image, PluginError, RunState
from launchplane.core.launch import run_labels
from launchplane.plugins.runners.docker import (
    OUTPUT_DIR,
    DockerRunner,
    container_create_kwargs,
    container_name,
)

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

BASE = Image(ref=BASE_IMAGE)


def python(code: str, **fields: Any) -> Any:
    """A job running ``python3 -c code`` on the base image."""
    return job_spec("runner", command=["python3", "-c", code], **fields)


def gone(docker: Any, name: str) -> bool:
    import docker as docker_py

    try:
        docker.containers.get(name)
    except docker_py.errors.NotFound:
        return True
    return False


async def test_a_container_runs_and_reports_logs_and_exit_code(docker: Any, tmp_path: Path) -> None:
    job = python("import os; print('hello from', os.getuid()); print('bye')")
    log = Log()
    ctx = context(tmp_path, "ok", log=log)

    run = await DockerRunner().submit(job, BASE, ctx)
    lines = await collect(run.logs())
    result = await run.wait()

    assert lines == ["hello from 0", "bye"]
    assert (result.state, result.exit_code, result.reason) == (RunState.SUCCEEDED, 0, None)
    assert await run.status() is RunState.SUCCEEDED
    assert run.id == ctx.run_id and run.name == f"lp-{ctx.run_id}"
    assert log.lines == [f"started container lp-{ctx.run_id} from image {BASE_IMAGE}"]
    assert gone(docker, run.name)  # removed once its result and logs were collected


async def test_aclose_closes_both_docker_clients(docker: Any, tmp_path: Path) -> None:
    runner = DockerRunner()
    run = await runner.submit(python("print('x')"), BASE, context(tmp_path, "close"))
    await collect(run.logs())
    await run.wait()
    clients = runner._clients
    assert clients is not None
    pools = [c.api.get_adapter(c.api.base_url).pools for c in (clients.short, clients.long)]
    assert all(len(pool) > 0 for pool in pools)  # both have talked to the engine

    await runner.aclose()
    await runner.aclose()  # a second call finds nothing left to close

    assert [len(pool) for pool in pools] == [0, 0] and runner._clients is None


async def test_the_built_hello_image_writes_its_checkpoint_to_the_run_output(
    docker: Any, hello_image: Image, tmp_path: Path
) -> None:
    job = job_spec("hello", entry_point="train.py", args=["--epochs", "3"])
    ctx = context(tmp_path, "hello-run", env={"LAUNCHPLANE_OUTPUT_DIR": "/agent/host/path"})

    run = await DockerRunner().submit(job, hello_image, ctx)
    async with anyio.create_task_group() as tg:
        lines: list[str] = []

        async def read() -> None:
            lines.extend(await collect(run.logs()))

        tg.start_soon(read)
        result = await run.wait()

    assert result.state is RunState.SUCCEEDED, result.reason
    assert any("epoch   3/3" in line for line in lines)
    assert lines[-1] == f"wrote checkpoint to {OUTPUT_DIR}/checkpoint.json"
    checkpoint = json.loads((ctx.workdir / "output" / "checkpoint.json").read_text())
    assert checkpoint["hyperparameters"]["epochs"] == 3


async def test_cancel_stops_the_container_and_reports_cancelled(
    docker: Any, tmp_path: Path
) -> None:
    job = python("import time; print('ready', flush=True); time.sleep(120)")
    run = await DockerRunner().submit(job, BASE, context(tmp_path, "cancel"))
    lines = run.logs()
    assert await lines.__anext__() == "ready"
    assert await run.status() is RunState.RUNNING

    with anyio.fail_after(15):
        await run.cancel(grace=2)
        rest = await collect(lines)  # the stream ends with the container
        result = await run.wait()

    assert rest == []
    assert result.state is RunState.CANCELLED
    assert result.exit_code == 143  # SIGTERM reached python through the init process
    assert gone(docker, run.name)


async def test_cancel_kills_a_job_that_ignores_sigterm_after_the_grace(
    docker: Any, tmp_path: Path
) -> None:
    job = python(
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(120)"
    )
    run = await DockerRunner().submit(job, BASE, context(tmp_path, "kill"))
    assert await run.logs().__anext__() == "ready"

    with anyio.fail_after(15):
        await run.cancel(grace=1)
        result = await run.wait()

    assert (result.state, result.exit_code) == (RunState.CANCELLED, 137)


async def test_exceeding_the_memory_limit_reports_oomkilled(docker: Any, tmp_path: Path) -> None:
    job = python(
        "print('allocating', flush=True); b = bytearray(200 * 1024 * 1024)",
        resource_args={"docker": {"memory": "32m"}},
    )
    run = await DockerRunner().submit(job, BASE, context(tmp_path, "oom"))
    result = await run.wait()

    assert result.state is RunState.FAILED
    assert result.exit_code == 137
    assert result.reason == "OOMKilled: container exceeded its memory limit (32m)"
    assert not result.infrastructure_failure


async def test_a_failing_entry_point_reports_exit_code_and_last_lines(
    docker: Any, tmp_path: Path
) -> None:
    code = "for i in range(30): print('line', i)\nraise ValueError('bad config')"
    run = await DockerRunner().submit(python(code), BASE, context(tmp_path, "fail"))
    result = await run.wait()

    assert (result.state, result.exit_code) == (RunState.FAILED, 1)
    assert result.reason is not None
    head, _, tail = result.reason.partition("; last lines of output:\n")
    assert head == "exit code 1"
    lines = tail.splitlines()
    # stdout and stderr are two pipes, which Docker may log out of order;
    # the reason still has the last prints and ends with the traceback.
    assert "line 29" in lines
    assert lines[-2:] == ['  File "<string>", line 2, in <module>', "ValueError: bad config"]
    assert "line 0" not in lines and len(lines) <= 15


async def test_a_missing_program_fails_with_the_init_processs_words(
    docker: Any, tmp_path: Path
) -> None:
    job = job_spec("noprog", command=["no-such-program"])
    run = await DockerRunner().submit(job, BASE, context(tmp_path, "noprog"))
    result = await run.wait()
    assert (result.state, result.exit_code) == (RunState.FAILED, 127)
    assert result.reason is not None and "exec no-such-program failed" in result.reason


async def test_a_new_runner_re_adopts_a_running_container(docker: Any, tmp_path: Path) -> None:
    job = python("import time; print('one', flush=True); time.sleep(2); print('two')")
    ctx = context(tmp_path, "adopt")
    first = await DockerRunner().submit(job, BASE, ctx)
    assert await first.logs().__anext__() == "one"

    # The agent restarts: a new process, a new runner, only the run id is known.
    adopted = await DockerRunner().attach(ctx.run_id, ctx.workdir)

    assert adopted is not None and adopted.container_id == first.container_id
    assert await adopted.status() is RunState.RUNNING
    lines = await collect(adopted.logs())  # from the container's start
    result = await adopted.wait()
    assert lines == ["one", "two"]
    assert result.state is RunState.SUCCEEDED
    assert gone(docker, adopted.name)
    assert await DockerRunner().attach(ctx.run_id, ctx.workdir) is None  # gone now


async def test_attach_reports_a_container_that_ended_meanwhile(docker: Any, tmp_path: Path) -> None:
    ctx = context(tmp_path, "ended")
    run = await DockerRunner().submit(python("import sys; sys.exit(4)"), BASE, ctx)
    await eventually(lambda: docker.containers.get(run.name).status == "exited")

    adopted = await DockerRunner().attach(ctx.run_id, ctx.workdir)

    assert adopted is not None
    result = await adopted.wait()
    assert (result.state, result.exit_code) == (RunState.FAILED, 4)


async def test_attach_ignores_unknown_and_foreign_containers(docker: Any, tmp_path: Path) -> None:
    assert await DockerRunner().attach(f"lptest-nothing-{NONCE}-1", tmp_path) is None
    run_id = f"lptest-foreign-{NONCE[:8]}-1"
    foreign = docker.containers.create(BASE_IMAGE, ["true"], name=container_name(run_id))
    try:
        adopted = await DockerRunner().attach(run_id, tmp_path / run_id)
        assert adopted is None  # not labelled as that run
    finally:
        foreign.remove(force=True)


async def test_the_secret_is_given_at_create_only(
    docker: Any, hello_image: Image, tmp_path: Path
) -> None:
    secret = f"s3cr3t-{NONCE}"
    job = job_spec("hello", command=["python", "-c", "import os; print(os.environ['HF_TOKEN'])"])
    log = Log()
    ctx = context(tmp_path, "secret", env={"HF_TOKEN": secret}, log=log)

    run = await DockerRunner().submit(job, hello_image, ctx)
    lines = await collect(run.logs())
    await run.wait()

    assert lines == [secret]  # the process sees it
    image = docker.images.get(hello_image.pinned)
    assert secret not in json.dumps(image.attrs) + json.dumps(image.history())
    assert secret not in log.text()  # the runner never logs it


async def test_keep_leaves_the_container_for_inspection(docker: Any, tmp_path: Path) -> None:
    job = python("print('kept')", resource_args={"docker": {"keep": True}})
    ctx = context(tmp_path, "keep")
    run = await DockerRunner().submit(job, BASE, ctx)
    result = await run.wait()
    assert result.state is RunState.SUCCEEDED
    container = docker.containers.get(run.name)
    assert container.labels["launchplane.keep"] == "true"
    container.remove()


async def test_resource_args_reach_the_container(docker: Any, tmp_path: Path) -> None:
    job = python(
        "import os; env = os.environ; "
        "print(env['FROM_ARGS'], env['FROM_JOB'], os.getcwd(), os.getuid())",
        resource_args={
            "docker": {
                "env": ["FROM_ARGS=list-form", "FROM_JOB=overridden"],
                "cpus": 0.5,
                "shm_size": "64m",
                "network": "none",
                "user": "4242",
                "workdir": "/tmp",
                "labels": {"team": "ml"},
                "keep": True,
            }
        },
    )
    ctx = context(tmp_path, "args", env={"FROM_JOB": "job-env-wins"})
    run = await DockerRunner().submit(job, BASE, ctx)
    lines = await collect(run.logs())
    await run.wait()

    assert lines == ["list-form job-env-wins /tmp 4242"]
    container = docker.containers.get(run.name)
    try:
        host = container.attrs["HostConfig"]
        assert host["NanoCpus"] == 500_000_000
        assert host["ShmSize"] == 64 * 1024 * 1024
        assert host["NetworkMode"] == "none"
        assert host["Init"] is True
        assert not host.get("DeviceRequests")  # no gpus: no device request at all
        assert container.labels["team"] == "ml"
        assert {
            key: container.labels[key]
            for key in ("launchplane.job_id", "launchplane.attempt", "launchplane.run_id")
        } == {
            "launchplane.job_id": ctx.job_id,
            "launchplane.attempt": "1",
            "launchplane.run_id": ctx.run_id,
        }
        assert container.labels["launchplane.queue"] == ctx.queue
    finally:
        container.remove(force=True)


async def test_a_job_without_an_image_names_docker_image(docker: Any, tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"set docker\.image"):
        await DockerRunner().submit(python("pass"), None, context(tmp_path, "noimage"))


def test_create_kwargs_for_a_gpu_job(tmp_path: Path) -> None:
    import docker as docker_py

    job = python(
        "pass",
        args=["--fast"],
        resource_args={
            "docker": {
                "gpus": "device=0,1",
                "runtime": "nvidia",
                "memory": "2g",
                "env": {"NVIDIA_VISIBLE_DEVICES": "0,1"},
                "volumes": {"/data": {"bind": "/data", "mode": "ro"}},
            }
        },
    )
    ctx = context(tmp_path, "gpu", env={"HF_TOKEN": "value"})

    kwargs = container_create_kwargs(
        job,
        "img@sha256:abc",
        name=container_name(ctx.run_id),
        labels=run_labels(ctx),
        env=ctx.env,
        output_dir=ctx.workdir / "output",
    )

    requests = [docker_py.types.DeviceRequest(**r) for r in kwargs["device_requests"]]
    assert requests == [
        docker_py.types.DeviceRequest(
            driver="nvidia", device_ids=["0", "1"], capabilities=[["gpu"]]
        )
    ]
    assert kwargs["runtime"] == "nvidia"
    assert kwargs["mem_limit"] == kwargs["memswap_limit"] == 2 * 1024**3
    assert kwargs["command"] == ["python3", "-c", "pass", "--fast"]
    assert kwargs["volumes"] == ["/data:/data:ro", f"{ctx.workdir / 'output'}:{OUTPUT_DIR}:rw"]
    assert kwargs["environment"] == {
        "PYTHONUNBUFFERED": "1",
        "NVIDIA_VISIBLE_DEVICES": "0,1",
        "HF_TOKEN": "value",
        "LAUNCHPLANE_OUTPUT_DIR": OUTPUT_DIR,
    }

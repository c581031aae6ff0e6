"""The docker runner's fields for W&B's ``local-container`` flags, on a real engine.

W&B's allow-list of ``docker run`` flags (cpu shares and quotas, cpusets, pids,
ulimits, memory reservation and swap, platform) and the admin's ``add-host``
reach the container; a W&B ``local-container`` queue body, translated by the
configuration engine, runs as a container with its env and passthrough names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dockerkit import BASE_IMAGE, collect, context, job_spec

from launchplane.agent.environment import job_environment
from launchplane.core.config import resolve_job
from launchplane.core.config.wandb_queue import queue_config_from_wandb
from launchplane.core.interfaces import Image, PluginError, RunState
from launchplane.plugins.runners.docker import DockerArgs, DockerRunner, docker_args

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

BASE = Image(ref=BASE_IMAGE)

PROBE = (
    "import resource; "
    "print('nofile', *resource.getrlimit(resource.RLIMIT_NOFILE)); "
    "print('hosts', [l.split() for l in open('/etc/hosts') if 'lp-probe' in l])"
)


async def test_resource_shaping_fields_reach_the_container(docker: Any, tmp_path: Path) -> None:
    job = job_spec(
        "flags",
        command=["python3", "-c", PROBE],
        resource_args={
            "docker": {
                "memory": "256m",
                "memory_swap": "512m",
                "memory_reservation": "128m",
                "cpu_shares": 512,
                "cpu_period": 100000,
                "cpu_quota": 50000,
                "cpuset_cpus": "0",
                "cpuset_mems": "0",
                "pids_limit": 64,
                "ulimits": ["nofile=1024:2048"],
                "platform": "linux/amd64",
                "extra_hosts": ["lp-probe:10.1.2.3"],
                "keep": True,
            }
        },
    )
    run = await DockerRunner().submit(job, BASE, context(tmp_path, "flags"))
    lines = await collect(run.logs())
    result = await run.wait()

    assert result.state is RunState.SUCCEEDED, result.reason
    assert lines == ["nofile 1024 2048", "hosts [['10.1.2.3', 'lp-probe']]"]
    container = docker.containers.get(run.name)
    try:
        host = container.attrs["HostConfig"]
        assert host["Memory"] == 256 * 2**20
        assert host["MemorySwap"] == 512 * 2**20
        assert host["MemoryReservation"] == 128 * 2**20
        assert (host["CpuShares"], host["CpuPeriod"], host["CpuQuota"]) == (512, 100000, 50000)
        assert (host["CpusetCpus"], host["CpusetMems"]) == ("0", "0")
        assert host["PidsLimit"] == 64
        assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
        assert host["ExtraHosts"] == ["lp-probe:10.1.2.3"]
        assert container.attrs["Platform"] == "linux"
    finally:
        container.remove(force=True)


async def test_unlimited_swap_and_a_pids_limit_stop_a_fork_bomb(
    docker: Any, tmp_path: Path
) -> None:
    code = (
        "import subprocess\n"
        "procs = []\n"
        "try:\n"
        "    for _ in range(64): procs.append(subprocess.Popen(['sleep', '5']))\n"
        "except OSError as exc: print('refused after', len(procs), type(exc).__name__)\n"
        "for p in procs: p.kill()\n"
    )
    job = job_spec(
        "pids",
        command=["python3", "-c", code],
        resource_args={"docker": {"memory": "256m", "memory_swap": -1, "pids_limit": 8}},
    )
    run = await DockerRunner().submit(job, BASE, context(tmp_path, "pids"))
    lines = await collect(run.logs())
    assert (await run.wait()).state is RunState.SUCCEEDED
    assert len(lines) == 1 and lines[0].startswith("refused after ")
    assert int(lines[0].split()[2]) < 8


def test_bad_values_are_refused_with_their_field(tmp_path: Path) -> None:
    def refused(args: dict[str, Any]) -> str:
        with pytest.raises(PluginError) as caught:
            docker_args(job_spec("bad", resource_args={"docker": args}))
        return str(caught.value)

    assert refused({"memory_swap": "1g"}) == (
        "resource_args.docker: Value error, memory_swap needs memory (the swap limit counts "
        "memory plus swap)"
    )
    assert "is below memory 2g" in refused({"memory": "2g", "memory_swap": "1g"})
    assert "is not NAME=SOFT[:HARD]" in refused({"ulimits": ["nofile"]})
    assert "is not HOST:IP" in refused({"extra_hosts": ["nohost"]})
    assert "resource_args.docker.cpu_period" in refused({"cpu_period": 10})
    # One number sets both limits, as docker run --ulimit does; a mapping works too.
    assert DockerArgs.model_validate({"ulimits": {"nproc": 512}}).ulimits == ["nproc=512"]


async def test_a_wandb_local_container_queue_runs_on_the_engine(
    docker: Any, tmp_path: Path
) -> None:
    queue = queue_config_from_wandb(
        "local-container",
        {
            "env": ["FROM_QUEUE=flags", "TEAM_TOKEN"],
            "shm-size": "{{shm}}",
            "memory": "256m",
            "ulimit": "nofile=512",
            "rm": True,
        },
        [{"name": "shm", "schema": '{"type":"string","enum":["64m","128m"],"default":"64m"}'}],
    )
    job = {
        "name": "lptest-wandb",
        "docker": {"image": BASE_IMAGE},
        "command": [
            "python3",
            "-c",
            "import os, resource; e = os.environ; "
            "print(e['FROM_QUEUE'], e['TEAM_TOKEN'], e['FROM_JOB'], "
            "resource.getrlimit(resource.RLIMIT_NOFILE)[0])",
        ],
        "resource_args": {"local-container": {"e": ["FROM_JOB=job"], "cpus": 1}},
    }
    resolved = resolve_job(queue, job, variables={"shm": "128m"}, resource_args_model=DockerArgs)
    assert resolved.resource_args["docker"]["shm_size"] == "128m"
    env = job_environment(
        resolved, {}, {"TEAM_TOKEN": "from-agent", "OTHER": "no"}, secrets={}, launch_vars={}
    )
    assert env == {"TEAM_TOKEN": "from-agent"}  # passed through by name, nothing else

    run = await DockerRunner().submit(resolved, BASE, context(tmp_path, "wandb", env=env))
    lines = await collect(run.logs())
    assert (await run.wait()).state is RunState.SUCCEEDED
    assert lines == ["flags from-agent job 512"]

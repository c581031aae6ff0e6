"""Server + agent + docker builder + kubernetes runner, against the emulator and Docker.

Real: the queue server (in this event loop), the agent (in-process, or a
``launch-agent`` process where it is killed), the docker builder pushing to
the local registry, the ``kubernetes`` client over loopback, and the job's
container on the Docker engine (its code, output and exit code are real).
Simulated (tests/kubernetes/k8skit.py): the API server is kmock's emulator
as extended there, and the test-side PodController stands in for the Job
controller, the scheduler and the kubelet; the failures a single Docker host
cannot produce (Unschedulable, eviction, preemption) are scripted with it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from k8skit import Cluster, Evicted
from kit import (
    DOCKER_BASE_IMAGE,
    LAUNCHPLANE,
    agent_process,
    eventually,
    log_lines,
    pythonpath,
    running_agent,
    subprocess_env,
    wait_for_line,
    wait_for_state,
)

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = [pytest.mark.kubernetes, pytest.mark.docker, pytest.mark.anyio]

REPO = Path(__file__).resolve().parents[2]
REGISTRY = "127.0.0.1:5000"
QUEUE = "k8s"
NAMESPACE = "ml"
QUEUE_CONFIG: dict[str, Any] = {
    "resource": "kubernetes",
    "builder": {
        "type": "docker",
        "base_image": DOCKER_BASE_IMAGE,
        "options": {"registry": f"{REGISTRY}/lptest"},
    },
    "lease_ttl_seconds": 30,
    "resource_args": {"kubernetes": {"namespace": NAMESPACE, "limits": {"memory": "256Mi"}}},
}
JOB_TIMEOUT = 60


@pytest.fixture
async def server(tmp_path: Path, kube: Cluster) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        await srv.ensure_queue(QUEUE, QUEUE_CONFIG)
        yield srv


def command_job(script: str, **fields: Any) -> dict[str, Any]:
    """A job that runs ``python3 -c script`` in the base image (nothing to build)."""
    return {
        "name": "lptest-k8s",
        "docker": {"image": DOCKER_BASE_IMAGE},
        "command": ["python3", "-c", script],
        **fields,
    }


def pods_of(kube: Cluster, job_id: str) -> list[dict[str, Any]]:
    return [
        p
        for p in kube.emulator.list("v1/pods", NAMESPACE)
        if p["metadata"]["labels"].get("launchplane.job_id") == job_id
    ]


async def test_submit_runs_examples_hello_in_a_pod_with_digest_and_logs(
    server: EmbeddedServer, client: LaunchplaneClient, kube: Cluster, tmp_path: Path
) -> None:
    """``launchplane submit`` of examples/hello: built, pushed, run in a pod, recorded."""
    hello = tmp_path / "hello"
    shutil.copytree(REPO / "examples" / "hello", hello, ignore=shutil.ignore_patterns("output"))
    # A submitter's local workdir: only inside a root the queue allows (issue 15).
    await server.ensure_queue(
        QUEUE, {**QUEUE_CONFIG, "guardrails": {"workdir_roots": [str(hello)]}}
    )
    token = await server.create_token("submitter", name="e2e")
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        submitted = await anyio.run_process(
            [
                LAUNCHPLANE,
                "submit",
                str(hello / "job.yaml"),
                "-q",
                QUEUE,
                "--json",
                "--set",
                "hyperparameters.epochs=5",
                "--server",
                server.url,
                "--token",
                token,
            ],
            env=subprocess_env(),
            check=False,
        )
        assert submitted.returncode == 0, submitted.stderr.decode()
        job_id = json.loads(submitted.stdout)["id"]
        done = await wait_for_state(client, job_id, timeout=JOB_TIMEOUT)
        record = await client.get_record(job_id)
        lines = await log_lines(client, job_id)

    assert done["state"] == "succeeded", (done, lines[-15:])
    workload = record["workload"]
    assert workload["namespace"] == NAMESPACE
    assert workload["kind"] == "Job"
    assert workload["job_name"] == f"lp-{job_id}-1"
    assert record["runner"] == "kubernetes"
    image = record["image"]
    assert image["digest"].startswith("sha256:")
    assert image["ref"].startswith(f"{REGISTRY}/lptest/")
    (pod,) = pods_of(kube, job_id)
    assert (
        pod["spec"]["containers"][0]["image"]
        == f"{image['ref'].rsplit(':', 1)[0]}@{image['digest']}"
    )
    assert "epoch   5/5" in "\n".join(lines), lines[-10:]
    assert f"created Job {NAMESPACE}/lp-{job_id}-1 running image" in "\n".join(lines)


async def test_cancel_deletes_the_job_and_its_pods_after_the_grace(
    server: EmbeddedServer, client: LaunchplaneClient, kube: Cluster, tmp_path: Path
) -> None:
    script = "import time; print('started', flush=True); time.sleep(120)"
    async with running_agent(server, tmp_path / "work", [QUEUE], cancel_grace=1.0):
        job = await client.submit_job(QUEUE, command_job(script))
        await wait_for_line(client, job["id"], lambda line: line == "started", timeout=JOB_TIMEOUT)
        name = f"lp-{job['id']}-1"
        assert kube.emulator.get("batch/v1/jobs", NAMESPACE, name) is not None
        await client.cancel_job(job["id"])
        done = await wait_for_state(client, job["id"], timeout=30)

    assert done["state"] == "cancelled", done
    assert kube.emulator.get("batch/v1/jobs", NAMESPACE, name) is None
    assert pods_of(kube, job["id"]) == []
    (deleted,) = [d for d in kube.emulator.deletions if d["name"] == name]
    assert deleted["propagationPolicy"] == "Background"
    assert int(deleted["gracePeriodSeconds"]) == 1
    running = kube.controller.docker.containers.list(filters={"name": f"k8skit-{name}"})
    assert running == []  # the container was stopped, not left behind


async def test_a_queue_that_names_its_kubeconfig_and_context_runs_there(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    kube: Cluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """W&B's ``configFile``/``context`` in a queue config choose the cluster, not the agent's."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    k8s = {**QUEUE_CONFIG["resource_args"]["kubernetes"]}
    k8s.update(configFile=str(kube.kubeconfig), context="kmock")
    await server.ensure_queue("elsewhere", {**QUEUE_CONFIG, "resource_args": {"kubernetes": k8s}})
    async with running_agent(server, tmp_path / "work", ["elsewhere"]):
        job = await client.submit_job("elsewhere", command_job("print('from the queue cluster')"))
        done = await wait_for_state(client, job["id"], timeout=JOB_TIMEOUT)
        lines = await log_lines(client, job["id"])
    assert done["state"] == "succeeded", (done, lines[-10:])
    assert "from the queue cluster" in lines


async def test_a_restarted_agent_re_adopts_the_job_without_repeating_lines(
    server: EmbeddedServer, client: LaunchplaneClient, kube: Cluster, tmp_path: Path
) -> None:
    """The first agent is a real process, SIGKILLed mid-run; its successor attaches."""
    work_dir = tmp_path / "work"
    script = (
        "import time, pathlib; print('started', flush=True)\n"
        "while not pathlib.Path('/tmp/go').exists(): time.sleep(0.05)\n"
        "print('finished')"
    )
    job = await client.submit_job(QUEUE, command_job(script))
    token = await server.create_token("agent", queues=[QUEUE])
    env = subprocess_env(KUBECONFIG=str(kube.kubeconfig), PYTHONPATH=pythonpath())
    async with agent_process(
        server.url, token, work_dir, queues=[QUEUE], agent_id="lptest-k8s-agent", env=env
    ) as process:
        await wait_for_line(client, job["id"], lambda line: line == "started", timeout=JOB_TIMEOUT)
        logged = work_dir / f"{job['id']}-1" / "logged-lines"

        async def noted() -> bool:
            return logged.exists() and int(logged.read_text() or 0) >= 1

        await eventually(noted, 20, "the agent to note the sent lines")
        await process.kill()
    name = f"lp-{job['id']}-1"
    assert kube.emulator.get("batch/v1/jobs", NAMESPACE, name) is not None

    async with running_agent(server, work_dir, [QUEUE], agent_id="lptest-k8s-agent"):
        (pod,) = pods_of(kube, job["id"])
        container = kube.controller.docker.containers.list(
            filters={"name": f"k8skit-{pod['metadata']['name']}"}
        )[0]
        await anyio.to_thread.run_sync(lambda: container.exec_run(["touch", "/tmp/go"]))
        done = await wait_for_state(client, job["id"], timeout=JOB_TIMEOUT)

    assert done["state"] == "succeeded", done
    assert done["attempt"] == 1  # the same attempt, watched to its end
    lines = await log_lines(client, job["id"])
    assert lines.count("started") == 1, lines
    assert lines[-1] == "finished"


async def test_a_410_gone_in_the_middle_of_the_watch_is_survived(
    server: EmbeddedServer, client: LaunchplaneClient, kube: Cluster, tmp_path: Path
) -> None:
    script = (
        "import time, pathlib; print('started', flush=True)\n"
        "while not pathlib.Path('/tmp/go').exists(): time.sleep(0.05)\n"
        "print('finished')"
    )
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(QUEUE, command_job(script))
        await wait_for_line(client, job["id"], lambda line: line == "started", timeout=JOB_TIMEOUT)
        watches = kube.emulator.watch_requests
        kube.emulator.expire_watches()  # every open watch gets 410; resumes must re-list
        (pod,) = pods_of(kube, job["id"])
        await kube.wait_for(lambda: kube.emulator.watch_requests >= watches + 2, what="re-watch")
        container = kube.controller.docker.containers.list(
            filters={"name": f"k8skit-{pod['metadata']['name']}"}
        )[0]
        await anyio.to_thread.run_sync(lambda: container.exec_run(["touch", "/tmp/go"]))
        done = await wait_for_state(client, job["id"], timeout=JOB_TIMEOUT)
        lines = await log_lines(client, job["id"])

    assert done["state"] == "succeeded", done
    assert lines.count("started") == 1 and lines[-1] == "finished", lines


OOM = "x = bytearray(512 * 1024 * 1024); print(len(x))"
FAILURES = {
    "exit-code": (
        command_job("import sys; print('loss is nan', flush=True); sys.exit(3)"),
        None,
        "exit code 3; last lines of output:\nloss is nan",
        False,
    ),
    "oom-killed": (
        command_job(OOM, resource_args={"kubernetes": {"limits": {"memory": "64Mi"}}}),
        None,
        "OOMKilled: container exceeded its memory limit (64Mi)",
        False,
    ),
    "deadline": (
        command_job(
            "import time; time.sleep(60)",
            resource_args={"kubernetes": {"active_deadline_seconds": 1}},
        ),
        None,
        "DeadlineExceeded: the Job ran longer than its activeDeadlineSeconds (1 s)",
        False,
    ),
    "image-pull": (
        {**command_job("print(1)"), "docker": {"image": f"{REGISTRY}/lptest/missing:never"}},
        None,
        "ErrImagePull: pod lp-<job>-1-",
        True,
    ),
    "evicted": (
        command_job("import time; print('up', flush=True); time.sleep(60)"),
        Evicted(),
        "Evicted: pod lp-<job>-1-",
        True,
    ),
    "preempted": (
        command_job("import time; print('up', flush=True); time.sleep(60)"),
        Evicted(message="preempted by a higher-priority pod", reason="Preempted"),
        "Preempted: pod lp-<job>-1-",
        True,
    ),
}


@pytest.mark.parametrize("case", list(FAILURES))
async def test_each_failure_reason_reaches_the_user_in_words(
    case: str, server: EmbeddedServer, client: LaunchplaneClient, kube: Cluster, tmp_path: Path
) -> None:
    job_fields, scenario, reason, infrastructure = FAILURES[case]
    if scenario is not None:
        kube.controller.script(lambda pod: True, scenario)
    async with running_agent(server, tmp_path / "work", [QUEUE], cancel_grace=0.0):
        job = await client.submit_job(QUEUE, job_fields)
        done = await wait_for_state(client, job["id"], timeout=JOB_TIMEOUT)

    assert done["state"] == "failed", done
    assert done["failure_stage"] == "run"
    expected = reason.replace("<job>", job["id"])
    assert done["reason"].startswith(expected), done["reason"]
    # The server keeps the runner's classification on the attempt's "failed" event.
    (failed,) = [e for e in done["events"] if e["state"] == "failed"]
    details = failed["details"] or {}
    assert details.get("infrastructure_failure", False) is infrastructure, failed
    if infrastructure:  # a failure the cluster would retry forever: nothing is left behind
        assert kube.emulator.get("batch/v1/jobs", NAMESPACE, f"lp-{job['id']}-1") is None or (
            case in ("evicted", "preempted")
        )

"""Server + agent + docker builder + kubernetes runner, against the emulator or a cluster.

Each test runs on every :mod:`targets` target: ``emulator`` always, and
``cluster`` (marker ``cluster``) when ``LAUNCHPLANE_TEST_KUBECONFIG`` names a
real cluster's kubeconfig.

Real on both: the queue server (in this event loop), the agent (in-process,
or a ``launch-agent`` process where it is killed), the docker builder pushing
to a registry, the ``kubernetes`` client, and the job's container (its code,
output and exit code are real). On the emulator (tests/kubernetes/k8skit.py)
the API server is kmock's emulator as extended there, the test-side
PodController stands in for the Job controller, the scheduler and the
kubelet, and pods run on the local Docker engine; the failures a single
Docker host cannot produce (eviction, preemption) and a ``410 Gone`` are
scripted with it, so those tests run on the emulator only.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from k8skit import Evicted
from kit import (
    DOCKER_BASE_IMAGE,
    LAUNCHPLANE,
    agent_process,
    agent_token,
    eventually,
    log_lines,
    pythonpath,
    running_agent,
    subprocess_env,
    wait_for_line,
    wait_for_state,
)
from targets import Target

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = [pytest.mark.kubernetes, pytest.mark.docker, pytest.mark.anyio]

REPO = Path(__file__).resolve().parents[2]
QUEUE = "k8s"
JOB_TIMEOUT = 60


def queue_config(target: Target) -> dict[str, Any]:
    return {
        "resource": "kubernetes",
        "builder": {
            "type": "docker",
            "base_image": DOCKER_BASE_IMAGE,
            "options": {"registry": target.registry},
        },
        "lease_ttl_seconds": 30,
        "resource_args": {
            "kubernetes": {"namespace": target.namespace, "limits": {"memory": "256Mi"}}
        },
    }


@pytest.fixture
async def server(tmp_path: Path, target: Target) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        await srv.ensure_queue(QUEUE, queue_config(target))
        yield srv


def command_job(target: Target, script: str, **fields: Any) -> dict[str, Any]:
    """A job that runs ``python3 -c script`` in the target's base image (nothing to build)."""
    return {
        "name": "lptest-k8s",
        "docker": {"image": target.image},
        "command": ["python3", "-c", script],
        **fields,
    }


def emulator_only(target: Target, why: str) -> None:
    if not target.emulated:
        pytest.skip(f"emulator only: {why}")


async def test_submit_runs_examples_hello_in_a_pod_with_digest_and_logs(
    server: EmbeddedServer, client: LaunchplaneClient, target: Target, tmp_path: Path
) -> None:
    """``launchplane submit`` of examples/hello: built, pushed, run in a pod, recorded."""
    hello = tmp_path / "hello"
    shutil.copytree(REPO / "examples" / "hello", hello, ignore=shutil.ignore_patterns("output"))
    # A submitter's local workdir: only inside a root the queue allows (issue 15).
    await server.ensure_queue(
        QUEUE, {**queue_config(target), "guardrails": {"workdir_roots": [str(hello)]}}
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
    assert workload["namespace"] == target.namespace
    assert workload["kind"] == "Job"
    assert workload["job_name"] == f"lp-{job_id}-1"
    assert record["runner"] == "kubernetes"
    image = record["image"]
    assert image["digest"].startswith("sha256:")
    assert image["ref"].startswith(f"{target.registry}/")
    (pod,) = target.pods(job_id)
    assert (
        pod["spec"]["containers"][0]["image"]
        == f"{image['ref'].rsplit(':', 1)[0]}@{image['digest']}"
    )
    assert "epoch   5/5" in "\n".join(lines), lines[-10:]
    assert f"created Job {target.namespace}/lp-{job_id}-1 running image" in "\n".join(lines)


async def test_cancel_deletes_the_job_and_its_pods_after_the_grace(
    server: EmbeddedServer, client: LaunchplaneClient, target: Target, tmp_path: Path
) -> None:
    script = "import time; print('started', flush=True); time.sleep(120)"
    async with running_agent(server, tmp_path / "work", [QUEUE], cancel_grace=1.0):
        job = await client.submit_job(QUEUE, command_job(target, script))
        await wait_for_line(client, job["id"], lambda line: line == "started", timeout=JOB_TIMEOUT)
        name = f"lp-{job['id']}-1"
        assert target.job(name) is not None
        await client.cancel_job(job["id"])
        done = await wait_for_state(client, job["id"], timeout=30)

    assert done["state"] == "cancelled", done
    await target.eventually(lambda: target.job(name) is None, what="the Job to go")
    await target.eventually(lambda: not target.pods(job["id"]), what="the Job's pods to go")
    await target.eventually(lambda: not target.running(job["id"]), what="its container to stop")
    if target.emulated:  # the API calls, as the emulator saw them
        (deleted,) = [d for d in target.cluster.emulator.deletions if d["name"] == name]
        assert deleted["propagationPolicy"] == "Background"
        assert int(deleted["gracePeriodSeconds"]) == 1


async def test_a_queue_that_names_its_kubeconfig_and_context_runs_there(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    target: Target,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """W&B's ``configFile``/``context`` in a queue config choose the cluster, not the agent's."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("LAUNCHPLANE_KUBE_CONTEXT", raising=False)
    config = queue_config(target)
    k8s = {**config["resource_args"]["kubernetes"]}
    k8s.update(configFile=str(target.kubeconfig), context=target.context)
    await server.ensure_queue("elsewhere", {**config, "resource_args": {"kubernetes": k8s}})
    async with running_agent(server, tmp_path / "work", ["elsewhere"]):
        job = await client.submit_job(
            "elsewhere", command_job(target, "print('from the queue cluster')")
        )
        done = await wait_for_state(client, job["id"], timeout=JOB_TIMEOUT)
        lines = await log_lines(client, job["id"])
    assert done["state"] == "succeeded", (done, lines[-10:])
    assert "from the queue cluster" in lines


async def test_a_restarted_agent_re_adopts_the_job_without_repeating_lines(
    server: EmbeddedServer, client: LaunchplaneClient, target: Target, tmp_path: Path
) -> None:
    """The first agent is a real process, SIGKILLed mid-run; its successor attaches."""
    work_dir = tmp_path / "work"
    script = (
        "import time, pathlib; print('started', flush=True)\n"
        "while not pathlib.Path('/tmp/go').exists(): time.sleep(0.05)\n"
        "print('finished')"
    )
    job = await client.submit_job(QUEUE, command_job(target, script))
    token = await agent_token(server, [QUEUE], "lptest-k8s-agent")  # its successor's too
    env = subprocess_env(
        KUBECONFIG=str(target.kubeconfig),
        LAUNCHPLANE_KUBE_CONTEXT=target.context,
        PYTHONPATH=pythonpath(),
    )
    async with agent_process(
        server.url, token, work_dir, queues=[QUEUE], agent_id="lptest-k8s-agent", env=env
    ) as process:
        await wait_for_line(client, job["id"], lambda line: line == "started", timeout=JOB_TIMEOUT)
        logged = work_dir / f"{job['id']}-1" / "logged-lines"

        async def noted() -> bool:
            return logged.exists() and int(logged.read_text() or 0) >= 1

        await eventually(noted, 20, "the agent to note the sent lines")
        await process.kill()
    assert target.job(f"lp-{job['id']}-1") is not None

    async with running_agent(server, work_dir, [QUEUE], agent_id="lptest-k8s-agent"):
        (pod,) = target.pods(job["id"])
        await target.release(pod)
        done = await wait_for_state(client, job["id"], timeout=JOB_TIMEOUT)

    assert done["state"] == "succeeded", done
    assert done["attempt"] == 1  # the same attempt, watched to its end
    lines = await log_lines(client, job["id"])
    assert lines.count("started") == 1, lines
    assert lines[-1] == "finished"


async def test_a_410_gone_in_the_middle_of_the_watch_is_survived(
    server: EmbeddedServer, client: LaunchplaneClient, target: Target, tmp_path: Path
) -> None:
    script = (
        "import time, pathlib; print('started', flush=True)\n"
        "while not pathlib.Path('/tmp/go').exists(): time.sleep(0.05)\n"
        "print('finished')"
    )
    emulator_only(target, "a real API server's watch expiry cannot be forced")
    kube = target.cluster
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(QUEUE, command_job(target, script))
        await wait_for_line(client, job["id"], lambda line: line == "started", timeout=JOB_TIMEOUT)
        watches = kube.emulator.watch_requests
        kube.emulator.expire_watches()  # every open watch gets 410; resumes must re-list
        (pod,) = target.pods(job["id"])
        await kube.wait_for(lambda: kube.emulator.watch_requests >= watches + 2, what="re-watch")
        await target.release(pod)
        done = await wait_for_state(client, job["id"], timeout=JOB_TIMEOUT)
        lines = await log_lines(client, job["id"])

    assert done["state"] == "succeeded", done
    assert lines.count("started") == 1 and lines[-1] == "finished", lines


OOM = "x = bytearray(512 * 1024 * 1024); print(len(x))"
UP = (
    "import signal, sys, time\n"
    # As PID 1 the interpreter ignores SIGTERM unless it asks for it: an evicted pod would
    # then run out its whole 30 s grace before it ends (as a real kubelet has it, too).
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
    "print('up', flush=True); time.sleep(60)"
)
FAILURES: dict[str, tuple[str, dict[str, Any], Evicted | None, str, bool]] = {
    # case: (script, job fields, emulator scenario, reason, infrastructure failure)
    "exit-code": (
        "import sys; print('loss is nan', flush=True); sys.exit(3)",
        {},
        None,
        "exit code 3; last lines of output:\nloss is nan",
        False,
    ),
    "oom-killed": (
        OOM,
        {"resource_args": {"kubernetes": {"limits": {"memory": "64Mi"}}}},
        None,
        "OOMKilled: container exceeded its memory limit (64Mi)",
        False,
    ),
    "deadline": (
        "import time; time.sleep(60)",
        {"resource_args": {"kubernetes": {"active_deadline_seconds": 1}}},
        None,
        "DeadlineExceeded: the Job ran longer than its activeDeadlineSeconds (1 s)",
        False,
    ),
    "image-pull": (
        "print(1)",
        {"docker": {"image": "<registry>/missing:never"}},
        None,
        "ErrImagePull: pod lp-<job>-1-",
        True,
    ),
    "evicted": (UP, {}, Evicted(), "Evicted: pod lp-<job>-1-", True),
    "preempted": (
        UP,
        {},
        Evicted(message="preempted by a higher-priority pod", reason="Preempted"),
        "Preempted: pod lp-<job>-1-",
        True,
    ),
}


@pytest.mark.parametrize("case", list(FAILURES))
async def test_each_failure_reason_reaches_the_user_in_words(
    case: str, server: EmbeddedServer, client: LaunchplaneClient, target: Target, tmp_path: Path
) -> None:
    script, fields, scenario, reason, infrastructure = FAILURES[case]
    if scenario is not None:
        emulator_only(target, f"a real cluster cannot be made to produce {case} on demand")
        target.cluster.controller.script(lambda pod: True, scenario)
    if "docker" in fields:
        fields = {
            "docker": {"image": fields["docker"]["image"].replace("<registry>", target.registry)}
        }
    async with running_agent(server, tmp_path / "work", [QUEUE], cancel_grace=0.0):
        job = await client.submit_job(QUEUE, command_job(target, script, **fields))
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
        assert target.job(f"lp-{job['id']}-1") is None or case in ("evicted", "preempted")


async def test_the_verdict_is_reported_while_a_silent_pod_still_holds_its_log_stream(
    server: EmbeddedServer, client: LaunchplaneClient, target: Target, tmp_path: Path
) -> None:
    """A Job past its deadline fails at once; its pod may keep running for its grace.

    The container ignores SIGTERM and prints nothing, so its log stream stays open
    until the kubelet kills it (the pod's default 30 s grace). The agent must report
    the verdict without waiting for that stream: the job is final while the
    container still runs. It also covers the reader that is stopped while a worker
    thread is blocked on the stream's socket (that close used to hang until the
    container's next output, here: its end).
    """
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True); time.sleep(120)"
    )
    fields = command_job(
        target, script, resource_args={"kubernetes": {"active_deadline_seconds": 2}}
    )
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(QUEUE, fields)
        await wait_for_line(client, job["id"], lambda line: line == "up", timeout=JOB_TIMEOUT)
        done = await wait_for_state(client, job["id"], timeout=JOB_TIMEOUT)
        still_running = target.running(job["id"])

    assert done["state"] == "failed", done
    assert done["reason"].startswith("DeadlineExceeded"), done["reason"]
    assert still_running, "the job was reported only once its pod's container had ended"
    assert "up" in await log_lines(client, job["id"])

"""The kubernetes runner's parts: results from objects, the watch helper, --kube-context.

``judge``/``stuck`` read plain objects shaped as the API returns them (no
server). ``watch`` runs against kmock's emulator as extended in k8skit, over
loopback with the real ``kubernetes`` client, and the emulator's 410 and
dropped-stream controls.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from k8skit import Emulator, write_kubeconfig

from launchplane.core.interfaces import RunState
from launchplane.plugins.kube import CONTEXT_ENV
from launchplane.plugins.runners.kubernetes import Where, judge, stuck, watch

pytestmark = pytest.mark.anyio

JOB = Where("batch", "v1", "Job", "jobs", "ml", "lp-abc-1")
PYTORCH = Where("kubeflow.org", "v1", "PyTorchJob", "pytorchjobs", "ml", "lp-abc-1")
VOLCANO = Where("batch.volcano.sh", "v1alpha1", "Job", "jobs", "ml", "lp-abc-1")


def condition(kind: str, reason: str = "", message: str = "", status: str = "True") -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def job(*conditions: dict, **spec: Any) -> dict:
    return {
        "metadata": {"name": "lp-abc-1"},
        "spec": spec,
        "status": {"conditions": list(conditions)},
    }


def pod(phase: str, *, state: dict | None = None, **status: Any) -> dict:
    container = {"name": "main", "restartCount": 0, "state": state or {}}
    return {
        "metadata": {"name": "lp-abc-1-x", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "main", "resources": {"limits": {"memory": "64Mi"}}}]},
        "status": {"phase": phase, "containerStatuses": [container], **status},
    }


def terminated(code: int, reason: str = "Error", message: str = "") -> dict:
    return {"terminated": {"exitCode": code, "reason": reason, "message": message}}


def test_a_complete_job_succeeded_and_a_running_one_is_undecided() -> None:
    verdict = judge(JOB, job(condition("Complete")), [pod("Succeeded", state=terminated(0))])
    assert verdict is not None and verdict.result.state is RunState.SUCCEEDED
    assert judge(JOB, job(), [pod("Running", state={"running": {}})]) is None


@pytest.mark.parametrize(
    ("failed_pod", "reason", "infrastructure", "code"),
    [
        (pod("Failed", state=terminated(3)), "exit code 3", False, 3),
        (
            pod("Failed", state=terminated(137, "OOMKilled")),
            "OOMKilled: container exceeded its memory limit (64Mi)",
            False,
            137,
        ),
        (
            pod("Failed", reason="Evicted", message="The node was low on resource: memory. "),
            "Evicted: pod lp-abc-1-x: The node was low on resource: memory.",
            True,
            None,
        ),
        (
            pod(
                "Failed",
                conditions=[condition("DisruptionTarget", "PreemptionByScheduler", "preempted")],
            ),
            "Preempted: pod lp-abc-1-x: preempted",
            True,
            None,
        ),
    ],
)
def test_a_failed_job_is_explained_by_its_failed_pod(
    failed_pod: dict, reason: str, infrastructure: bool, code: int | None
) -> None:
    verdict = judge(JOB, job(condition("Failed", "BackoffLimitExceeded")), [failed_pod])
    assert verdict is not None
    assert verdict.result.state is RunState.FAILED
    assert verdict.result.reason == reason
    assert verdict.result.infrastructure_failure is infrastructure
    assert verdict.result.exit_code == code
    assert (verdict.tail_pod is not None) == reason.startswith("exit code")


def test_a_deadline_is_reported_as_such() -> None:
    failed = condition(
        "Failed", "DeadlineExceeded", "Job was active longer than specified deadline"
    )
    verdict = judge(JOB, job(failed, activeDeadlineSeconds=5), [])
    assert verdict is not None
    assert verdict.result.reason == (
        "DeadlineExceeded: the Job ran longer than its activeDeadlineSeconds (5 s)"
    )


def test_custom_kinds_have_their_status_shapes_read() -> None:
    done = judge(PYTORCH, job(condition("Running"), condition("Succeeded")), [])
    assert done is not None and done.result.state is RunState.SUCCEEDED
    failed = judge(PYTORCH, job(condition("Failed", "PyTorchJobFailed", "worker 1 failed")), [])
    assert failed is not None and failed.result.reason == "PyTorchJobFailed: worker 1 failed"
    volcano = {"status": {"state": {"phase": "Aborted", "message": "queue closed"}}}
    aborted = judge(VOLCANO, volcano, [])
    assert aborted is not None and aborted.result.reason == "Aborted: queue closed"
    assert judge(VOLCANO, {"status": {"state": {"phase": "Running"}}}, []) is None


def test_an_init_container_that_cannot_start_or_failed_is_named() -> None:
    waiting = {"waiting": {"reason": "PodInitializing"}}
    pulling = pod("Pending", state=waiting)
    message = 'Failed to pull image "lp:1": not found'
    pulling["status"]["initContainerStatuses"] = [
        {"name": "lp-fetch-0", "state": {"waiting": {"reason": "ErrImagePull", "message": message}}}
    ]
    assert stuck([pulling]) == ("ErrImagePull", f"pod lp-abc-1-x: {message}", True)
    failed = pod("Failed", state=waiting)
    failed["status"]["initContainerStatuses"] = [{"name": "lp-fetch-0", "state": terminated(1)}]
    verdict = judge(JOB, job(condition("Failed", "BackoffLimitExceeded", "")), [failed])
    assert verdict is not None
    assert verdict.result.reason == (
        "Init:Error: init container lp-fetch-0 failed fetching an input artifact in pod "
        "lp-abc-1-x (exit code 1)"
    )
    assert (verdict.tail_pod, verdict.tail_container) == ("lp-abc-1-x", "lp-fetch-0")


def test_pods_the_cluster_will_not_start_are_found() -> None:
    pulling = pod(
        "Pending",
        state={"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling "x"'}},
    )
    assert stuck([pulling]) == (
        "ImagePullBackOff",
        'pod lp-abc-1-x: Back-off pulling "x"',
        True,
    )
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    pending = pod(
        "Pending", conditions=[condition("PodScheduled", "Unschedulable", message, "False")]
    )
    assert stuck([pending]) == ("Unschedulable", message, False)
    config = pod(
        "Pending",
        state={
            "waiting": {
                "reason": "CreateContainerConfigError",
                "message": 'secret "db" not found',
            }
        },
    )
    assert stuck([config]) == (
        "CreateContainerConfigError",
        'pod lp-abc-1-x: secret "db" not found',
        False,
    )
    assert stuck([pod("Running", state={"running": {}})]) is None


async def test_watch_lists_then_follows_and_survives_410_and_dropped_streams(tmp_path) -> None:
    """Real client, emulator on loopback: a compaction re-lists, a dropped stream resumes."""
    import kmock
    import kubernetes

    async with Emulator(strict=False) as emulator, kmock.Server(emulator) as server:
        config = write_kubeconfig(tmp_path / "kubeconfig", str(server.url).rstrip("/"))
        api = kubernetes.config.new_client_from_config(config_file=str(config))
        core = kubernetes.client.CoreV1Api(api)

        def make(name: str) -> None:
            core.create_namespaced_config_map("default", {"metadata": {"name": name}})

        await anyio.to_thread.run_sync(make, "before")
        seen: list[tuple[str, str]] = []
        events = watch(
            core.list_namespaced_config_map, "default", serialize=api.sanitize_for_serialization
        )
        with anyio.fail_after(20):
            async for kind, obj in events:
                seen.append((kind, obj["metadata"]["name"]))
                if seen == [("LISTED", "before")]:
                    await anyio.to_thread.run_sync(make, "first")
                elif seen[-1] == ("ADDED", "first"):
                    emulator.drop_watches()
                    await anyio.to_thread.run_sync(make, "second")
                elif seen[-1] == ("ADDED", "second"):
                    emulator.expire_watches()
                    await anyio.to_thread.run_sync(make, "third")
                elif ("LISTED", "third") in seen or ("ADDED", "third") in seen:
                    break
        await events.aclose()

    assert seen[:3] == [("LISTED", "before"), ("ADDED", "first"), ("ADDED", "second")]
    # Nothing is seen twice across the dropped stream; after the 410 the list is read again.
    assert ("LISTED", "before") in seen[3:], seen
    assert emulator.watch_requests == 2  # the first, and the resume after the drop


def test_kube_context_flag_is_what_the_plugins_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from launchplane.cli import agent as agent_cli

    seen: dict[str, str | None] = {}

    def fake_run(options: dict[str, Any]) -> int:
        seen["context"] = os.environ.get("LAUNCHPLANE_KUBE_CONTEXT")
        return 0

    monkeypatch.setattr(agent_cli, "_run", fake_run)
    monkeypatch.setenv("LAUNCHPLANE_KUBE_CONTEXT", "from-the-environment")  # restored after
    result = CliRunner().invoke(agent_cli.agent, ["--kube-context", "prod-east", "-q", "q"])
    assert result.exit_code == 0, result.output
    assert seen == {"context": "prod-east"}
    assert agent_cli.KUBE_CONTEXT_ENV == CONTEXT_ENV  # the name the plugins read

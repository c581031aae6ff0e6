"""The harness itself, through the real ``kubernetes`` client: what the runner tests rely on.

Uses kmock's emulator as extended in k8skit (resourceVersion, selectors,
410 Gone, garbage collection, pods/log) and the test-side pod controller on
the real Docker engine.
"""

from __future__ import annotations

import base64

import anyio
import pytest
from k8skit import Cluster, Outcome
from kit import DOCKER_BASE_IMAGE

pytestmark = [pytest.mark.kubernetes, pytest.mark.anyio]


def _clients(kube: Cluster):
    import kubernetes

    api = kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig))
    return kubernetes.client.BatchV1Api(api), kubernetes.client.CoreV1Api(api)


def _job(name: str, script: str, **spec) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"lp": "yes"}},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": DOCKER_BASE_IMAGE,
                            "command": ["python3", "-c", script],
                            "env": [
                                {
                                    "name": "TOKEN",
                                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}},
                                }
                            ],
                        }
                    ],
                }
            },
        },
    }


async def test_a_job_runs_its_pod_in_docker_with_logs_exit_code_and_gc(kube: Cluster) -> None:
    import kubernetes

    batch, core = _clients(kube)
    await anyio.to_thread.run_sync(
        lambda: core.create_namespaced_secret(
            "default", {"metadata": {"name": "s"}, "stringData": {"t": "tok"}}
        )
    )
    secret = kube.emulator.get("v1/secrets", "default", "s")
    assert secret["data"] == {"t": base64.b64encode(b"tok").decode()} and "stringData" not in secret
    created = await anyio.to_thread.run_sync(
        lambda: batch.create_namespaced_job(
            "default", _job("j1", "import os,sys; print('hi', os.environ['TOKEN']); sys.exit(3)")
        )
    )
    assert created.metadata.uid and created.metadata.resource_version
    version = created.metadata.resource_version

    # A watch from the creation's version sees what came after, not the creation again.
    def watch_until_failed() -> list[str]:
        seen = []
        for event in kubernetes.watch.Watch().stream(
            batch.list_namespaced_job, "default", resource_version=version, timeout_seconds=30
        ):
            seen.append(event["type"])
            conditions = event["object"].status.conditions or []
            if any(c.type == "Failed" for c in conditions):
                return seen
        return seen

    seen = await anyio.to_thread.run_sync(watch_until_failed)
    assert seen and "ADDED" not in seen, seen
    pods = await anyio.to_thread.run_sync(
        lambda: core.list_namespaced_pod("default", label_selector="job-name=j1")
    )
    (pod,) = pods.items
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 3 and terminated.reason == "Error"
    log = await anyio.to_thread.run_sync(
        lambda: core.read_namespaced_pod_log(pod.metadata.name, "default", follow=True)
    )
    assert log == "hi tok\n"

    await anyio.to_thread.run_sync(
        lambda: batch.delete_namespaced_job("j1", "default", propagation_policy="Foreground")
    )
    assert kube.emulator.list("v1/pods") == []
    assert kube.emulator.deletions[-1]["propagationPolicy"] == "Foreground"


async def test_a_watch_from_a_compacted_version_gets_410(kube: Cluster) -> None:
    import kubernetes

    _, core = _clients(kube)
    made = await anyio.to_thread.run_sync(
        lambda: core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    )
    kube.emulator.expire_watches()

    def watch() -> None:
        for _ in kubernetes.watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=made.metadata.resource_version,
            timeout_seconds=5,
        ):
            pass

    with pytest.raises(kubernetes.client.ApiException) as caught:
        await anyio.to_thread.run_sync(watch)
    assert caught.value.status == 410


async def test_handle_image_runs_a_pod_in_python_with_a_termination_message(kube: Cluster) -> None:
    """The extension point the kaniko tests use: no Docker, the handler is the container."""
    seen = []

    async def handler(pod) -> Outcome:
        seen.append(pod.manifest["metadata"]["name"])
        await pod.log("building")
        return Outcome(exit_code=0, lines=("done",), termination_message="sha256:abc")

    kube.controller.handle_image(lambda image: image.startswith("fake/"), handler)
    batch, core = _clients(kube)
    job = _job("k1", "")
    job["spec"]["template"]["spec"]["containers"][0]["image"] = "fake/executor"
    await anyio.to_thread.run_sync(lambda: batch.create_namespaced_job("default", job))
    done = await kube.wait_for(
        lambda: (
            (kube.emulator.get("batch/v1/jobs", "default", "k1") or {})
            .get("status", {})
            .get("succeeded")
        ),
        what="job k1 to succeed",
    )
    assert done == 1
    (pod,) = kube.emulator.list("v1/pods")
    assert seen == [pod["metadata"]["name"]]
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["message"] == "sha256:abc"
    log = await anyio.to_thread.run_sync(
        lambda: core.read_namespaced_pod_log(pod["metadata"]["name"], "default")
    )
    assert log == "building\ndone\n"


async def test_the_cluster_stops_while_a_pod_still_runs(tmp_path, k8s_docker) -> None:
    """A test that ends early (it failed) must not hang on a pod that never ends.

    The controller's worker threads block on the container's log stream; only
    killing the container lets them go. ``fail_after`` turns a hang into a failure.
    """
    from k8skit import cluster

    with anyio.fail_after(60):
        async with cluster(tmp_path, k8s_docker) as kube:
            batch, core = _clients(kube)
            secret = {"metadata": {"name": "s"}, "stringData": {"t": "tok"}}
            await anyio.to_thread.run_sync(lambda: core.create_namespaced_secret("default", secret))
            job = _job("forever", "import time\nwhile True: time.sleep(1)")
            await anyio.to_thread.run_sync(lambda: batch.create_namespaced_job("default", job))
            await kube.wait_for(lambda: kube.controller.pod_created, what="the pod")
            await kube.wait_for(
                lambda: k8s_docker.containers.list(filters={"name": "k8skit-forever"}),
                what="its container",
            )
    assert not k8s_docker.containers.list(filters={"name": "k8skit-forever"})

"""Input artifacts on the kubernetes runner: an ``s3`` store through an init container, a
``file`` store through ``artifact_volumes``.

End to end: the queue server, the agent (in this event loop), the kubernetes
client, the emulator and the pod controller of ``k8skit`` (its docstring says
what it stands in for: here the kubelet's init containers and its ``emptyDir`` /
``persistentVolumeClaim`` volumes as host directories bind-mounted into the real
Docker container of the job), the ``s3`` store against moto's server with real
boto3, and the ``file`` store on this host's disk.

The fetcher image is simulated: no registry here can serve a launchplane image,
so :meth:`PodController.handle_image` runs the init container's own command line
- the REAL ``launchplane artifact fetch`` - as a process on this host, writing
into the host directory that stands in for the pod's ``emptyDir``. It gets the
container's environment as the kubelet resolved it, plus moto's test
credentials standing in for the pod's own (IRSA): the agent puts none in the pod.

These run on the emulator only (the ``kube`` fixture, not ``targets.Target``): a
real cluster would need a launchplane image in a registry it pulls from and a
PersistentVolume holding the file store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import boto3
import pytest
from k8skit import Cluster, HandledPod, Outcome
from kit import (
    AWS_TEST_ENV,
    DOCKER_BASE_IMAGE,
    LAUNCHPLANE,
    log_lines,
    running_agent,
    wait_for_state,
)

from launchplane.core.client import LaunchplaneClient
from launchplane.core.errors import ConfigError
from launchplane.core.interfaces import Mount, PluginError
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.artifacts.file import FileArtifactStore, FileStoreOptions
from launchplane.plugins.artifacts.s3 import S3ArtifactStore, S3StoreOptions
from launchplane.plugins.runners import kubernetes_manifest as manifest
from launchplane.plugins.runners.kubernetes import KubernetesRunner
from launchplane.server.embedded import EmbeddedServer

pytestmark = [pytest.mark.kubernetes, pytest.mark.docker, pytest.mark.anyio]

QUEUE = "k8s-artifacts"
NAMESPACE = "ml"
FETCHER = "launchplane/artifact-fetcher:simulated"
JOB_TIMEOUT = 60
READER = """
import os, pathlib
root = pathlib.Path(os.environ["LAUNCHPLANE_ARTIFACT_DATASET"])
print("path", root)
print("content", (root / "train.csv").read_text().replace(chr(10), "|"))
try:
    (root / "mine.txt").write_text("x")
    print("writable")
except OSError as exc:
    print("read-only", exc.errno)
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        yield srv


def queue_config(store: dict[str, Any], **kubernetes: Any) -> dict[str, Any]:
    return {
        "resource": "kubernetes",
        "builder": {
            "type": "docker",
            "base_image": DOCKER_BASE_IMAGE,
            "options": {"registry": "127.0.0.1:5000/lptest"},
        },
        "artifact_store": store,
        "resource_args": {"kubernetes": {"namespace": NAMESPACE, **kubernetes}},
    }


def reader_job() -> dict[str, Any]:
    return {
        "name": "lptest-k8s-inputs",
        "docker": {"image": DOCKER_BASE_IMAGE},
        "command": ["python3", "-c", READER],
        "input_artifacts": ["dataset"],
    }


def run_fetcher(pod: HandledPod) -> Outcome:
    """The fetcher image's container as a host process: its command, paths in the pod's
    volumes translated to their host directories, the pod's environment."""
    argv = [LAUNCHPLANE if arg == "launchplane" else arg for arg in pod.container["command"]]
    argv = [str(pod.host_path(arg) or arg) if arg.startswith("/") else arg for arg in argv]
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "HOME": str(pod.host_path("/launchplane-input") or "/nonexistent"),
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        **pod.env,
        **AWS_TEST_ENV,  # stands in for the pod's IRSA web identity
    }
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    return Outcome(done.returncode, tuple((done.stdout + done.stderr).splitlines()))


def simulate_fetcher(kube: Cluster) -> None:
    async def handler(pod: HandledPod) -> Outcome:
        return await anyio.to_thread.run_sync(run_fetcher, pod)

    kube.controller.handle_image(lambda image: image == FETCHER, handler)


def s3_store(moto_url: str) -> tuple[S3ArtifactStore, dict[str, Any]]:
    bucket = f"lp-k8s-inputs-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
    options = {"bucket": bucket, "prefix": "team", "endpoint_url": moto_url}
    return S3ArtifactStore(S3StoreOptions(**options)), {"type": "s3", "options": options}


def dataset(tmp_path: Path, text: str) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "train.csv").write_text(text)
    return data


async def run_job(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(QUEUE, reader_job())
        done = await wait_for_state(client, job["id"], timeout=JOB_TIMEOUT)
        record = await client.get_record(job["id"])
        lines = await log_lines(client, job["id"])
    return done, record, lines


def the_pod(kube: Cluster) -> dict[str, Any]:
    (pod,) = kube.emulator.list("v1/pods", NAMESPACE)
    return pod


# -- end to end ---------------------------------------------------------------------------


async def test_an_s3_store_input_is_fetched_by_an_init_container_and_mounted_read_only(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    kube: Cluster,
    aws_env: dict[str, str],
    tmp_path: Path,
) -> None:
    store, spec = s3_store(aws_env["AWS_ENDPOINT_URL"])
    v0 = await store.upload(dataset(tmp_path, "x,y\n1,0\n"), "dataset")
    await server.ensure_queue(QUEUE, queue_config(spec, artifact_fetcher_image=FETCHER))
    simulate_fetcher(kube)

    done, record, lines = await run_job(server, client, tmp_path)

    assert done["state"] == "succeeded", (record.get("result"), lines[-15:])
    assert "content x,y|1,0|" in lines
    assert "path /launchplane/artifacts/dataset" in lines
    assert "read-only 30" in lines  # EROFS: the job cannot change its input
    [pinned] = record["artifacts"]["inputs"]
    assert (pinned["version"], pinned["digest"], pinned["store"]) == ("v0", v0.digest, "s3")
    pod = the_pod(kube)
    [init] = pod["spec"]["initContainers"]
    assert init["image"] == FETCHER
    uri = f"s3://{spec['options']['bucket']}/team/dataset/versions/v0/"
    assert init["command"][:5] == ["launchplane", "artifact", "fetch", uri, "/launchplane-input"]
    assert init["command"][5:7] == ["--digest", v0.digest]
    [mount] = [m for m in pod["spec"]["containers"][0]["volumeMounts"]]
    assert mount == {
        "name": "lp-input-0",
        "mountPath": "/launchplane/artifacts/dataset",
        "readOnly": True,
    }
    assert {"name": "lp-input-0", "emptyDir": {}} in pod["spec"]["volumes"]
    assert "AWS_SECRET_ACCESS_KEY" not in json.dumps(pod)  # the pod's credentials are its own
    assert not (tmp_path / "work" / ".artifact-cache").exists()  # nothing on the agent host
    [status] = pod["status"]["initContainerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == 0


async def test_a_changed_s3_version_fails_the_pod_in_its_init_container(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    kube: Cluster,
    aws_env: dict[str, str],
    tmp_path: Path,
) -> None:
    store, spec = s3_store(aws_env["AWS_ENDPOINT_URL"])
    await store.upload(dataset(tmp_path, "x,y\n1,0\n"), "dataset")
    boto3.client("s3", region_name="us-east-1").put_object(  # damaged behind the store's back
        Bucket=spec["options"]["bucket"], Key="team/dataset/versions/v0/train.csv", Body=b"evil"
    )
    await server.ensure_queue(QUEUE, queue_config(spec, artifact_fetcher_image=FETCHER))
    simulate_fetcher(kube)

    done, record, lines = await run_job(server, client, tmp_path)

    assert done["state"] == "failed"
    reason = record["result"]["reason"]
    assert "Init:Error: init container lp-fetch-0 failed fetching an input artifact" in reason
    assert "differs from the pinned" in reason  # the fetcher's own words, from its log
    assert not any(line.startswith("content") for line in lines)  # the job never ran
    pod = the_pod(kube)
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "PodInitializing"


async def test_a_file_store_input_is_mounted_read_only_from_the_mapped_volume(
    server: EmbeddedServer, client: LaunchplaneClient, kube: Cluster, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    store = FileArtifactStore(FileStoreOptions(root=root))
    v0 = await store.upload(dataset(tmp_path, "a,b\n3,4\n"), "dataset")
    kube.controller.register_claim("artifacts", root)  # the PVC's volume holds the store
    volumes = {str(root): {"persistentVolumeClaim": {"claimName": "artifacts"}}}
    config = queue_config(
        {"type": "file", "options": {"root": str(root)}}, artifact_volumes=volumes
    )
    await server.ensure_queue(QUEUE, config)

    done, record, lines = await run_job(server, client, tmp_path)

    assert done["state"] == "succeeded", (record.get("result"), lines[-15:])
    assert "content a,b|3,4|" in lines
    assert "read-only 30" in lines
    assert not (root / "dataset" / "versions" / "v0" / "mine.txt").exists()
    [pinned] = record["artifacts"]["inputs"]
    assert (pinned["version"], pinned["digest"], pinned["store"]) == ("v0", v0.digest, "file")
    pod = the_pod(kube)
    assert pod["spec"]["containers"][0]["volumeMounts"] == [
        {
            "name": "lp-artifacts-0",
            "mountPath": "/launchplane/artifacts/dataset",
            "readOnly": True,
            "subPath": "dataset/versions/v0",
        }
    ]
    assert {
        "name": "lp-artifacts-0",
        "persistentVolumeClaim": {"claimName": "artifacts"},
    } in pod["spec"]["volumes"]
    assert not (tmp_path / "work" / ".artifact-cache").exists()


@pytest.mark.parametrize("kind", ["s3", "file"])
async def test_an_input_the_queue_gives_no_way_into_the_pod_fails_naming_the_option(
    kind: str,
    server: EmbeddedServer,
    client: LaunchplaneClient,
    kube: Cluster,
    aws_env: dict[str, str],
    tmp_path: Path,
) -> None:
    if kind == "s3":
        store, spec = s3_store(aws_env["AWS_ENDPOINT_URL"])
        option = "artifact_fetcher_image"
    else:
        root = tmp_path / "store"
        store, spec = (
            FileArtifactStore(FileStoreOptions(root=root)),
            {
                "type": "file",
                "options": {"root": str(root)},
            },
        )
        option = "resource_args.kubernetes.artifact_volumes: {<the store's root>: "
    await store.upload(dataset(tmp_path, "x\n"), "dataset")
    await server.ensure_queue(QUEUE, queue_config(spec))

    done, record, _ = await run_job(server, client, tmp_path)

    assert done["state"] == "failed"
    reason = record["result"]["reason"]
    assert option in reason, reason
    assert "input artifact at artifacts/dataset ($LAUNCHPLANE_ARTIFACT_DATASET)" in reason
    assert kube.emulator.list("batch/v1/jobs", NAMESPACE) == []  # nothing was created


async def test_an_unpullable_fetcher_image_fails_the_run_as_an_infrastructure_failure(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    kube: Cluster,
    aws_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """A real pull from the test registry, of an image it does not have (Docker's words)."""
    store, spec = s3_store(aws_env["AWS_ENDPOINT_URL"])
    await store.upload(dataset(tmp_path, "x\n"), "dataset")
    missing = "127.0.0.1:5000/lptest/no-such-fetcher:never"
    await server.ensure_queue(QUEUE, queue_config(spec, artifact_fetcher_image=missing))

    done, record, _ = await run_job(server, client, tmp_path)

    assert done["state"] == "failed"
    reason = record["result"]["reason"]
    assert reason.startswith("ErrImagePull: pod lp-"), reason
    assert missing in reason
    (failed,) = [e for e in done["events"] if e["state"] == "failed"]
    assert (failed["details"] or {}).get("infrastructure_failure") is True
    assert kube.emulator.list("batch/v1/jobs", NAMESPACE) == []  # the runner deleted it


# -- the fetch command --------------------------------------------------------------------


async def test_fetch_refuses_a_digest_mismatch_and_removes_what_it_downloaded(
    aws_env: dict[str, str], tmp_path: Path
) -> None:
    store, _ = s3_store(aws_env["AWS_ENDPOINT_URL"])
    v0 = await store.upload(dataset(tmp_path, "x,y\n1,0\n"), "dataset")
    uri = store.version_uri(v0)
    wrong = "sha256:" + "0" * 64

    def fetch(dest: Path, digest: str) -> subprocess.CompletedProcess[str]:
        argv = [LAUNCHPLANE, "artifact", "fetch", uri, str(dest), "--digest", digest]
        return subprocess.run(argv, env=dict(os.environ), capture_output=True, text=True)

    refused = await anyio.to_thread.run_sync(fetch, tmp_path / "bad", wrong)
    assert refused.returncode == 1
    assert f"differs from the pinned {wrong}" in refused.stderr
    assert list((tmp_path / "bad").rglob("*.csv")) == []

    fetched = await anyio.to_thread.run_sync(fetch, tmp_path / "good", v0.digest)
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "good" / "train.csv").read_text() == "x,y\n1,0\n"


# -- the manifest ---------------------------------------------------------------------------


def args(**fields: Any) -> manifest.KubernetesArgs:
    return manifest.KubernetesArgs.model_validate(fields)


def test_inputs_are_init_containers_emptydirs_and_subpath_mounts_in_a_valid_manifest() -> None:
    mounts = [
        Mount(
            None,
            "artifacts/dataset",
            "LAUNCHPLANE_ARTIFACT_DATASET",
            uri="s3://b/team/dataset/versions/v3/",
            digest="sha256:" + "a" * 64,
        ),
        Mount(
            None,
            "/data/model",
            "LAUNCHPLANE_ARTIFACT_MODEL",
            uri="file:///mnt/artifacts/model/versions/v1/",
        ),
    ]
    given = args(
        artifact_fetcher_image="registry/launchplane:1",
        artifact_volumes={"/mnt/artifacts": {"persistent_volume_claim": {"claim_name": "a"}}},
    )
    inputs = manifest.input_artifacts(
        mounts, given, fetch_flags=["--endpoint-url", "http://minio:9000"]
    )
    job = ResolvedJob(resource="kubernetes", command=["python3", "x.py"])
    env = {**inputs.env}
    workload = manifest.render(
        job,
        "img@sha256:" + "b" * 64,
        run_id="j-1",
        labels={},
        env=env,
        secret_names=set(),
        native_secrets={},
        args=given,
        inputs=inputs,
    )
    pod = workload.body["spec"]["template"]["spec"]
    assert pod["initContainers"] == [
        {
            "name": "lp-fetch-0",
            "image": "registry/launchplane:1",
            "command": [
                "launchplane",
                "artifact",
                "fetch",
                "s3://b/team/dataset/versions/v3/",
                "/launchplane-input",
                "--digest",
                "sha256:" + "a" * 64,
                "--endpoint-url",
                "http://minio:9000",
            ],
            "volumeMounts": [{"name": "lp-input-0", "mountPath": "/launchplane-input"}],
        }
    ]
    assert pod["volumes"] == [
        {"name": "lp-input-0", "emptyDir": {}},
        {"name": "lp-artifacts-0", "persistentVolumeClaim": {"claimName": "a"}},
    ]
    first = pod["containers"][0]
    assert first["volumeMounts"] == [
        {"name": "lp-input-0", "mountPath": "/launchplane/artifacts/dataset", "readOnly": True},
        {
            "name": "lp-artifacts-0",
            "mountPath": "/data/model",
            "readOnly": True,
            "subPath": "model/versions/v1",
        },
    ]
    values = {e["name"]: e.get("value") for e in first["env"]}
    assert values["LAUNCHPLANE_ARTIFACT_DATASET"] == "/launchplane/artifacts/dataset"
    assert values["LAUNCHPLANE_ARTIFACT_MODEL"] == "/data/model"


def test_an_agent_download_is_refused_with_both_ways_named() -> None:
    mount = Mount(Path("/cache/x"), "artifacts/ckpt", "LAUNCHPLANE_ARTIFACT_CKPT")
    with pytest.raises(PluginError, match=r"artifact_fetcher_image.*artifact_volumes"):
        manifest.input_artifacts([mount], args())


def test_artifact_volumes_roots_are_absolute_and_queue_only() -> None:
    with pytest.raises(ConfigError, match="absolute path"):
        args(artifact_volumes={"relative/root": {"emptyDir": {}}})
    admin = manifest.KubernetesArgs.model_fields
    for name in ("artifact_fetcher_image", "artifact_volumes"):
        assert admin[name].json_schema_extra == manifest.ADMIN_ONLY


def test_a_hostpath_artifact_volume_needs_allow_privileged() -> None:
    volumes = {"/mnt/artifacts": {"hostPath": {"path": "/mnt/artifacts"}}}
    with pytest.raises(ConfigError, match="a hostPath volume reaches the node"):
        args(artifact_volumes=volumes)
    assert args(artifact_volumes=volumes, allow_privileged=True).artifact_volumes == volumes


def plan_job(store: dict[str, Any], **kubernetes: Any) -> ResolvedJob:
    return ResolvedJob.model_validate(
        {
            "resource": "kubernetes",
            "command": ["python3", "x.py"],
            "docker": {"image": "img:1"},
            "artifact_store": store,
            "input_artifacts": [{"name": "dataset", "alias": "v2"}],
            "resource_args": {"kubernetes": kubernetes},
        }
    )


def test_plan_shows_the_init_container_and_refuses_a_missing_fetcher_image() -> None:
    runner = KubernetesRunner()
    s3 = {"type": "s3", "options": {"bucket": "ml", "region": "eu-west-1"}}
    with pytest.raises(PluginError, match=r"set resource_args\.kubernetes\.artifact_fetcher_image"):
        runner.describe(plan_job(s3), None)
    described = runner.describe(plan_job(s3, artifact_fetcher_image="lp:1"), None)
    pod = described["manifest"]["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert init["command"][3] == "s3://ml/<version of dataset:v2, pinned at launch>/"
    assert init["command"][5:] == ["--digest", "<pinned at launch>", "--region", "eu-west-1"]
    assert pod["containers"][0]["volumeMounts"][0]["readOnly"] is True


def test_plan_shows_the_file_store_mount_and_refuses_an_unmapped_root(tmp_path: Path) -> None:
    runner = KubernetesRunner()
    store = {"type": "file", "options": {"root": "/mnt/artifacts"}}
    with pytest.raises(PluginError, match="which no pod volume holds: map the store's root"):
        runner.describe(plan_job(store), None)
    volumes = {"/mnt/artifacts": {"nfs": {"server": "nfs.local", "path": "/exports/a"}}}
    described = runner.describe(plan_job(store, artifact_volumes=volumes), None)
    pod = described["manifest"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "lp-artifacts-0", "nfs": {"server": "nfs.local", "path": "/exports/a"}}
    ]
    [mount] = pod["containers"][0]["volumeMounts"]
    assert mount["subPath"] == "<version of dataset:v2, pinned at launch>"
    assert mount["readOnly"] is True


def test_the_fetch_command_is_registered_without_importing_boto3() -> None:
    code = (
        "import sys; from launchplane.cli import cli; "
        "cli.main(['artifact', '--help'], standalone_mode=False); "
        "print('boto3' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("False")

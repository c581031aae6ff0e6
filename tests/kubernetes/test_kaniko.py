"""The kaniko builder: its Job, the context handover, digest pinning, skipping, failures, stop.

What is real: the ``kubernetes`` client over loopback HTTP to kmock's emulator
(as extended in k8skit), the registry at 127.0.0.1:5000 and its HTTP API
(the tag lookup), the Docker engine, moto's S3 server for large contexts, and
the builder's code end to end. What is simulated: k8skit's pod controller
(a stand-in for the Job controller and kubelet), and the kaniko executor itself,
which :mod:`kaniko_sim` replaces: it builds the context the pod would receive
with the Docker engine, pushes it, and returns the digest as the termination
message (no kaniko image is reachable here). The manifests are also checked
against the Kubernetes OpenAPI schema (kubernetes-validate).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from k8skit import Cluster, HandledPod, Outcome
from kaniko_sim import EXECUTOR_IMAGE, KanikoSim
from kit import DOCKER_BASE_IMAGE

from launchplane.core.interfaces import InfrastructureError, JobContext, PluginError
from launchplane.core.plugins import get_plugin_manager
from launchplane.core.registry import PluginOptionsError
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.builders import dockerfile
from launchplane.plugins.builders.kaniko import (
    KanikoBuilder,
    KanikoBuilderOptions,
    RegistryRef,
    build_job,
    build_job_name,
    config_map_handover,
    context_archive,
    registry_auth,
    registry_digest,
)
from launchplane.plugins.kube import call

REGISTRY = "127.0.0.1:5000"
NONCE = uuid.uuid4().hex
"""New every session: the registry outlives a test run, and a first build must build."""
SCHEMA_VERSION = "1.30"


@pytest.fixture(scope="module", autouse=True)
def remove_built_images(k8s_docker: Any) -> Any:
    """The simulator leaves the images it built in the engine: remove them afterwards."""
    import docker

    yield
    for image in k8s_docker.images.list():
        for reference in [*image.tags, *image.attrs.get("RepoDigests", [])]:
            if f"{REGISTRY}/lptest/lptest-kaniko-" in reference:
                with contextlib.suppress(docker.errors.ImageNotFound):
                    k8s_docker.images.remove(reference, force=True)


def make_app(path: Path, *, dockerfile_text: str | None = None, big: int = 0) -> Path:
    """A tiny code directory with a nonce (and its own Dockerfile, or padding, when asked)."""
    path.mkdir(parents=True)
    (path / "train.py").write_text("print('hello from kaniko')\n")
    (path / "nonce.txt").write_text(f"{NONCE} {path.name}\n")
    if dockerfile_text is not None:
        (path / "Dockerfile").write_text(dockerfile_text)
    if big:
        (path / "weights.bin").write_bytes(os.urandom(big))  # incompressible
    return path


def job(name: str) -> ResolvedJob:
    return ResolvedJob.model_validate(
        {
            "name": f"lptest-kaniko-{name}",
            "entry_point": ["python3", "train.py"],
            "builder": {"type": "kaniko", "base_image": DOCKER_BASE_IMAGE},
        }
    )


def context(tmp_path: Path, run: str, code: Path, lines: list[str]) -> JobContext:
    async def log(line: str) -> None:
        lines.append(line)

    job_id = f"lptest-kaniko-{run}-{NONCE[:8]}"
    (tmp_path / run).mkdir()
    return JobContext(
        job_id=job_id,
        run_id=f"{job_id}-1",
        attempt=1,
        queue="kaniko-tests",
        workdir=tmp_path / run,
        log=log,
        code_dir=code,
    )


def options(**extra: Any) -> KanikoBuilderOptions:
    data = {
        "registry": f"{REGISTRY}/lptest",
        "executor_image": EXECUTOR_IMAGE,
        "insecure": True,
        "poll_seconds": 0.05,
        **extra,
    }
    return KanikoBuilderOptions.model_validate(data)


def schema_errors(body: dict[str, Any]) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(body, SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [str(exc.message)]
    return []


def plan_of(tmp_path: Path, app: Path, name: str = "plan") -> dockerfile.BuildPlan:
    return dockerfile.plan_build(job(name), app, options().registry, lambda base, file: "conda")


@pytest.fixture(scope="module")
def registry() -> str:
    try:
        httpx.get(f"http://{REGISTRY}/v2/", timeout=2)
    except httpx.HTTPError:
        pytest.skip(f"no registry at {REGISTRY}")
    return REGISTRY


@pytest.fixture
def sim(kube: Cluster, k8s_docker: Any) -> KanikoSim:
    simulator = KanikoSim(k8s_docker)
    simulator.install(kube.controller)
    return simulator


def _api(kube: Cluster) -> tuple[Any, Any]:
    import kubernetes

    api = kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig))
    return kubernetes.client.BatchV1Api(api), kubernetes.client.CoreV1Api(api)


# -- pure parts ---------------------------------------------------------------------


def test_the_build_job_has_kanikos_arguments_and_is_schema_valid(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    plan = plan_of(tmp_path, app)
    opts = options(docker_config_secret="regcred", cache_repo=f"{REGISTRY}/lptest/cache")
    handover = config_map_handover("kaniko-x-context", "builds", context_archive(plan))
    body = build_job("kaniko-x", "builds", plan, opts, handover, {"launchplane.build": "x"})
    assert schema_errors(body) == []
    assert schema_errors(handover.config_map or {}) == []
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == EXECUTOR_IMAGE
    assert container["args"] == [
        "--context=tar:///kaniko/buildcontext/context.tar.gz",
        f"--dockerfile={dockerfile.GENERATED_DOCKERFILE}",
        f"--destination={REGISTRY}/lptest/lptest-kaniko-plan:{plan.tag}",
        "--cache=true",
        f"--label=launchplane.content-hash={plan.content_hash}",
        "--digest-file=/dev/termination-log",
        f"--cache-repo={REGISTRY}/lptest/cache",
        "--insecure",
    ]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    spec = body["spec"]
    assert (spec["backoffLimit"], spec["template"]["spec"]["restartPolicy"]) == (0, "Never")
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["context"] == {"name": "context", "configMap": {"name": "kaniko-x-context"}}
    assert volumes["docker-config"]["secret"] == {
        "secretName": "regcred",
        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
    }
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"context": "/kaniko/buildcontext", "docker-config": "/kaniko/.docker"}


def test_the_configmap_holds_the_shared_context_bytes(tmp_path: Path) -> None:
    """The archive is the shared tar (what the docker builder sends), gzipped deterministically."""
    import gzip
    import io
    import tarfile

    app = make_app(tmp_path / "app")
    plan = plan_of(tmp_path, app)
    archive = context_archive(plan)
    assert archive == context_archive(plan_of(tmp_path, app))
    handover = config_map_handover("c", "ns", archive)
    assert handover.config_map is not None
    data = base64.b64decode(handover.config_map["binaryData"]["context.tar.gz"])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        names = sorted(tar.getnames())
    assert names == sorted([*plan.files, *plan.extra_files()])
    shared = io.BytesIO()
    dockerfile.context_tar(plan.root, plan.files, plan.extra_files(), shared)
    assert gzip.decompress(data) == shared.getvalue()


def test_an_s3_context_is_read_by_kaniko_with_the_store_settings(tmp_path: Path) -> None:
    from launchplane.plugins.builders.kaniko import Handover

    plan = plan_of(tmp_path, make_app(tmp_path / "app"))
    opts = options(
        context_store="s3://ctx-bucket/builds",
        s3={"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"},
        aws_secret="aws-creds",
    )
    body = build_job("k", "ns", plan, opts, Handover("s3://ctx-bucket/builds/x.tar.gz", None), {})
    assert schema_errors(body) == []
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "--context=s3://ctx-bucket/builds/x.tar.gz"
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "AWS_REGION": "eu-west-1",
        "S3_ENDPOINT": "http://127.0.0.1:9",
        "S3_FORCE_PATH_STYLE": "true",
    }
    assert container["volumeMounts"] == [
        {"name": "aws", "mountPath": "/root/.aws", "readOnly": True}
    ]


def test_options_name_the_field_and_the_fix() -> None:
    with pytest.raises(
        PluginOptionsError,
        match=r"^builder\.options\.registry: Field required \(builder .kaniko.\)$",
    ):
        get_plugin_manager().builder("kaniko", {})
    with pytest.raises(PluginOptionsError, match="not an S3 URI; write s3://BUCKET/KEY"):
        get_plugin_manager().builder("kaniko", {"registry": "r", "context_store": "bucket/x"})
    with pytest.raises(PluginOptionsError, match="kaniko_image"):
        get_plugin_manager().builder("kaniko", {"registry": "r", "kaniko_image": "x"})
    builder = get_plugin_manager().builder("kaniko", {"registry": "r", "namespace": "builds"})
    assert isinstance(builder, KanikoBuilder)


def test_build_job_names_are_dns_labels_and_deterministic() -> None:
    long = "Job_" + "x" * 90 + "-1"
    name = build_job_name(long)
    assert name == build_job_name(long) and len(name) <= 63
    assert name != build_job_name(long[:-1] + "2")
    assert build_job_name("ab12-3") == "kaniko-ab12-3"


def test_registry_refs_and_docker_config_auth() -> None:
    assert RegistryRef.parse("127.0.0.1:5000/a/b:t") == RegistryRef("127.0.0.1:5000", "a/b", "t")
    assert RegistryRef.parse("python:3") == RegistryRef(
        "registry-1.docker.io", "library/python", "3"
    )
    auth = base64.b64encode(b"me:s3cret").decode()
    config = {"auths": {"https://127.0.0.1:5000": {"auth": auth}, "other.io": {"username": "x"}}}
    assert registry_auth(config, "127.0.0.1:5000") == ("me", "s3cret")
    assert registry_auth(config, "other.io") == ("x", "")
    assert registry_auth(config, "nowhere.io") is None


@pytest.mark.anyio
async def test_a_registry_tag_lookup_is_real(registry: str) -> None:
    """Against the local registry's HTTP API: an absent tag is None, a bad answer is an error."""
    missing = f"{registry}/lptest/none-{NONCE}:nope"
    assert (
        await anyio.to_thread.run_sync(lambda: registry_digest(missing, insecure=True, auth=None))
        is None
    )
    with pytest.raises(PluginError, match=r"cannot ask registry 127\.0\.0\.1:1"):
        registry_digest("127.0.0.1:1/x:y", insecure=True, auth=None, timeout=2)


# -- against the emulator, the pod controller and the kaniko simulator --------------


@pytest.mark.kubernetes
@pytest.mark.anyio
async def test_kaniko_builds_pushes_and_the_run_is_pinned_by_digest_then_skips(
    kube: Cluster, sim: KanikoSim, registry: str, tmp_path: Path, k8s_docker: Any
) -> None:
    batch, core = _api(kube)
    password = f"pw-{NONCE}"
    config = {"auths": {registry: {"auth": base64.b64encode(f"me:{password}".encode()).decode()}}}
    await call(
        core.create_namespaced_secret,
        "default",
        {
            "metadata": {"name": "regcred"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": json.dumps(config)},
        },
    )
    app = make_app(tmp_path / "app")
    builder = get_plugin_manager().builder(
        "kaniko",
        {**options().model_dump(exclude_defaults=True), "docker_config_secret": "regcred"},
    )
    lines: list[str] = []
    ctx = context(tmp_path, "pin", app, lines)
    image = await builder.build(job("pin"), ctx)
    assert image is not None and image.built
    assert image.ref.startswith(f"{registry}/lptest/lptest-kaniko-pin:")
    digest = await call(registry_digest, image.ref, insecure=True, auth=None)
    assert image.digest == digest
    assert image.pinned == f"{registry}/lptest/lptest-kaniko-pin@{digest}"
    text = "\n".join(lines)
    assert "in kaniko Job default/kaniko-lptest-kaniko-pin-" in text
    assert "Step 1/" in text and f"Pushed {image.ref}" in text  # the build log, streamed
    assert password not in text
    name = build_job_name(ctx.run_id)
    job_body = (await call(batch.read_namespaced_job, name, "default")).to_dict()
    assert password not in json.dumps(job_body, default=str)
    assert sim.builds[0]["--destination"] == image.ref
    assert sim.builds[0]["--digest-file"] == "/dev/termination-log"
    owner = (await call(core.read_namespaced_config_map, f"{name}-context", "default")).metadata
    assert owner.owner_references[0].uid == job_body["metadata"]["uid"]

    again: list[str] = []
    second = await builder.build(job("pin"), context(tmp_path, "pin2", app, again))
    assert second is not None and (second.digest, second.built) == (digest, False)
    assert any("already built" in line and "skipping build" in line for line in again)
    assert len(sim.builds) == 1
    assert len((await call(batch.list_namespaced_job, "default")).items) == 1

    # The docker builder makes the same plan (shared code): it finds kaniko's image too.
    from launchplane.plugins.builders.docker import DockerBuilder, DockerBuilderOptions

    docker_builder = DockerBuilder(DockerBuilderOptions(registry=f"{registry}/lptest"))
    reused = await docker_builder.build(
        job("pin"), context(tmp_path, "pin3", app, docker_lines := [])
    )
    await docker_builder.aclose()
    assert reused is not None and (reused.ref, reused.digest) == (image.ref, digest)
    assert any("skipping build" in line for line in docker_lines)


@pytest.mark.kubernetes
@pytest.mark.anyio
async def test_a_failed_build_is_reported_with_its_log_tail(
    kube: Cluster, sim: KanikoSim, registry: str, tmp_path: Path
) -> None:
    app = make_app(
        tmp_path / "app",
        dockerfile_text=f"FROM {DOCKER_BASE_IMAGE}\nRUN echo compiling-{NONCE} && exit 3\n",
    )
    builder = KanikoBuilder(options())
    lines: list[str] = []
    with pytest.raises(PluginError) as failure:
        await builder.build(job("fails"), context(tmp_path, "fails", app, lines))
    message = str(failure.value)
    assert "kaniko build of" in message and "kaniko exited with code 1" in message
    assert f"compiling-{NONCE}" in message and "returned a non-zero code: 3" in message
    assert not isinstance(failure.value, InfrastructureError)


@pytest.mark.kubernetes
@pytest.mark.anyio
async def test_an_executor_image_that_cannot_be_pulled_is_an_infrastructure_failure(
    kube: Cluster, registry: str, tmp_path: Path
) -> None:
    app = make_app(tmp_path / "app")
    builder = KanikoBuilder(options(executor_image="lptest.invalid/no-such/executor:1"))
    with pytest.raises(InfrastructureError, match="executor image cannot be pulled"):
        await builder.build(job("pull"), context(tmp_path, "pull", app, []))
    batch, core = _api(kube)
    assert (
        await call(batch.list_namespaced_job, "default")
    ).items == []  # deleted with its ConfigMap
    assert (await call(core.list_namespaced_config_map, "default")).items == []


@pytest.mark.kubernetes
@pytest.mark.anyio
async def test_a_stopped_job_deletes_the_build_job(
    kube: Cluster, registry: str, tmp_path: Path
) -> None:
    started, release = anyio.Event(), anyio.Event()

    async def stuck(pod: HandledPod) -> Outcome:
        await pod.log("building forever")
        started.set()
        await release.wait()
        return Outcome(exit_code=0)

    kube.controller.handle_image(lambda image: image == "lptest.invalid/stuck:1", stuck)
    builder = KanikoBuilder(options(executor_image="lptest.invalid/stuck:1"))
    app = make_app(tmp_path / "app")
    lines: list[str] = []
    ctx = context(tmp_path, "stop", app, lines)
    batch, core = _api(kube)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(builder.build, job("stop"), ctx)
        with anyio.fail_after(20):
            await started.wait()
        await kube.wait_for(lambda: "building forever" in lines, what="the streamed log")
        tasks.cancel_scope.cancel()
    release.set()
    assert (await call(batch.list_namespaced_job, "default")).items == []
    assert (await call(core.list_namespaced_config_map, "default")).items == []
    assert kube.emulator.list("v1/pods", "default") == []


@pytest.mark.kubernetes
@pytest.mark.aws
@pytest.mark.anyio
async def test_a_large_context_goes_through_s3(
    kube: Cluster,
    sim: KanikoSim,
    registry: str,
    tmp_path: Path,
    aws_env: dict[str, str],
    moto_url: str,
) -> None:
    import boto3

    bucket = f"lptest-kaniko-{NONCE[:12]}"
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
    app = make_app(
        tmp_path / "app", dockerfile_text=f"FROM {DOCKER_BASE_IMAGE}\nCOPY . /app\n", big=4096
    )
    builder = KanikoBuilder(
        options(
            configmap_max_bytes=1024,
            context_store=f"s3://{bucket}/contexts",
            s3={"endpoint_url": moto_url, "region": "us-east-1"},
        )
    )
    lines: list[str] = []
    image = await builder.build(job("s3"), context(tmp_path, "s3", app, lines))
    assert image is not None and image.digest and image.digest.startswith("sha256:")
    assert any(f"to s3://{bucket}/contexts/" in line for line in lines), lines
    assert sim.builds[0]["--context"].startswith(f"s3://{bucket}/contexts/")
    _, core = _api(kube)
    assert (await call(core.list_namespaced_config_map, "default")).items == []

    small = KanikoBuilder(options(configmap_max_bytes=1024))
    with pytest.raises(PluginError, match=r"set builder.options.context_store to s3://BUCKET"):
        big = make_app(tmp_path / "other", big=4096)  # not in the registry yet
        await small.build(job("s3"), context(tmp_path, "s3b", big, []))

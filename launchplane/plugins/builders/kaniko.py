"""The ``kaniko`` builder: builds a job's code into an image inside a Kubernetes cluster.

For agents that have a cluster but no Docker engine (the agent deployed in a
pod). The decision is the docker builder's, from the same shared code
(:mod:`launchplane.plugins.builders.dockerfile`): the same Dockerfile (the
job's own or the generated one), the same context bytes, the same content-hash
tag. So an image either builder pushed to a registry is reused by the other.

How a build runs
    1. The plan is made on the agent; ``<registry>/<name>:<hash>`` is looked
       up in the registry over its HTTP API (``HEAD /v2/<name>/manifests/<tag>``,
       with the docker-config Secret's credentials when one is named). A tag
       that exists is not built again: the log says ``image ... already built
       (content hash ...); skipping build`` and the run is pinned to the
       registry's digest.
    2. The context (a ``tar.gz`` written with the shared normalised
       attributes) is handed to kaniko: in a ConfigMap (``binaryData``,
       mounted into the pod, ``--context=tar://...``) when it is at most
       ``configmap_max_bytes``; otherwise uploaded to ``context_store``
       (``s3://bucket/prefix/<content hash>.tar.gz``, through
       :mod:`launchplane.core.s3`, skipped when that object exists) and read by
       kaniko with ``--context=s3://...``.
    3. A ``batch/v1`` Job runs the kaniko executor (``executor_image``) with
       ``--destination``, ``--cache`` (``--cache-repo`` when set), a
       ``launchplane.content-hash`` label and ``--digest-file=/dev/termination-log``;
       registry credentials come from the docker-config Secret the queue names
       (``docker_config_secret``, mounted as ``/kaniko/.docker/config.json``).
       ``backoffLimit: 0``: a retry is the queue's ``retry:`` policy.
    4. The builder follows the build pod: its log is streamed to the job's log
       line by line; when the container ends, its termination message is the
       digest kaniko wrote. The image is returned pinned by that digest
       (``repo@sha256:...``). A failed build is reported with its exit code
       and last log lines; an image that cannot be pulled or a build past its
       deadline is an infrastructure failure (retried by the queue's policy).
    5. A stopped job deletes the build Job (pods with it) and its ConfigMap.
       The ConfigMap is owned by the Job (``ownerReferences``), so the cluster
       removes it with the Job once ``ttlSecondsAfterFinished`` passes.

Conda
    A generated Dockerfile for ``environment.yml`` must name the base image's
    conda tool, and kaniko cannot look inside an image before it builds:
    set ``conda_tool`` (``micromamba``, ``mamba`` or ``conda``).

Secrets
    As with the docker builder, the build gets no build args and no job
    environment. Registry credentials stay in their Secret: the Job names it,
    the agent reads it only to ask the registry whether a tag exists, and
    neither the credentials nor the Secret's data reach a log, a manifest or
    an error.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import re
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import anyio
import anyio.abc
import anyio.from_thread
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, field_validator

from launchplane.core.aws import AwsOptions
from launchplane.core.hookspecs import hookimpl
from launchplane.core.interfaces import (
    Builder,
    Image,
    InfrastructureError,
    JobContext,
    MissingExtraError,
    PluginError,
)
from launchplane.core.output import LineSplitter
from launchplane.core.spec import ResolvedJob
from launchplane.plugins import kube
from launchplane.plugins.builders import dockerfile
from launchplane.plugins.builders.dockerfile import CONTENT_HASH_LABEL, BuildPlan

DEFAULT_EXECUTOR_IMAGE = "gcr.io/kaniko-project/executor:v1.23.2"
CONTAINER = "kaniko"
CONTEXT_KEY = "context.tar.gz"
CONTEXT_MOUNT = "/kaniko/buildcontext"
DOCKER_CONFIG_MOUNT = "/kaniko/.docker"
TERMINATION_LOG = "/dev/termination-log"
CONFIGMAP_MAX_BYTES = 700 * 1024
"""A ConfigMap holds at most 1 MiB, and ``binaryData`` is base64 (4/3): ~700 KiB of tar.gz."""
TAIL_LINES = 15
"""Lines of build log quoted when a build fails."""
BUILD_LABEL = "launchplane.build"
"""Label on the build Job and its pod: the run id, label-safe."""
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_LABEL_INVALID = re.compile(r"[^A-Za-z0-9._-]+")
_NAME_INVALID = re.compile(r"[^a-z0-9-]+")
_PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
_MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


class KanikoBuilderOptions(kube.KubeOptions):
    """``builder.options`` of a queue using the kaniko builder (its ``options_model``).

    ``context``, ``kubeconfig`` and ``namespace`` (where the build Job runs)
    are :class:`~launchplane.plugins.kube.KubeOptions`.
    """

    model_config = ConfigDict(extra="forbid")

    registry: str
    """Push to ``<registry>/<name>:<hash>`` (e.g. ``registry.example.com/ml``); W&B's
    ``builder.destination``."""
    executor_image: str = DEFAULT_EXECUTOR_IMAGE
    """The kaniko executor image (W&B's ``kaniko-image``)."""
    docker_config_secret: str | None = None
    """A Secret in the build namespace holding a docker ``config.json`` with the registry's
    credentials (``kubectl create secret docker-registry``); W&B's ``secret-name``."""
    docker_config_key: str = ".dockerconfigjson"
    """The Secret's key holding the ``config.json`` (W&B's ``secret-key``)."""
    cache: bool = True
    """Pass ``--cache=true``: kaniko reuses layers stored in ``cache_repo``."""
    cache_repo: str | None = None
    """Where kaniko keeps cached layers; kaniko's default is ``<registry>/<name>/cache``."""
    insecure: bool = False
    """The registry speaks plain HTTP (``--insecure``; the tag lookup uses ``http://``)."""
    context_store: str | None = None
    """``s3://bucket/prefix`` for contexts above ``configmap_max_bytes`` (W&B's
    ``build-context-store``); without it a larger context fails the build with that fix."""
    configmap_max_bytes: int = Field(default=CONFIGMAP_MAX_BYTES, ge=0, le=CONFIGMAP_MAX_BYTES)
    """Largest tar.gz handed over in a ConfigMap; 0 sends every context to ``context_store``."""
    s3: AwsOptions = Field(default_factory=AwsOptions)
    """The agent's S3 client (region, endpoint_url, profile) for ``context_store``."""
    aws_secret: str | None = None
    """A Secret with an AWS ``credentials`` file key, mounted at ``/root/.aws`` so kaniko can
    read an ``s3://`` context; without it kaniko uses the pod's own identity (IRSA)."""
    service_account: str | None = None
    """The build pod's service account (for IRSA or registry workload identity)."""
    conda_tool: Literal["micromamba", "mamba", "conda"] | None = None
    """The base image's conda tool, for jobs with ``environment.yml`` (see module docstring)."""
    extra_args: list[str] = Field(default_factory=list)
    """More executor flags, as is (``--snapshot-mode=redo``, ``--compressed-caching=false``)."""
    active_deadline_seconds: int = Field(default=3600, gt=0)
    """A build running longer is stopped by the cluster (reported as an infrastructure failure)."""
    ttl_seconds_after_finished: int = Field(default=3600, ge=0)
    """How long a finished build Job (and its log) stays before the cluster removes it."""
    poll_seconds: float = Field(default=1.0, gt=0)
    """How often the build pod's status is read while it runs."""

    @field_validator("context_store")
    @classmethod
    def _s3_uri(cls, value: str | None) -> str | None:
        if value is not None:
            from launchplane.core.s3 import parse_s3_uri

            parse_s3_uri(value)  # its ValueError names what is wrong
        return value


@dataclass(frozen=True)
class Handover:
    """How the context reaches kaniko: the ``--context`` value and what the pod mounts."""

    context: str
    """``tar:///kaniko/buildcontext/context.tar.gz`` or ``s3://bucket/key``."""
    config_map: dict[str, Any] | None
    """The ConfigMap to create first (small contexts), else None."""


def build_job_name(run_id: str) -> str:
    """``kaniko-<run id>``, DNS-1123 and at most 63 characters (a hash keeps cut names apart)."""
    slug = _NAME_INVALID.sub("-", run_id.lower()).strip("-") or "run"
    name = f"kaniko-{slug}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-')}-{digest}"


def label_value(value: str) -> str:
    """``value`` as a Kubernetes label value (63 characters, alphanumeric at both ends)."""
    return _LABEL_INVALID.sub("-", value)[:63].strip("._-")


def context_archive(plan: BuildPlan) -> bytes:
    """The build context as tar.gz: the shared tar (normalised attributes), gzip with mtime 0."""
    with tempfile.TemporaryFile() as tar:
        dockerfile.context_tar(plan.root, plan.files, plan.extra_files(), tar)
        return gzip.compress(tar.read(), mtime=0)


def context_object_key(prefix: str, plan: BuildPlan) -> str:
    """``<prefix>/<content hash>.tar.gz``: content-addressed, so equal contexts share one."""
    return f"{prefix.rstrip('/')}/{plan.content_hash}.tar.gz".lstrip("/")


def config_map_handover(name: str, namespace: str, archive: bytes) -> Handover:
    """A ConfigMap holding the archive, read by kaniko from its volume."""
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "binaryData": {CONTEXT_KEY: base64.b64encode(archive).decode()},
    }
    return Handover(f"tar://{CONTEXT_MOUNT}/{CONTEXT_KEY}", body)


def executor_args(plan: BuildPlan, options: KanikoBuilderOptions, context: str) -> list[str]:
    """The kaniko executor's arguments for ``plan``."""
    args = [
        f"--context={context}",
        f"--dockerfile={plan.dockerfile}",
        f"--destination={plan.ref}",
        f"--cache={'true' if options.cache else 'false'}",
        f"--label={CONTENT_HASH_LABEL}={plan.content_hash}",
        f"--digest-file={TERMINATION_LOG}",
    ]
    if options.cache and options.cache_repo:
        args.append(f"--cache-repo={options.cache_repo}")
    if options.insecure:
        args.append("--insecure")
    return [*args, *options.extra_args]


def build_job(
    name: str,
    namespace: str,
    plan: BuildPlan,
    options: KanikoBuilderOptions,
    handover: Handover,
    labels: dict[str, str],
) -> dict[str, Any]:
    """The ``batch/v1`` Job that runs kaniko once for ``plan``."""
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    env: list[dict[str, Any]] = []
    if handover.config_map is not None:
        volumes.append(
            {"name": "context", "configMap": {"name": handover.config_map["metadata"]["name"]}}
        )
        mounts.append({"name": "context", "mountPath": CONTEXT_MOUNT, "readOnly": True})
    else:
        s3 = options.s3
        if s3.region:
            env.append({"name": "AWS_REGION", "value": s3.region})
        if s3.endpoint_url:
            env += [
                {"name": "S3_ENDPOINT", "value": s3.endpoint_url},
                {"name": "S3_FORCE_PATH_STYLE", "value": "true"},
            ]
        if options.aws_secret:
            volumes.append({"name": "aws", "secret": {"secretName": options.aws_secret}})
            mounts.append({"name": "aws", "mountPath": "/root/.aws", "readOnly": True})
    if options.docker_config_secret:
        item = {"key": options.docker_config_key, "path": "config.json"}
        secret = {"secretName": options.docker_config_secret, "items": [item]}
        volumes.append({"name": "docker-config", "secret": secret})
        mounts.append({"name": "docker-config", "mountPath": DOCKER_CONFIG_MOUNT, "readOnly": True})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": options.executor_image,
        "args": executor_args(plan, options, handover.context),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
    }
    if env:
        container["env"] = env
    if mounts:
        container["volumeMounts"] = mounts
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if volumes:
        pod_spec["volumes"] = volumes
    if options.service_account:
        pod_spec["serviceAccountName"] = options.service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": options.active_deadline_seconds,
            "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


@dataclass(frozen=True)
class RegistryRef:
    """``host/name:tag`` split for the registry's HTTP API."""

    host: str
    name: str
    tag: str

    @classmethod
    def parse(cls, ref: str) -> RegistryRef:
        path, _, tag = ref.rpartition(":")
        first, _, rest = path.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            return cls(first, rest, tag)
        name = path if "/" in path else f"library/{path}"
        return cls("registry-1.docker.io", name, tag)


def registry_auth(config: dict[str, Any], host: str) -> tuple[str, str] | None:
    """The user and password for ``host`` in a docker ``config.json`` (``auths``), if any."""
    auths = config.get("auths") or {}
    for key, entry in auths.items():
        bare = re.sub(r"^https?://", "", str(key)).split("/", 1)[0]
        if bare != host and not (host == "registry-1.docker.io" and bare == "index.docker.io"):
            continue
        if entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
        if entry.get("username"):
            return str(entry["username"]), str(entry.get("password") or "")
    return None


def registry_digest(
    ref: str, *, insecure: bool, auth: tuple[str, str] | None, timeout: float = 15.0
) -> str | None:
    """The digest of ``ref`` in its registry (worker thread), or None when the tag is absent.

    ``HEAD /v2/<name>/manifests/<tag>``; a ``401`` with a ``Bearer`` challenge
    is answered with a token from the registry's realm (Docker Hub, GHCR,
    Harbor, ECR all work this way), using ``auth`` when given.
    """
    import httpx

    target = RegistryRef.parse(ref)
    url = (
        f"{'http' if insecure else 'https'}://{target.host}/v2/{target.name}/manifests/{target.tag}"
    )
    headers = {"Accept": _MANIFEST_TYPES}
    where = f"registry {target.host}"
    try:
        with httpx.Client(timeout=timeout, auth=httpx.BasicAuth(*auth) if auth else None) as http:
            response = http.head(url, headers=headers)
            challenge = response.headers.get("www-authenticate", "")
            if response.status_code == 401 and challenge.lower().startswith("bearer "):
                token = _bearer_token(http, challenge)
                headers["Authorization"] = f"Bearer {token}"
                response = http.head(url, headers=headers, auth=None)
    except httpx.HTTPError as exc:
        raise PluginError(f"cannot ask {where} whether {ref} exists: {exc}") from None
    if response.status_code == 404:
        return None
    if response.status_code in (401, 403):
        fix = "check the credentials in builder.options.docker_config_secret"
        raise PluginError(f"{where} refused the lookup of {ref} ({response.status_code}): {fix}")
    if response.status_code >= 400:
        raise PluginError(f"{where} answered {response.status_code} for {ref}")
    digest = response.headers.get("docker-content-digest")
    if not digest or not _DIGEST.fullmatch(digest):
        raise PluginError(f"{where} gave no sha256 digest for {ref}")
    return str(digest)


def _bearer_token(http: Any, challenge: str) -> str:
    """A pull token from the realm of a ``Bearer realm=...,service=...,scope=...`` challenge."""
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = fields.pop("realm", None)
    if not realm:
        raise PluginError("the registry asked for a token without naming its realm")
    response = http.get(realm, params=fields)
    if response.status_code >= 400:
        raise PluginError(f"the registry's token service {realm} answered {response.status_code}")
    body = response.json()
    token = body.get("token") or body.get("access_token")
    if not token:
        raise PluginError(f"the registry's token service {realm} gave no token")
    return str(token)


@dataclass
class _Outcome:
    """How the build pod ended."""

    exit_code: int | None
    message: str
    reason: str | None
    infrastructure: bool = False


class KanikoBuilder(Builder):
    """Builds in the cluster with kaniko, tags by content hash, pins by digest; see the module."""

    name: ClassVar[str] = "kaniko"
    options_model: ClassVar[type[BaseModel]] = KanikoBuilderOptions

    def __init__(self, options: KanikoBuilderOptions) -> None:
        self.options = options
        self._api: Any = None
        self._s3: Any = None
        self._lock = threading.Lock()

    async def build(self, job: ResolvedJob, ctx: JobContext) -> Image | None:
        options = self.options
        declared = dockerfile.passthrough_image(job)
        if declared:
            await ctx.emit(
                f"kaniko builder: using docker.image {declared} as is (nothing to build)"
            )
            return Image(ref=declared)
        root = dockerfile.build_root(job, ctx, self.name)
        _require_docker_py()
        plan = await anyio.to_thread.run_sync(
            dockerfile.plan_build, job, root, options.registry, self._conda_tool
        )
        api = await anyio.to_thread.run_sync(self._client)
        namespace = await anyio.to_thread.run_sync(kube.default_namespace, options)
        auth = await self._registry_auth(api, namespace, plan)
        existing = await anyio.to_thread.run_sync(
            lambda: registry_digest(plan.ref, insecure=options.insecure, auth=auth)
        )
        if existing is not None:
            await ctx.emit(
                f"image {plan.ref} already built (content hash {plan.tag}, found in registry "
                f"{RegistryRef.parse(plan.ref).host}); skipping build"
            )
            return Image(ref=plan.ref, digest=existing)
        name = build_job_name(ctx.run_id)
        archive = await anyio.to_thread.run_sync(context_archive, plan)
        handover = await self._handover(name, namespace, plan, archive, ctx)
        labels = {BUILD_LABEL: label_value(ctx.run_id)}
        body = build_job(name, namespace, plan, options, handover, labels)
        await ctx.emit(
            f"building image {plan.ref} from {plan.root} with {plan.describe()} in kaniko Job "
            f"{namespace}/{name} (content hash {plan.tag}, {len(plan.files)} context entries)"
        )
        try:
            outcome = await self._run(api, namespace, name, body, handover, ctx)
        except BaseException:  # stopped (cancelled) or the API failed: leave nothing running
            with anyio.CancelScope(shield=True):
                await self._delete(api, namespace, name, handover)
            raise
        if outcome.exit_code is None:  # it never ran (image pull, deadline): nothing to keep
            await self._delete(api, namespace, name, handover)
        return self._image(plan, namespace, name, outcome)

    def _image(self, plan: BuildPlan, namespace: str, name: str, outcome: _Outcome) -> Image:
        where = f"kaniko Job {namespace}/{name}"
        if outcome.exit_code == 0:
            digest = outcome.message.strip()
            if not _DIGEST.fullmatch(digest):
                raise PluginError(
                    f"{where} succeeded but its termination message is not a digest "
                    f"({digest[:80]!r}): is --digest-file={TERMINATION_LOG} among its arguments?"
                )
            return Image(ref=plan.ref, digest=digest, built=True)
        error = InfrastructureError if outcome.infrastructure else PluginError
        raise error(f"kaniko build of {plan.ref} failed ({where}): {outcome.reason}")

    def _conda_tool(self, base: str, file: str) -> str:
        if self.options.conda_tool is None:
            raise PluginError(
                f"the job's {file} needs the base image's conda tool, and kaniko cannot look "
                f"inside {base} before building. Fix: set builder.options.conda_tool "
                "(micromamba, mamba or conda), or replace it with a requirements.txt"
            )
        return self.options.conda_tool

    def _client(self) -> Any:
        with self._lock:
            if self._api is None:
                self._api = kube.api_client(self.options, kind="builder", name=self.name)
            return self._api

    def _s3_client(self) -> Any:
        from launchplane.core.aws import client

        with self._lock:
            if self._s3 is None:
                self._s3 = client("s3", self.options.s3, kind="builder", name=self.name)
            return self._s3

    async def _registry_auth(
        self, api: Any, namespace: str, plan: BuildPlan
    ) -> tuple[str, str] | None:
        """The registry credentials of the docker-config Secret, for the tag lookup only."""
        secret_name = self.options.docker_config_secret
        if secret_name is None:
            return None
        from kubernetes import client

        core = client.CoreV1Api(api)
        try:
            secret = await kube.call(core.read_namespaced_secret, secret_name, namespace)
        except client.ApiException as exc:
            raise PluginError(
                f"cannot read builder.options.docker_config_secret {namespace}/{secret_name}: "
                f"{kube.explain(exc)}"
            ) from None
        encoded = (secret.data or {}).get(self.options.docker_config_key)
        if encoded is None:
            raise PluginError(
                f"Secret {namespace}/{secret_name} has no key {self.options.docker_config_key!r} "
                "(set builder.options.docker_config_key)"
            )
        try:
            config = json.loads(base64.b64decode(encoded))
        except ValueError:
            raise PluginError(
                f"Secret {namespace}/{secret_name} key {self.options.docker_config_key!r} "
                "is not a docker config.json"
            ) from None
        return registry_auth(config, RegistryRef.parse(plan.ref).host)

    async def _handover(
        self, name: str, namespace: str, plan: BuildPlan, archive: bytes, ctx: JobContext
    ) -> Handover:
        options = self.options
        if len(archive) <= options.configmap_max_bytes:
            return config_map_handover(f"{name}-context", namespace, archive)
        if options.context_store is None:
            raise PluginError(
                f"the build context of {plan.ref} is {len(archive)} bytes (tar.gz), more than a "
                f"ConfigMap holds ({options.configmap_max_bytes}). Fix: set "
                "builder.options.context_store to s3://BUCKET/PREFIX, or shrink the context "
                "with a .dockerignore"
            )
        from launchplane.core import s3

        store = s3.parse_s3_uri(options.context_store)
        key = context_object_key(store.key, plan)
        client = await anyio.to_thread.run_sync(self._s3_client)
        if await anyio.to_thread.run_sync(s3.exists, client, store.bucket, key):
            await ctx.emit(f"build context s3://{store.bucket}/{key} already uploaded")
        else:
            await ctx.emit(
                f"uploading build context ({len(archive)} bytes) to s3://{store.bucket}/{key}"
            )
            await anyio.to_thread.run_sync(
                lambda: s3.upload_bytes(
                    client, archive, store.bucket, key, content_type="application/gzip"
                )
            )
        return Handover(f"s3://{store.bucket}/{key}", None)

    async def _run(
        self,
        api: Any,
        namespace: str,
        name: str,
        body: dict[str, Any],
        handover: Handover,
        ctx: JobContext,
    ) -> _Outcome:
        """Create the ConfigMap and the Job, follow the pod to its end, streaming its log."""
        from kubernetes import client

        core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
        try:
            if handover.config_map is not None:
                await kube.call(core.create_namespaced_config_map, namespace, handover.config_map)
            job = await kube.call(batch.create_namespaced_job, namespace, body)
            if handover.config_map is not None:
                owner = {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": name,
                    "uid": job.metadata.uid,
                }
                patch = {"metadata": {"ownerReferences": [owner]}}
                await kube.call(
                    core.patch_namespaced_config_map, f"{name}-context", namespace, patch
                )
        except client.ApiException as exc:
            raise PluginError(
                f"cannot create kaniko Job {namespace}/{name}: {kube.explain(exc)}"
            ) from None
        follower = _LogFollower(core, namespace, ctx)
        async with anyio.create_task_group() as tasks:
            outcome = await self._follow(core, batch, namespace, name, follower, tasks)
            await follower.finish()
            tasks.cancel_scope.cancel()
        if outcome.exit_code not in (0, None) and outcome.reason is None:
            last = "\n".join(follower.tail) or "(no output)"
            outcome.reason = (
                f"kaniko exited with code {outcome.exit_code}; last lines of its log:\n{last}"
            )
        return outcome

    async def _follow(
        self,
        core: Any,
        batch: Any,
        namespace: str,
        name: str,
        follower: _LogFollower,
        tasks: anyio.abc.TaskGroup,
    ) -> _Outcome:
        """Poll the build pod until it ends; start streaming its log once it has started."""
        while True:
            pod = await self._pod(core, namespace, name)
            if pod is not None and not follower.started and _container_started(pod):
                tasks.start_soon(follower.run, pod.metadata.name)
            outcome = _outcome(pod) if pod is not None else None
            if outcome is None:
                outcome = await self._job_failure(batch, namespace, name)
            if outcome is not None:
                return outcome
            await anyio.sleep(self.options.poll_seconds)

    async def _pod(self, core: Any, namespace: str, name: str) -> Any:
        from kubernetes import client

        try:
            pods = await kube.call(
                core.list_namespaced_pod, namespace, label_selector=f"job-name={name}"
            )
        except client.ApiException as exc:
            raise PluginError(
                f"cannot read the pods of kaniko Job {name}: {kube.explain(exc)}"
            ) from None
        return pods.items[0] if pods.items else None

    async def _job_failure(self, batch: Any, namespace: str, name: str) -> _Outcome | None:
        """A Job that failed without a pod that says why (its deadline), else None."""
        from kubernetes import client

        try:
            job = await kube.call(batch.read_namespaced_job, name, namespace)
        except client.ApiException as exc:
            if kube.status_of(exc) == 404:
                return _Outcome(None, "", "the build Job was deleted", infrastructure=True)
            raise PluginError(f"cannot read kaniko Job {name}: {kube.explain(exc)}") from None
        for condition in (job.status and job.status.conditions) or []:
            if condition.type == "Failed" and condition.status == "True":
                why = (
                    f"{condition.reason}: {condition.message}"
                    if condition.message
                    else condition.reason
                )
                deadline = condition.reason == "DeadlineExceeded"
                return _Outcome(None, "", f"the build Job failed ({why})", infrastructure=deadline)
        return None

    async def _delete(self, api: Any, namespace: str, name: str, handover: Handover) -> None:
        """Delete the build Job (its pods too) and its ConfigMap; a missing one is fine."""
        from kubernetes import client

        core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
        deletes = [(batch.delete_namespaced_job, name)]
        if handover.config_map is not None:
            deletes.append((core.delete_namespaced_config_map, f"{name}-context"))
        for delete, target in deletes:
            try:
                await kube.call(delete, target, namespace, propagation_policy="Background")
            except client.ApiException as exc:
                if kube.status_of(exc) != 404:
                    raise PluginError(
                        f"cannot delete {target} of the stopped build: {kube.explain(exc)}"
                    ) from None

    async def aclose(self) -> None:
        """Close the Kubernetes client (the agent stops; no build runs any more)."""
        with self._lock:
            api, self._api = self._api, None
        if api is not None:
            await anyio.to_thread.run_sync(api.close)


def _require_docker_py() -> None:
    """docker-py's ``.dockerignore`` matcher makes the context (no engine is used)."""
    try:
        import docker.utils.build  # noqa: F401
    except ImportError:
        raise MissingExtraError("builder", KanikoBuilder.name, "docker") from None


def _container_started(pod: Any) -> bool:
    """True once the kaniko container runs or ran (its log can be read)."""
    for status in (pod.status and pod.status.container_statuses) or []:
        if status.name == CONTAINER and (status.state.running or status.state.terminated):
            return True
    return False


def _outcome(pod: Any) -> _Outcome | None:
    """How the build pod ended, or None while it still runs (or waits to run)."""
    for status in (pod.status and pod.status.container_statuses) or []:
        if status.name != CONTAINER:
            continue
        terminated = status.state.terminated
        if terminated is not None:
            reason = (
                "OOMKilled: give the build more memory"
                if terminated.reason == "OOMKilled"
                else None
            )
            return _Outcome(terminated.exit_code, terminated.message or "", reason)
        waiting = status.state.waiting
        if waiting is not None and waiting.reason in _PULL_FAILURES:
            message = f": {waiting.message}" if waiting.message else ""
            return _Outcome(
                None,
                "",
                f"the executor image cannot be pulled ({waiting.reason}{message}); "
                "check builder.options.executor_image",
                infrastructure=True,
            )
    if pod.status is not None and pod.status.phase == "Failed" and pod.status.reason == "Evicted":
        return _Outcome(None, "", f"the build pod was evicted: {pod.status.message}", True)
    return None


class _LogFollower:
    """Follows the build pod's log in a worker thread and sends each line to the job's log."""

    def __init__(self, core: Any, namespace: str, ctx: JobContext) -> None:
        self._core, self._namespace, self._ctx = core, namespace, ctx
        self.started = False
        self.tail: list[str] = []
        self._done = anyio.Event()
        self._response: Any = None

    async def run(self, pod: str) -> None:
        """Stream ``pod``'s log until it ends (the container ended) or the task is cancelled."""
        self.started = True
        try:
            await anyio.to_thread.run_sync(self._stream, pod, abandon_on_cancel=True)
        except Exception as exc:  # a lost log stream ends the streaming, not the build
            await self._ctx.emit(f"(the build log stream ended early: {kube.explain(exc)})")
        finally:
            self._interrupt()
            self._done.set()

    def _stream(self, pod: str) -> None:
        response = self._response = self._core.read_namespaced_pod_log(
            pod, self._namespace, container=CONTAINER, follow=True, _preload_content=False
        )
        try:
            splitter = LineSplitter()
            for chunk in response.stream(4096):
                for line in splitter.feed(chunk):
                    self._emit(line)
            for line in splitter.flush():
                self._emit(line)
        finally:
            response.close()

    def _interrupt(self) -> None:
        """End a read that blocks in the (abandoned) worker thread.

        Closing the response from here would wait for the reader's buffer lock;
        shutting the socket down makes its ``recv`` return at once instead.
        """
        sock = getattr(getattr(self._response, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _emit(self, line: str) -> None:
        self.tail[:] = [*self.tail[-(TAIL_LINES - 1) :], line]
        anyio.from_thread.run(self._ctx.emit, line)

    async def finish(self, timeout: float = 10.0) -> None:
        """Wait for the log's last lines (the stream ends once the container has ended)."""
        if self.started:
            with anyio.move_on_after(timeout):
                await self._done.wait()


@hookimpl
def launchplane_register_builders(register: Callable[[type[Builder]], None]) -> None:
    register(KanikoBuilder)

"""The ``docker`` builder: builds a job's code into an image on a Docker engine.

What it builds
    The job's code directory: its git checkout at the pinned commit
    (``ctx.code_dir``; a relative ``workdir`` is a folder of it) or a local
    directory (an absolute ``workdir``). With the job's own Dockerfile
    (``docker.dockerfile``, relative to the code, or a ``Dockerfile`` at its
    root) as is; otherwise with a generated one. The plan - which
    Dockerfile, the context, the content hash, the repository and tag - is
    shared with the kaniko builder (:mod:`launchplane.plugins.builders.dockerfile`).
    A job that names a ``docker.image`` (and no ``docker.dockerfile``) is
    passed through unbuilt, as with the ``noop`` builder.

Base image (generated Dockerfiles)
    As :mod:`launchplane.plugins.builders.dockerfile` says (``builder.base_image``,
    else ``LAUNCHPLANE_DOCKER_BASE_IMAGE``, else ``python:3.11-slim``). A job
    with ``environment.yml`` needs conda, mamba or micromamba in it: the
    builder asks the engine which one, in a throwaway container.

Tags and skipping
    ``launchplane/<name>:<hash>`` where ``<name>`` is the job's ``name``
    (else ``job``, ``project``, the code directory's name) and ``<hash>`` the
    first 16 hex digits of the content hash of the Dockerfile and the build
    context. With ``builder.options.registry`` the repository is
    ``<registry>/<name>`` instead. A tag that already exists - in the
    registry when one is configured, else in the local engine - is not built
    again: the log says ``image ... already built (content hash ...);
    skipping build``. A base image that changes under the same tag does not
    invalidate the hash; pin bases by digest (``python:3.11-slim@sha256:...``)
    to make that change visible.

Pinning
    With a registry the image is pushed and pinned by its registry digest
    (``repo@sha256:...``): any engine can pull exactly those bytes. Without
    one it is pinned by its local image id (``sha256:...``), which names the
    same bytes but exists only on this engine; the runner starts it by that id.

Secrets
    The build receives no build args and no environment: ``ctx.env`` (which
    holds secret values) goes to the container at create time only, so no
    layer, history entry, label or build log line can contain a secret.

Build output is streamed to the job's log line by line (``Step 3/8 : ...``).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.from_thread
import anyio.to_thread
from pydantic import BaseModel, ConfigDict

from launchplane.core.hookspecs import hookimpl
from launchplane.core.interfaces import (
    Builder,
    Image,
    JobContext,
    MissingExtraError,
    PluginError,
)
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.builders import dockerfile

# BASE_IMAGE_ENV, DEFAULT_BASE_IMAGE, base_image and repository moved to dockerfile (kaniko
# shares them); the docker builder's users and tests still import them from here.
from launchplane.plugins.builders.dockerfile import (  # noqa: F401
    BASE_IMAGE_ENV,
    CONTENT_HASH_LABEL,
    DEFAULT_BASE_IMAGE,
    BuildPlan,
    base_image,
    repository,
)
from launchplane.plugins.builders.ecr import EcrLogin, EcrOptions, ecr_host

if TYPE_CHECKING:
    from docker import DockerClient

TAIL_LINES = 15
"""Lines of build output quoted when a build fails."""


class DockerBuilderOptions(BaseModel):
    """``builder.options`` of a queue using the docker builder (its ``options_model``).

    The registry validates them before the builder is made; unknown keys are errors.
    """

    model_config = ConfigDict(extra="forbid")

    registry: str | None = None
    """Push to ``<registry>/<name>:<hash>`` (e.g. ``127.0.0.1:5000/launchplane``), pin by digest."""
    network: str | None = None
    """Network for ``RUN`` steps (``host`` when pip needs a proxy only the host reaches)."""
    ecr: EcrOptions | None = None
    """Log in to ECR (``ecr:GetAuthorizationToken``) to push; implied by an ECR ``registry``."""


@dataclass(frozen=True)
class LocalImage(Image):
    """An image that exists only in this engine: ``digest`` is its image id.

    An image id is not a registry digest, so ``repo@<id>`` names nothing;
    the id alone is what pins it here, and what the runner starts.
    """

    @property
    def pinned(self) -> str:
        return self.digest or self.ref


class _Stopped(Exception):
    """The job was stopped while its image was building."""


class DockerBuilder(Builder):
    """Builds, tags by content hash, optionally pushes; see the module docstring."""

    name: ClassVar[str] = "docker"
    options_model: ClassVar[type[BaseModel]] = DockerBuilderOptions

    def __init__(self, options: DockerBuilderOptions | None = None) -> None:
        self.options = options or DockerBuilderOptions()
        self._docker: DockerClient | None = None
        self._lock = threading.Lock()
        registry = self.options.registry
        self._ecr = (
            EcrLogin(registry, self.options.ecr)
            if registry and (self.options.ecr is not None or ecr_host(registry))
            else None
        )

    async def build(self, job: ResolvedJob, ctx: JobContext) -> Image | None:
        options = self.options
        declared = dockerfile.passthrough_image(job)
        if declared:
            await ctx.emit(
                f"docker builder: using docker.image {declared} as is (nothing to build)"
            )
            return Image(ref=declared)
        root = dockerfile.build_root(job, ctx, self.name)
        client = await anyio.to_thread.run_sync(self._client)
        plan = await anyio.to_thread.run_sync(_plan, client, job, root, options)
        auth = await self._registry_auth(ctx)
        existing = await anyio.to_thread.run_sync(_existing, client, plan, options, auth)
        if existing is not None:
            image, where = existing
            await ctx.emit(
                f"image {plan.ref} already built (content hash {plan.tag}, "
                f"found {where}); skipping build"
            )
            return image
        await ctx.emit(
            f"building image {plan.ref} from {plan.root} with {plan.describe()} "
            f"(content hash {plan.tag}, {len(plan.files)} context entries)"
        )
        stop = threading.Event()
        try:
            image_id = await anyio.to_thread.run_sync(
                _build, client, plan, options, ctx, stop, abandon_on_cancel=True
            )
        except anyio.get_cancelled_exc_class():
            # The job is stopped now; the worker quits at the build's next output
            # line and drops the connection. docker-py cannot abort a build
            # sooner: the engine finishes the running step, then ends the build.
            stop.set()
            raise
        if options.registry is None:
            await ctx.emit(f"built image {plan.ref} (image id {image_id})")
            return LocalImage(ref=plan.ref, digest=image_id, built=True)
        login = self._ecr
        if login and await anyio.to_thread.run_sync(login.ensure_repository, plan.repository):
            await ctx.emit(f"created ECR repository {plan.repository}")
        digest = await anyio.to_thread.run_sync(_push, client, plan, ctx, auth)
        await ctx.emit(f"pushed image {plan.ref} (digest {digest})")
        return Image(ref=plan.ref, digest=digest, built=True)

    async def _registry_auth(self, ctx: JobContext) -> dict[str, str] | None:
        """ECR push credentials when the registry needs them; None: the engine's own login."""
        if self._ecr is None:
            return None
        credentials, fresh = await anyio.to_thread.run_sync(self._ecr.credentials)
        if fresh:
            await ctx.emit(
                f"logged in to {credentials.server} with ecr:GetAuthorizationToken "
                f"({self._ecr.where}; token valid until {credentials.expires:%Y-%m-%d %H:%M} UTC)"
            )
        return credentials.auth_config()

    def _client(self) -> DockerClient:
        with self._lock:
            if self._docker is None:
                self._docker = connect()
            return self._docker

    async def aclose(self) -> None:
        """Close the docker-py client (the agent stops; no build runs any more)."""
        with self._lock:
            client, self._docker = self._docker, None
        if client is not None:
            await anyio.to_thread.run_sync(client.close)


def connect() -> DockerClient:
    """A client for the engine at ``DOCKER_HOST`` (or the default socket), with clear errors."""
    try:
        import docker
    except ImportError:
        raise MissingExtraError("builder", "docker", "docker") from None
    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise PluginError(
            f"cannot reach the Docker engine at {where}: {exc} "
            "(start it, e.g. scripts/services/docker.sh, or set DOCKER_HOST)"
        ) from None


def _plan(
    client: DockerClient, job: ResolvedJob, root: Path, options: DockerBuilderOptions
) -> BuildPlan:
    """The shared build plan; a conda job's tool is asked of the engine (worker thread)."""

    def find_conda(base: str, file: str) -> str:
        tool = conda_tool(client, base)
        if tool is None:
            raise PluginError(
                f"the job's {file} needs conda, mamba or micromamba in the base image, "
                f"and {base} has none of them. Fix: set builder.base_image to an image with "
                "conda (e.g. condaforge/miniforge3 or mambaorg/micromamba), or replace "
                f"{file} with a requirements.txt"
            )
        return tool

    return dockerfile.plan_build(job, root, options.registry, find_conda)


def conda_tool(client: DockerClient, image: str) -> str | None:
    """The first of micromamba, mamba, conda on the image's PATH, asked in a throwaway container."""
    import docker

    script = (
        f"for t in {' '.join(dockerfile.CONDA_TOOLS)}; do "
        'command -v "$t" >/dev/null 2>&1 && { echo "$t"; exit 0; }; done; exit 3'
    )
    try:
        output = client.containers.run(
            image, entrypoint=["sh", "-c", script], network_mode="none", remove=True
        )
    except docker.errors.ContainerError:
        return None
    except docker.errors.DockerException as exc:
        raise PluginError(f"cannot inspect base image {image} for conda: {_explain(exc)}") from None
    found = output.decode().strip() if isinstance(output, bytes) else ""
    return found if found in dockerfile.CONDA_TOOLS else None


def _existing(
    client: DockerClient,
    plan: BuildPlan,
    options: DockerBuilderOptions,
    auth: dict[str, str] | None = None,
) -> tuple[Image, str] | None:
    """The image for ``plan.ref`` if it was built before, and where it was found."""
    import docker

    try:
        local = client.images.get(plan.ref)
    except docker.errors.ImageNotFound:
        local = None
    if options.registry is None:
        return (LocalImage(ref=plan.ref, digest=local.id), "locally") if local else None
    try:
        remote = client.images.get_registry_data(plan.ref, auth_config=auth)
    except docker.errors.NotFound:
        remote = None
    except docker.errors.APIError as exc:
        raise PluginError(f"cannot query registry for {plan.ref}: {_explain(exc)}") from None
    if remote is not None:
        return Image(ref=plan.ref, digest=remote.id), f"in registry {options.registry}"
    return None


def _build(
    client: DockerClient,
    plan: BuildPlan,
    options: DockerBuilderOptions,
    ctx: JobContext,
    stop: threading.Event,
) -> str:
    """Run the build (worker thread), streaming its output to the job's log; the image id."""
    import docker

    tail: list[str] = []

    def emit(line: str) -> None:
        if stop.is_set():
            raise _Stopped
        tail[:] = [*tail[-(TAIL_LINES - 1) :], line]
        anyio.from_thread.run(ctx.emit, line)

    with tempfile.TemporaryFile() as context:
        dockerfile.context_tar(plan.root, plan.files, plan.extra_files(), context)
        try:
            chunks = client.api.build(
                fileobj=context,
                custom_context=True,
                dockerfile=plan.dockerfile,
                tag=plan.ref,
                labels={CONTENT_HASH_LABEL: plan.content_hash},
                network_mode=options.network,
                rm=True,
                forcerm=True,
                decode=True,
            )
            error = _stream_build(chunks, emit)
        except _Stopped:
            raise PluginError("build stopped: the job was stopped") from None
        except docker.errors.DockerException as exc:
            raise PluginError(f"docker build of {plan.ref} failed: {_explain(exc)}") from None
    if error is not None:
        last = "\n".join(tail)
        raise PluginError(
            f"docker build of {plan.ref} failed: {error}\nlast lines of output:\n{last}"
        )
    return client.images.get(plan.ref).id


def _stream_build(chunks: Iterable[dict[str, Any]], emit: Callable[[str], None]) -> str | None:
    """Emit the build's output as whole lines; return the engine's error message, if any.

    The engine sends ``stream`` text in arbitrary pieces (a step's title and
    its newline often arrive apart), ``status`` chunks while it pulls the
    base image (progress bars are dropped) and ``error`` when a step fails.
    """
    buffer = ""
    for chunk in chunks:
        if "error" in chunk:
            if buffer.strip():
                emit(buffer.rstrip())
            return str(chunk["error"]).strip()
        text = chunk.get("stream")
        if text is None:
            status = chunk.get("status")
            if status and not chunk.get("progressDetail"):
                emit(f"{chunk['id']}: {status}" if chunk.get("id") else str(status))
            continue
        buffer += text
        *lines, buffer = buffer.split("\n")
        for line in lines:
            if line.strip():
                emit(line.rstrip("\r"))
    if buffer.strip():
        emit(buffer.rstrip())
    return None


def _push(
    client: DockerClient, plan: BuildPlan, ctx: JobContext, auth: dict[str, str] | None = None
) -> str:
    """Push ``plan.ref`` (worker thread), logging layer progress; the registry digest.

    ``auth`` (ECR's token) goes to the engine with this request only; without
    it the engine uses its own login for the registry (``docker login``).
    """
    import docker

    digest = None
    try:
        for chunk in client.api.push(
            plan.repository, tag=plan.tag, stream=True, decode=True, auth_config=auth
        ):
            if "error" in chunk:
                raise PluginError(f"push of {plan.ref} failed: {chunk['error']}")
            aux = chunk.get("aux") or {}
            digest = aux.get("Digest") or digest
            status = chunk.get("status")
            if status and not chunk.get("progressDetail"):
                layer = chunk.get("id")
                anyio.from_thread.run(ctx.emit, f"{layer}: {status}" if layer else status)
    except docker.errors.DockerException as exc:
        raise PluginError(f"push of {plan.ref} failed: {_explain(exc)}") from None
    if digest is None:
        raise PluginError(f"push of {plan.ref} reported no digest")
    return str(digest)


def _explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


@hookimpl
def launchplane_register_builders(register: Callable[[type[Builder]], None]) -> None:
    register(DockerBuilder)

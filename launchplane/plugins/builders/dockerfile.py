"""What the ``docker`` and ``kaniko`` builders share: the build plan, Dockerfile, context, hash.

Nothing here talks to a Docker engine or a cluster, so all of it is cheap to
test, and both builders reach the same decision for the same job: the same
Dockerfile, the same context bytes, the same tag. An image one of them pushed
is found and reused by the other. The engine halves (build, push, skip) are
:mod:`launchplane.plugins.builders.docker` and
:mod:`launchplane.plugins.builders.kaniko`.

Build plan
    :func:`plan_build` picks the job's own Dockerfile (``docker.dockerfile``,
    relative to the code, or a ``Dockerfile`` at its root) or generates one,
    lists the context and hashes it. The repository is
    ``launchplane/<name>``, or ``<registry>/<name>`` with a registry, where
    ``<name>`` is the job's ``name`` (else ``job``, ``project``, the code
    directory's name) made a valid image name; the tag is the first 16 hex
    digits of the content hash.

Base image (generated Dockerfiles)
    ``builder.accelerator.base_image``, else ``builder.base_image``, else the
    agent's ``LAUNCHPLANE_DOCKER_BASE_IMAGE``, else ``python:3.11-slim`` -
    what a user expects from ``FROM python``. An engine without access to
    Docker Hub (an air-gapped cluster, launchplane's own CI) sets the
    variable or the queue's ``builder.base_image`` to an image it has.

Build context
    The job's code directory, filtered by its ``.dockerignore`` with the
    engine's own matching rules (docker-py's ``exclude_paths``), and never
    ``.git``: two clones of one commit differ inside ``.git`` (pack files,
    index timestamps), and the commit is in the run record anyway.

Content hash
    sha256 over a recipe version, the Dockerfile text and every context entry
    in sorted order: its path, its kind, its normalised mode (``0755`` if
    executable, else ``0644``; directories ``0755``), and the sha256 of a
    file's bytes or a symlink's target. Owners and mtimes are left out, and
    the tar sent to the engine is written with exactly those normalised
    attributes (uid/gid 0, mtime 0), so the hash describes the context
    byte for byte and two agents with different umasks agree on it.

Generated Dockerfile
    ``FROM`` the base image, ``USER root`` (some bases default to a non-root
    user), dependencies, the code copied to ``/app``, a non-root user
    (uid 10001, owner of ``/app`` so a script may write relative paths such
    as ``./output``) and ``CMD`` = the job's entry point. Dependencies, first
    match wins: ``requirements.txt`` (``pip install -r`` into a venv at
    ``/opt/venv``; skipped when it lists nothing), ``pyproject.toml`` with a
    ``[project]`` or ``[build-system]`` table (``pip install /app``), then
    ``requirements.frozen.txt`` (a W&B job's ``pip freeze``, which the agent
    writes from the job's ``requirements``; ``pip install --no-deps -r``, as
    W&B installs it: the list is complete already), then
    ``environment.yml`` / ``environment.yaml`` (``mamba``/``conda``/
    ``micromamba`` from the base image, into its ``base`` environment).
    ``args`` are not baked into the image: they change from run to run and
    the runner passes them at container create, so a new ``--lr`` does not
    rebuild anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import tarfile
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from launchplane.core.interfaces import JobContext, PluginError
from launchplane.core.launch import code_root, entry_argv
from launchplane.core.spec import ResolvedJob

RECIPE_VERSION = "launchplane-docker-builder/1"
"""Part of every content hash: bump it when the generated Dockerfile changes shape."""
GENERATED_DOCKERFILE = ".launchplane.Dockerfile"
"""Name of the generated Dockerfile inside the build context (never copied into the image)."""
APP_DIR = "/app"
VENV_DIR = "/opt/venv"
USER_ID = 10001
USER_NAME = "launchplane"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH when the base image sets none (an imported rootfs): the engine's own default."""
CONDA_TOOLS = ("micromamba", "mamba", "conda")
ENVIRONMENT_FILES = ("environment.yml", "environment.yaml")
ALWAYS_EXCLUDED = (".git",)

FROZEN_REQUIREMENTS = "requirements.frozen.txt"
DEFAULT_BASE_IMAGE = "python:3.11-slim"
BASE_IMAGE_ENV = "LAUNCHPLANE_DOCKER_BASE_IMAGE"
DEFAULT_REPOSITORY = "launchplane"
HASH_LENGTH = 16
CONTENT_HASH_LABEL = "launchplane.content-hash"
"""Image label holding the full content hash (docker builder; kaniko gets it as a build label)."""
_NAME_INVALID = re.compile(r"[^a-z0-9._-]+")

DependencyKind = Literal["none", "requirements", "pyproject", "frozen", "conda"]


@dataclass(frozen=True)
class Dependencies:
    """How the job's Python dependencies get into the image."""

    kind: DependencyKind
    file: str | None = None


def detect_dependencies(root: Path) -> Dependencies:
    """The job's dependency file, by the precedence in the module docstring."""
    requirements = root / "requirements.txt"
    if requirements.is_file():
        if lists_requirements(requirements.read_text(errors="replace")):
            return Dependencies("requirements", "requirements.txt")
        return Dependencies("none", "requirements.txt")
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and _is_installable(pyproject):
        return Dependencies("pyproject", "pyproject.toml")
    frozen = root / FROZEN_REQUIREMENTS
    if frozen.is_file() and lists_requirements(frozen.read_text(errors="replace")):
        return Dependencies("frozen", FROZEN_REQUIREMENTS)
    for name in ENVIRONMENT_FILES:
        if (root / name).is_file():
            return Dependencies("conda", name)
    return Dependencies("none")


def lists_requirements(text: str) -> bool:
    """True when a requirements file has at least one line that is not blank or a comment."""
    return any(line.split("#", 1)[0].strip() for line in text.splitlines())


def _is_installable(pyproject: Path) -> bool:
    # A pyproject.toml holding only tool settings (ruff, black) is not a package.
    try:
        data = tomllib.loads(pyproject.read_text(errors="replace"))
    except tomllib.TOMLDecodeError:
        return True  # let pip report the syntax error in the build log
    return "project" in data or "build-system" in data


def generate_dockerfile(
    base_image: str,
    deps: Dependencies,
    command: Sequence[str] | None,
    conda_tool: str | None = None,
) -> str:
    """The Dockerfile for a job without its own; ``conda_tool`` is required for conda deps."""
    lines = [
        f"# Generated by launchplane's docker builder ({RECIPE_VERSION}).",
        f"FROM {base_image}",
        "USER root",
    ]
    owner = f"{USER_ID}:{USER_ID}"
    # The user owns /app: training scripts write relative paths (./output, ./wandb).
    add_user = (
        f"(id -u {USER_NAME} >/dev/null 2>&1 || useradd --uid {USER_ID} --user-group "
        f"--create-home --shell /bin/sh {USER_NAME}) "
        f"&& mkdir -p {APP_DIR} && chown {owner} {APP_DIR}"
    )
    copy_code = f"COPY --chown={owner} . {APP_DIR}"
    if deps.kind == "conda":
        if conda_tool not in CONDA_TOOLS:
            raise ValueError(f"conda dependencies need one of {CONDA_TOOLS}, got {conda_tool!r}")
        install = (
            f"micromamba install -y -n base -f /tmp/{deps.file}"
            if conda_tool == "micromamba"
            else f"{conda_tool} env update -n base -f /tmp/{deps.file}"
        )
        lines += [
            f"COPY {deps.file} /tmp/{deps.file}",
            f"RUN {install} && {conda_tool} clean -afy && {add_user}",
            "ENV PYTHONUNBUFFERED=1",
            f"WORKDIR {APP_DIR}",
            copy_code,
        ]
    else:
        pip = deps.kind in ("requirements", "pyproject", "frozen")
        venv = f"python3 -m venv {'' if pip else '--without-pip '}{VENV_DIR}"
        lines += [
            f"RUN {venv} && {add_user}",
            f"ENV PATH={VENV_DIR}/bin:${{PATH:-{DEFAULT_PATH}}} VIRTUAL_ENV={VENV_DIR} "
            "PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1",
            f"WORKDIR {APP_DIR}",
        ]
        if deps.kind in ("requirements", "frozen"):
            # Dependencies before the code: editing train.py reuses the pip layer.
            no_deps = "--no-deps " if deps.kind == "frozen" else ""
            lines += [
                f"COPY {deps.file} {APP_DIR}/{deps.file}",
                f"RUN pip install {no_deps}-r {APP_DIR}/{deps.file}",
                copy_code,
            ]
        elif deps.kind == "pyproject":
            lines += [copy_code, f"RUN pip install {APP_DIR}"]
        else:
            lines += [copy_code]
    lines.append(f"USER {owner}")
    if command:
        lines.append(f"CMD {json.dumps(list(command))}")
    return "\n".join(lines) + "\n"


def dockerignore_patterns(root: Path) -> list[str]:
    """The patterns of ``root/.dockerignore`` as the engine reads them (no blanks, no comments)."""
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(errors="replace").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def context_files(root: Path, dockerfile: str) -> list[str]:
    """Relative paths (files, directories, symlinks) of the context, sorted, after .dockerignore.

    ``dockerfile`` is always kept, as the engine keeps it.
    """
    from docker.utils.build import exclude_paths

    patterns = [*dockerignore_patterns(root), *ALWAYS_EXCLUDED]
    return sorted(exclude_paths(str(root), patterns, dockerfile=dockerfile))


@dataclass(frozen=True)
class _Entry:
    path: str
    kind: Literal["file", "dir", "symlink"]
    mode: int
    target: str = ""


def _entries(root: Path, files: Iterable[str]) -> Iterable[_Entry]:
    """Each context path with its normalised attributes; sockets and fifos are skipped."""
    for relative in files:
        info = os.lstat(root / relative)
        if stat.S_ISLNK(info.st_mode):
            yield _Entry(relative, "symlink", 0o777, os.readlink(root / relative))
        elif stat.S_ISDIR(info.st_mode):
            yield _Entry(relative, "dir", 0o755)
        elif stat.S_ISREG(info.st_mode):
            yield _Entry(relative, "file", 0o755 if info.st_mode & 0o111 else 0o644)


def content_hash(root: Path, files: Sequence[str], extra: Mapping[str, bytes]) -> str:
    """sha256 (hex) of the recipe version, ``extra`` files (the Dockerfile) and the context."""
    digest = hashlib.sha256(RECIPE_VERSION.encode() + b"\0")
    for name in sorted(extra):
        digest.update(b"X\0" + name.encode() + b"\0" + hashlib.sha256(extra[name]).digest())
    for entry in _entries(root, (f for f in files if f not in extra)):
        digest.update(f"{entry.kind}\0{entry.path}\0{entry.mode:o}\0".encode())
        if entry.kind == "file":
            digest.update(_file_sha256(root / entry.path))
        elif entry.kind == "symlink":
            digest.update(entry.target.encode() + b"\0")
    return digest.hexdigest()


def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def context_tar(
    root: Path, files: Sequence[str], extra: Mapping[str, bytes], fileobj: IO[bytes]
) -> None:
    """Write the build context to ``fileobj``: ``extra`` files replace same-named context files."""
    with tarfile.open(mode="w", fileobj=fileobj, format=tarfile.PAX_FORMAT) as tar:
        for entry in _entries(root, (f for f in files if f not in extra)):
            info = tarfile.TarInfo(entry.path)
            info.mode = entry.mode
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = entry.target
                tar.addfile(info)
            else:
                with (root / entry.path).open("rb") as handle:
                    info.size = os.fstat(handle.fileno()).st_size
                    tar.addfile(info, handle)
        for name in sorted(extra):
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            info.size = len(extra[name])
            tar.addfile(info, io.BytesIO(extra[name]))
    fileobj.seek(0)


@dataclass(frozen=True)
class BuildPlan:
    """Everything decided before talking to an engine or a cluster about the build itself."""

    root: Path
    repository: str
    content_hash: str
    dockerfile: str
    """Path of the Dockerfile inside the context."""
    generated: str | None
    """The generated Dockerfile's text, or None for the job's own."""
    files: list[str]

    @property
    def tag(self) -> str:
        return self.content_hash[:HASH_LENGTH]

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    def extra_files(self) -> dict[str, bytes]:
        return extra_files(self.generated)

    def describe(self) -> str:
        """How the image is built, for the ``building image ...`` log line."""
        if self.generated is None:
            return self.dockerfile
        base = next(line for line in self.generated.splitlines() if line.startswith("FROM "))
        return f"generated Dockerfile ({base})"


def extra_files(generated: str | None) -> dict[str, bytes]:
    """Files that join the code in the context: a generated Dockerfile and its .dockerignore.

    The job's own .dockerignore is already applied to the file list; the one
    sent tells the engine to keep the generated Dockerfile out of ``COPY . /app``.
    """
    if generated is None:
        return {}
    ignore = f"{GENERATED_DOCKERFILE}\n.dockerignore\n"
    return {GENERATED_DOCKERFILE: generated.encode(), ".dockerignore": ignore.encode()}


def base_image(job: ResolvedJob) -> str:
    """The base of a generated Dockerfile; the precedence is in the module docstring."""
    spec = job.builder
    if spec is not None and spec.accelerator is not None and spec.accelerator.base_image:
        return spec.accelerator.base_image
    if spec is not None and spec.base_image:
        return spec.base_image
    return os.environ.get(BASE_IMAGE_ENV) or DEFAULT_BASE_IMAGE


def repository(job: ResolvedJob, root: Path, registry: str | None) -> str:
    """``launchplane/<name>`` or ``<registry>/<name>``, with ``<name>`` made a valid image name."""
    raw = job.name or job.job or job.project or root.name or "job"
    name = _NAME_INVALID.sub("-", raw.lower()).strip("._-")[:100] or "job"
    prefix = registry.rstrip("/") if registry else DEFAULT_REPOSITORY
    return f"{prefix}/{name}"


def passthrough_image(job: ResolvedJob) -> str | None:
    """The job's ``docker.image`` if it names one and no ``docker.dockerfile``: no build."""
    if job.docker is None or not job.docker.image or job.docker.dockerfile:
        return None
    return job.docker.image


def build_root(job: ResolvedJob, ctx: JobContext, builder: str) -> Path:
    """The code directory to build, or a :class:`PluginError` saying why there is none."""
    root = code_root(job, ctx)
    if root is None:
        raise PluginError(
            f"builder {builder!r} has nothing to build: the job has no code "
            "(git:, or an absolute workdir:) and no docker.image"
        )
    if not root.is_dir():
        raise PluginError(f"the job's code directory {root} does not exist on the agent host")
    return root


CondaTool = Callable[[str, str], str]
"""``(base_image, dependency_file) -> tool``: which of :data:`CONDA_TOOLS` the base image
has, or a :class:`PluginError` that says how to give it one. Only the builder knows how to
find out (the docker builder asks the engine; kaniko cannot look inside an image)."""


def plan_build(
    job: ResolvedJob, root: Path, registry: str | None, conda_tool: CondaTool
) -> BuildPlan:
    """Choose the Dockerfile (the job's or a generated one) and hash the context."""
    own = job.docker.dockerfile if job.docker is not None else None
    if own or (root / "Dockerfile").is_file():
        path = own or "Dockerfile"
        if not (root / path).resolve().is_relative_to(root.resolve()):
            raise PluginError(
                f"docker.dockerfile {path!r} is outside the job's code ({root}); "
                "give a path inside the build context"
            )
        if not (root / path).is_file():
            raise PluginError(
                f"docker.dockerfile {path!r} is not a file in the job's code ({root})"
            )
        generated = None
    else:
        path = GENERATED_DOCKERFILE
        base = base_image(job)
        deps = detect_dependencies(root)
        tool = conda_tool(base, deps.file or "") if deps.kind == "conda" else None
        generated = generate_dockerfile(base, deps, entry_argv(job.entry_point), tool)
    files = context_files(root, path)
    digest = content_hash(root, files, extra_files(generated))
    return BuildPlan(root, repository(job, root, registry), digest, path, generated, files)

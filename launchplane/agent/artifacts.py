"""The ``artifacts`` stage: a job's input artifacts in, after a success its outputs out.

Inputs (between ``prepare`` and ``build``), for each of ``job.input_artifacts``
that is a store artifact (:mod:`launchplane.core.config.artifacts` says which
store and where the job sees it):

1. **Resolve** the alias (default ``latest``) to a version and digest in the
   store. The record pins those (``artifacts.inputs[i].version``/``digest``),
   never the alias: ``name:v3`` resolves to the same bytes again.
2. **Download** into the agent's cache, keyed by digest:
   ``<agent work dir>/.artifact-cache/<digest hex>/`` (:func:`cache_key`) holds ``files/`` (the
   artifact's files, made read-only) and ``artifact.json`` (the completion
   marker: digest, version, size). A download is written to
   ``.partial-<hex>-<pid>-<random>/`` and renamed into place with its marker
   already inside, so the entry appears whole or not at all; a killed
   download leaves only a partial directory, removed by the next download
   of that digest once its process is gone. The store's ``download``
   verifies the content against the digest before the rename; a later job
   needing the same digest uses the entry after checking only its marker
   (the digest matches, ``files/`` exists): cheap, and the files are
   read-only. Jobs of one agent that need one digest at once download it
   once (the others wait for it); two agents sharing a work directory may
   both download, and the second rename loses harmlessly. The cache is not
   pruned: delete ``.artifact-cache`` (or entries of it) while no job runs.
3. **Mount**: a :class:`~launchplane.core.interfaces.Mount` of ``files/`` at
   the input's target, read-only, with ``LAUNCHPLANE_ARTIFACT_<NAME>`` as its
   variable, goes to ``ctx.mounts``; the runner makes it visible and sets
   the variable to where it put it (``JobContext.mounts`` in entrypoints.md).

Outputs (after the run **succeeded**, before the job is completed): for each
of ``job.output_artifacts``, launch macros (``${run_id}``, ...) expand in its
name, its ``path`` (relative to ``$LAUNCHPLANE_OUTPUT_DIR``, or absolute
inside it; never leaving it) is uploaded as a new version (content equal to
an existing version gives that version), and ``latest`` plus the ref's alias
move to it. A failed, cancelled, released or fenced run uploads nothing.

Code (in the same stage, first): a job whose code is an ``artifact:``
(``code-bundle:v3`` in the queue's store, or ``wandb-artifact://...``), with
neither git code nor an absolute ``workdir`` (:func:`needs_code_artifact`),
gets a writable copy of that version's files as ``<run dir>/code`` - its
``ctx.code_dir``, so a relative ``workdir`` is a folder of it as of a git
checkout - and the record pins it (``artifacts.code``).

Any failure - an unknown artifact or alias, a store that is not installed, a
digest mismatch, a missing output path, a failed upload - fails the job in
the stage ``artifacts`` with a reason naming the artifact and its store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from launchplane.core.config import artifacts as refs
from launchplane.core.config.macros import expand_macros
from launchplane.core.interfaces import (
    LATEST,
    ArtifactStore,
    ArtifactVersion,
    JobContext,
    Mount,
    PluginError,
)
from launchplane.core.plugins import PluginRegistry
from launchplane.core.spec import ArtifactRef, ResolvedJob

CACHE_DIR = ".artifact-cache"
"""In the agent's work directory (a sandboxed job never sees it, only its own mounts)."""
MARKER = "artifact.json"
FILES = "files"
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")

Emit = Callable[[str], Awaitable[None]]


class ArtifactFailure(Exception):
    """The stage failed for a reason the user can act on (the pipeline's ``artifacts`` stage)."""


@dataclass
class ArtifactCache:
    """The agent's downloaded artifact versions, one directory per digest; shared by its jobs."""

    root: Path
    downloads: int = 0
    """Store downloads this process made (a cache hit makes none): for tests and bench/."""
    _locks: dict[str, anyio.Lock] = field(default_factory=dict)

    async def fetch(self, store: ArtifactStore, version: ArtifactVersion) -> tuple[Path, bool]:
        """The folder of ``version``'s files, downloaded unless cached; and whether it was."""
        if not version.digest:
            raise PluginError(f"store '{store.name}' gave {version.ref} no digest")
        key = cache_key(version.digest)
        entry = self.root / key
        async with self._locks.setdefault(key, anyio.Lock()):
            if await anyio.to_thread.run_sync(_complete, entry, version.digest):
                return entry / FILES, True
            await self._download(store, version, key)
        return entry / FILES, False

    async def _download(self, store: ArtifactStore, version: ArtifactVersion, key: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        await anyio.to_thread.run_sync(_remove_dead_partials, self.root, key)
        await anyio.to_thread.run_sync(_remove_damaged, self.root / key, version.digest)
        partial = self.root / f".partial-{key}-{os.getpid()}-{secrets.token_hex(4)}"
        partial.mkdir()
        try:
            await store.download(version, partial / FILES)
            self.downloads += 1
            marker = {
                "digest": version.digest,
                "store": version.store,
                "name": version.name,
                "version": version.version,
                "size": version.size,
            }
            (partial / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
            await anyio.to_thread.run_sync(_publish, partial, self.root / key, version.digest)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_remove, partial)


def cache_key(digest: str) -> str:
    """The cache entry's name: the hex of a ``sha256:`` digest, else a hash of the digest text
    (``wandb:...`` of an artifact made outside launchplane), so no digest becomes a path."""
    if match := _DIGEST.match(digest):
        return match.group(1)
    return "other-" + hashlib.sha256(digest.encode()).hexdigest()


def _complete(entry: Path, digest: str) -> bool:
    """A cache entry is usable when its marker names ``digest`` and its files are there."""
    try:
        marker = json.loads((entry / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("digest") == digest and (entry / FILES).is_dir()


def _publish(partial: Path, entry: Path, digest: str) -> None:
    """Make the files read-only and rename the download into place (whole or not at all)."""
    files = partial / FILES
    for folder, dirs, names in os.walk(files):
        for name in names:
            os.chmod(os.path.join(folder, name), 0o444)
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o555)
    files.chmod(0o555)
    try:
        os.rename(partial, entry)
    except OSError:
        if not _complete(entry, digest):  # another agent's rename won, else a real error
            raise


def _remove_damaged(entry: Path, digest: str) -> None:
    """An entry without its marker was damaged by hand (a rename brings both): it goes."""
    if entry.exists() and not _complete(entry, digest):
        _remove(entry)


def _remove_dead_partials(root: Path, key: str) -> None:
    """Partial downloads of ``key`` whose process is gone (a killed agent), or this one's."""
    for partial in root.glob(f".partial-{key}-*"):
        pid = partial.name.removeprefix(f".partial-{key}-").split("-")[0]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            _remove(partial)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    """``rm -rf``, read-only folders included (published files are 0444 in 0555 folders)."""
    if not path.exists():
        return
    for folder, _dirs, _files in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(folder, stat.S_IRWXU)
    shutil.rmtree(path, ignore_errors=True)


def _store(
    registry: PluginRegistry, ref: ArtifactRef, job: ResolvedJob
) -> tuple[ArtifactStore, str]:
    """The store instance and the name in it; ArtifactFailure names what is missing."""
    kind, options, name = refs.store_of(ref, job)
    try:
        return registry.artifact_store(kind, options), name
    except PluginError as exc:
        hint = ""
        if kind == refs.WANDB_STORE:
            hint = (
                " (wandb-artifact:// names are served by the 'wandb' artifact store: install "
                "launchplane[wandb] on the agent, and give the queue artifact_store: "
                "{type: wandb, options: {...}} if it needs options)"
            )
        raise ArtifactFailure(f"artifact {ref.name!r}: store '{kind}': {exc}{hint}") from None


def _shown(ref: ArtifactRef) -> str:
    return f"{ref.name}:{ref.alias or LATEST}"


@dataclass(frozen=True)
class _Fetched:
    store: ArtifactStore
    version: ArtifactVersion
    source: Path | None
    """The cache entry's files; None when the runner reads :attr:`uri` itself."""
    cached: bool = False
    uri: str | None = None


async def _fetched(
    what: str,
    ref: ArtifactRef,
    job: ResolvedJob,
    registry: PluginRegistry,
    cache: ArtifactCache,
    uri_schemes: tuple[str, ...] = (),
) -> _Fetched:
    """``ref`` resolved to a version and fetched into the cache - unless its store names
    the version by a URI whose scheme is in ``uri_schemes`` (the runner reads it there)."""
    try:
        store, name = _store(registry, ref, job)
    except PluginError as exc:  # no artifact_store on the queue
        raise ArtifactFailure(f"{what} {_shown(ref)}: {exc}") from None
    where = f"{what} {_shown(ref)} (store '{store.name}')"
    try:
        version = await store.resolve(name, ref.alias or LATEST)
        uri = store.version_uri(version)
        if uri is not None and uri.split("://", 1)[0] in uri_schemes:
            return _Fetched(store, version, None, uri=uri)
        source, cached = await cache.fetch(store, version)
    except PluginError as exc:
        raise ArtifactFailure(f"{where}: {exc}") from None
    except OSError as exc:
        raise ArtifactFailure(f"{where}: cannot download it: {exc}") from None
    return _Fetched(store, version, source, cached)


def _pin(ref: ArtifactRef, store: ArtifactStore, version: ArtifactVersion) -> dict[str, Any]:
    """The record's entry of one resolved artifact: the version and digest, never only the alias."""
    return {
        "name": ref.name,
        "alias": ref.alias or LATEST,
        "version": version.version,
        "digest": version.digest,
        "size": version.size,
        "store": store.name,
    }


def needs_code_artifact(job: ResolvedJob) -> bool:
    """Whether the job's code is its ``artifact:``: no git code and no local code.

    An absolute ``workdir`` is code on the agent's host and wins (a W&B artifact
    job's file gives its code that way, beside the ``wandb-artifact://_id/...``
    that names it); a relative one is a folder of the artifact.
    """
    return job.artifact is not None and job.git is None and not _absolute(job.workdir)


def _absolute(workdir: str | None) -> bool:
    return workdir is not None and Path(workdir).expanduser().is_absolute()


async def fetch_code(
    job: ResolvedJob, ctx: JobContext, registry: PluginRegistry, cache: ArtifactCache, dest: Path
) -> dict[str, Any] | None:
    """The code ``artifact:`` of a job without git code, copied to ``dest`` (``ctx.code_dir``).

    A copy, not a mount: a job (and a builder) may write beside its code, and the
    cached version must stay as the digest says. Returns the record's entry, or
    None when the job's code is not an artifact.
    """
    if not needs_code_artifact(job):
        return None
    ref = ArtifactRef.model_validate(job.artifact)
    got = await _fetched("code artifact", ref, job, registry, cache)
    store, version = got.store, got.version
    try:
        await anyio.to_thread.run_sync(_writable_copy, got.source, dest)
    except OSError as exc:
        raise ArtifactFailure(
            f"code artifact {_shown(ref)}: cannot copy it to {dest}: {exc}"
        ) from None
    ctx.code_dir = dest
    await ctx.emit(
        f"artifacts: code {_shown(ref)} is {version.ref} ({version.digest})"
        f"{', from the agent cache' if got.cached else ', downloaded'}"
    )
    return _pin(ref, store, version)


def _writable_copy(source: Path, dest: Path) -> None:
    """``source`` (a read-only cache entry) as a tree the owner may write; modes kept else."""
    shutil.rmtree(dest, ignore_errors=True)  # a re-run of the stage starts clean
    shutil.copytree(source, dest, symlinks=True, copy_function=shutil.copy)
    for folder, _, files in os.walk(dest):
        os.chmod(folder, 0o755)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) | stat.S_IWUSR)


async def mount_inputs(
    job: ResolvedJob,
    ctx: JobContext,
    registry: PluginRegistry,
    cache: ArtifactCache,
    entries: list[dict[str, Any]],
    uri_schemes: tuple[str, ...] = (),
) -> None:
    """Resolve, fetch and mount every input (``ctx.mounts``), each one's record entry
    appended to ``entries`` as soon as it is pinned. ``uri_schemes``: the runner's
    ``artifact_uri_schemes`` (an input it reads in its store is not downloaded)."""
    for ref in refs.mounted_inputs(job):
        got = await _fetched("input artifact", ref, job, registry, cache, uri_schemes)
        version, target = got.version, refs.input_target(ref)
        env = refs.input_env(ref)
        ctx.mounts.append(
            Mount(source=got.source, target=target, env=env, uri=got.uri, digest=version.digest)
        )
        if got.uri is not None:
            how = f"; the runner reads it at {got.uri} (${env})"
        else:
            how = (
                f"{', from the agent cache' if got.cached else ', downloaded'}; the job reads it "
                f"at {target} (${env})"
            )
        await ctx.emit(
            f"artifacts: {_shown(ref)} is {version.ref} ({version.digest}, {version.size} bytes)"
            + how
        )
        entries.append({**_pin(ref, got.store, version), "path": target})


async def upload_outputs(
    job: ResolvedJob,
    output_dir: Path,
    macros: Mapping[str, str],
    registry: PluginRegistry,
    metadata: Mapping[str, Any],
    emit: Emit,
    entries: list[dict[str, Any]],
) -> None:
    """Upload every output of a succeeded run, in order, each one's record entry appended
    to ``entries`` once stored (a later failure keeps the versions already made)."""
    for ref in job.output_artifacts:
        expanded = ref.model_copy(update={"name": expand_macros(ref.name, macros)})
        try:
            store, name = _store(registry, expanded, job)
        except PluginError as exc:
            raise ArtifactFailure(f"output artifact {expanded.name}: {exc}") from None
        where = f"output artifact {expanded.name} (store '{store.name}')"
        aliases = (ref.alias,) if ref.alias and ref.alias != LATEST else ()
        try:
            path = _output_file(output_dir, refs.output_path(ref, expanded.name))
            version = await store.upload(path, name, aliases, dict(metadata))
        except PluginError as exc:
            raise ArtifactFailure(f"{where}: {exc}") from None
        except OSError as exc:
            raise ArtifactFailure(f"{where}: the upload failed: {exc}") from None
        moved = [LATEST, *aliases]
        await emit(
            f"artifacts: uploaded {path.relative_to(output_dir.resolve())} as "
            f"{version.ref} ({version.digest}); {', '.join(moved)} -> {version.version}"
        )
        entries.append(
            {
                "name": expanded.name,
                "version": version.version,
                "digest": version.digest,
                "size": version.size,
                "store": store.name,
                "aliases": moved,
                "path": str(path.relative_to(output_dir.resolve())),
            }
        )


def _output_file(output_dir: Path, path: str) -> Path:
    """``path`` in the output directory, resolved; refused if it leaves it or is missing."""
    root = output_dir.resolve()
    candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise PluginError(
            f"path {path!r} is outside the run's output directory ($LAUNCHPLANE_OUTPUT_DIR); "
            "write the artifact there and give its path relative to it"
        )
    if not resolved.exists():
        raise PluginError(
            f"the job wrote nothing at {path!r} in its output directory "
            "($LAUNCHPLANE_OUTPUT_DIR); write the artifact there, or fix output_artifacts' path"
        )
    return resolved

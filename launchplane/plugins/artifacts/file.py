"""The ``file`` artifact store: versions in a directory (a shared filesystem such as NFS).

``artifact_store: {type: file, options: {root: /mnt/artifacts}}`` in a queue
config. The layout is :mod:`launchplane.plugins.artifacts.layout`'s. Concurrent
writers (agents on several hosts, jobs on one) are serialised per artifact by
an exclusive ``flock`` on ``<root>/<name>/.lock`` for the time of one upload;
a version's files are staged in a hidden directory and renamed into place,
then its manifest is written (to a temporary file, renamed), then the aliases
move, each with an atomic rename. Readers take no lock: they see a version
whole or not at all. A version's folder never changes once renamed into place,
so a runner may mount it in place (:meth:`FileArtifactStore.version_uri`).
``flock`` on NFS needs NFSv4 (or v3 with ``lockd``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from launchplane import hookimpl
from launchplane.core.interfaces import (
    ArtifactStore,
    ArtifactVersion,
    check_artifact_name,
)
from launchplane.plugins.artifacts import layout


class FileStoreOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: Path
    """The store's directory on the agent's host (``~`` is the agent user's home);
    created on the first upload."""

    @field_validator("root")
    @classmethod
    def _home(cls, root: Path) -> Path:
        return root.expanduser()


class FileArtifactStore(layout.BlockingArtifactStore):
    """Artifact versions under ``options.root``."""

    name = "file"
    options_model = FileStoreOptions

    @property
    def root(self) -> Path:
        assert isinstance(self.options, FileStoreOptions)
        return self.options.root

    def _artifact(self, name: str) -> Path:
        return self.root / check_artifact_name("artifact", name)

    def _manifest(self, name: str, version: str) -> layout.Manifest | None:
        path = self._artifact(name) / "versions" / f"{version}.json"
        try:
            return layout.Manifest.from_json(path.read_bytes(), str(path))
        except FileNotFoundError:
            return None

    def _aliases_of(self, name: str, version: str) -> list[str]:
        folder = self._artifact(name) / "aliases"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.read_text().strip() == version)

    def _pointer(self, name: str, alias: str) -> str | None:
        try:
            return (self._artifact(name) / "aliases" / alias).read_text().strip()
        except FileNotFoundError:
            return None

    def _unknown(self, name: str, alias: str) -> str:
        if not (self._artifact(name) / "versions").is_dir():
            return f"artifact {name!r} does not exist in the file store at {self.root}"
        return f"artifact {name!r} has no version or alias {alias!r} in the file store"

    def _place(self, name: str) -> str:
        return f"the file store at {self.root}"

    def version_uri(self, version: ArtifactVersion) -> str:
        """``file:///<root>/<name>/versions/<v>/``: the version's files on the shared
        filesystem, which a runner that mounts it reads in place (Kubernetes with
        ``artifact_volumes``); a runner without ``file`` in its ``artifact_uri_schemes``
        gets a download as before."""
        folder = self._artifact(version.name) / "versions" / version.version
        return folder.absolute().as_uri() + "/"

    def _fetch(self, version: ArtifactVersion, entry: layout.FileEntry, target: Path) -> None:
        source = self._artifact(version.name) / "versions" / version.version
        shutil.copyfile(layout.safe_member(source, entry.path), target)

    def _upload(
        self, path: Path, name: str, aliases: tuple[str, ...], metadata: dict[str, Any] | None
    ) -> ArtifactVersion:
        moving = layout.aliases_to_move(aliases)
        files = layout.scan(path)
        entries = [entry for _, entry in files]
        digest = layout.content_digest(entries)
        folder = self._artifact(name)
        versions = folder / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        with _locked(folder / ".lock"):
            existing = sorted(p.stem for p in versions.glob("v*.json"))
            same = self._same_content(name, existing, digest)
            if same is None:
                manifest = layout.new_manifest(
                    name, layout.next_version(existing), entries, metadata
                )
                self._write_version(versions, manifest, files)
            else:
                manifest = same
            for alias in moving:
                _write_atomically(folder / "aliases" / alias, f"{manifest.version}\n")
        return manifest.as_version(self.name, self._aliases_of(name, manifest.version))

    def _write_version(
        self, versions: Path, manifest: layout.Manifest, files: list[tuple[Path, Any]]
    ) -> None:
        staging = Path(tempfile.mkdtemp(prefix=f".{manifest.version}-", dir=versions))
        try:
            for source, entry in files:
                target = staging / entry.path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            os.rename(staging, versions / manifest.version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _write_atomically(versions / f"{manifest.version}.json", manifest.to_json())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename: a reader sees the old or the new, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@hookimpl
def launchplane_register_artifact_stores(
    register: Callable[[type[ArtifactStore]], None],
) -> None:
    register(FileArtifactStore)

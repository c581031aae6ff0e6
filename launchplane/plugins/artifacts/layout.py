"""What the built-in artifact stores share: the content digest, the manifest and the key layout.

Every built-in store (``file``, ``s3``) keeps an artifact under its name::

    <name>/versions/v0.json      the manifest of v0: digest, size, files, metadata
    <name>/versions/v0/<path>    v0's files
    <name>/aliases/latest        the version ``latest`` points at ("v0")

A version exists once its manifest does: the manifest is written last, so a
reader never sees a half-uploaded version, and a writer that died mid-upload
leaves only files nobody points at. The digest is computed the same way
everywhere (:func:`content_digest`), so one dataset has one digest in every
store and on every agent (its home is :mod:`launchplane.core.content_digest`).
"""

from __future__ import annotations

import abc
import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread

from launchplane.core.content_digest import FileEntry, content_digest, sha256_file
from launchplane.core.interfaces import (
    ARTIFACT_VERSION,
    LATEST,
    ArtifactStore,
    ArtifactVersion,
    PluginError,
    check_artifact_name,
)


@dataclass
class Manifest:
    """A version's manifest (``<name>/versions/<version>.json``)."""

    name: str
    version: str
    digest: str
    size: int
    files: list[FileEntry]
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "version": self.version,
                "digest": self.digest,
                "size": self.size,
                "files": [vars(f) for f in self.files],
                "metadata": self.metadata,
                "created_at": self.created_at,
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> Manifest:
        try:
            data = json.loads(text)
            return cls(
                name=data["name"],
                version=data["version"],
                digest=data["digest"],
                size=int(data["size"]),
                files=[FileEntry(**f) for f in data["files"]],
                metadata=dict(data.get("metadata") or {}),
                created_at=str(data.get("created_at") or ""),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PluginError(f"artifact manifest {where} is damaged: {exc}") from None

    def as_version(self, store: str, aliases: Iterable[str] = ()) -> ArtifactVersion:
        return ArtifactVersion(
            store, self.name, self.version, self.digest, self.size, tuple(aliases), self.metadata
        )


def scan(path: Path) -> list[tuple[Path, FileEntry]]:
    """The files to upload from ``path`` (a file, or a directory's files), with their entries.

    Symbolic links are refused rather than followed: an output directory must
    not carry files from elsewhere on the agent's host into a store.
    """
    if path.is_symlink():
        raise PluginError(f"artifact path {path} is a symbolic link; upload its target instead")
    if path.is_file():
        return [(path, FileEntry(path.name, sha256_file(path), path.stat().st_size))]
    if not path.is_dir():
        raise PluginError(f"artifact path {path} does not exist (nothing to upload)")
    found: list[tuple[Path, FileEntry]] = []
    for item in sorted(path.rglob("*")):
        if item.is_symlink():
            raise PluginError(
                f"artifact path {path} holds a symbolic link ({item.relative_to(path)}); "
                "copy the file in instead"
            )
        if item.is_file():
            relative = item.relative_to(path).as_posix()
            found.append((item, FileEntry(relative, sha256_file(item), item.stat().st_size)))
    return found


def new_manifest(
    name: str, version: str, entries: list[FileEntry], metadata: dict[str, Any] | None
) -> Manifest:
    return Manifest(
        name=name,
        version=version,
        digest=content_digest(entries),
        size=sum(e.size for e in entries),
        files=entries,
        metadata=dict(metadata or {}),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def version_number(version: str) -> int | None:
    match = ARTIFACT_VERSION.match(version)
    return int(match.group(1)) if match else None


def next_version(existing: Iterable[str]) -> str:
    numbers = [n for n in map(version_number, existing) if n is not None]
    return f"v{max(numbers) + 1 if numbers else 0}"


def aliases_to_move(aliases: Iterable[str]) -> tuple[str, ...]:
    """``latest`` and the given aliases, checked, once each; a version name is no alias."""
    names = [LATEST, *aliases]
    for alias in names:
        check_artifact_name("alias", alias)
        if version_number(alias) is not None:
            raise PluginError(f"alias {alias!r} looks like a version; versions are never aliases")
    return tuple(dict.fromkeys(names))


def safe_member(dest: Path, relative: str) -> Path:
    """``dest / relative``, refused when a manifest's path would leave ``dest``."""
    target = (dest / relative).resolve()
    if not target.is_relative_to(dest.resolve()) or relative.startswith("/"):
        raise PluginError(f"artifact file path {relative!r} leaves the download directory")
    return target


def verify(version: ArtifactVersion, entries: list[FileEntry], where: str) -> None:
    """Raise unless ``entries`` have the digest the record pins."""
    actual = content_digest(entries)
    if actual != version.digest:
        raise PluginError(
            f"{version.ref} in {where}: content digest {actual} differs from the pinned "
            f"{version.digest}; the stored version was changed or damaged"
        )


class BlockingArtifactStore(ArtifactStore):
    """A store on this layout whose I/O blocks (files, boto3): each call runs in a worker thread.

    The layout's logic (alias -> version -> manifest, download checked against
    the digest, equal content found again) lives here once. A store gives the
    I/O: :meth:`_manifest`, :meth:`_pointer`, :meth:`_aliases_of`,
    :meth:`_fetch`, :meth:`_unknown`, :meth:`_place`, and its own
    :meth:`_upload` (how a version number is claimed differs).
    """

    async def resolve(self, name: str, alias: str | None = None) -> ArtifactVersion:
        return await anyio.to_thread.run_sync(self._resolve, name, alias or LATEST)

    async def download(self, version: ArtifactVersion, dest: Path) -> Path:
        return await anyio.to_thread.run_sync(self._download, version, dest)

    async def upload(
        self,
        path: Path,
        name: str,
        aliases: tuple[str, ...] = (),
        metadata: dict[str, Any] | None = None,
    ) -> ArtifactVersion:
        return await anyio.to_thread.run_sync(self._upload, path, name, aliases, metadata)

    def _resolve(self, name: str, alias: str) -> ArtifactVersion:
        check_artifact_name("artifact", name)
        check_artifact_name("alias", alias)
        version = alias if version_number(alias) is not None else self._pointer(name, alias)
        manifest = None if version is None else self._manifest(name, version)
        if manifest is None:
            raise PluginError(self._unknown(name, alias))
        return manifest.as_version(self.name, self._aliases_of(name, manifest.version))

    def _download(self, version: ArtifactVersion, dest: Path) -> Path:
        manifest = self._manifest(version.name, version.version)
        if manifest is None:
            raise PluginError(f"{version.ref} is gone from {self._place(version.name)}")
        dest.mkdir(parents=True, exist_ok=True)
        fetched: list[FileEntry] = []
        for entry in manifest.files:
            target = safe_member(dest, entry.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            self._fetch(version, entry, target)
            fetched.append(FileEntry(entry.path, sha256_file(target), entry.size))
        verify(version, fetched, self._place(version.name))
        return dest

    def _same_content(self, name: str, versions: Iterable[str], digest: str) -> Manifest | None:
        """The existing version of ``name`` whose content has ``digest``, if any."""
        return next(
            (m for v in versions if (m := self._manifest(name, v)) and m.digest == digest), None
        )

    @abc.abstractmethod
    def _manifest(self, name: str, version: str) -> Manifest | None:
        """The version's manifest; None when it does not exist (yet)."""

    @abc.abstractmethod
    def _pointer(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at; None for an unknown alias."""

    @abc.abstractmethod
    def _aliases_of(self, name: str, version: str) -> list[str]:
        """The aliases that point at ``version``, sorted."""

    @abc.abstractmethod
    def _fetch(self, version: ArtifactVersion, entry: FileEntry, target: Path) -> None:
        """Copy one stored file of ``version`` to ``target`` (its folder exists)."""

    @abc.abstractmethod
    def _unknown(self, name: str, alias: str) -> str:
        """The error for an artifact or alias nobody stored."""

    @abc.abstractmethod
    def _place(self, name: str) -> str:
        """Where ``name`` is stored, in words, for messages."""

    @abc.abstractmethod
    def _upload(
        self, path: Path, name: str, aliases: tuple[str, ...], metadata: dict[str, Any] | None
    ) -> ArtifactVersion: ...

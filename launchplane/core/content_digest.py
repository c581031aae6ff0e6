"""The content digest of an artifact version: one home for the stores and ``artifact fetch``.

``sha256:<hex>`` over each file's relative path and SHA-256, in path order
(:func:`content_digest`): equal content has an equal digest in every store, on
every agent, and in a pod's init container that fetched the files itself
(``launchplane artifact fetch``), which is why it lives in ``core`` and not
with the stores' layout (:mod:`launchplane.plugins.artifacts.layout`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileEntry:
    """One file of a version: its path inside the artifact, its SHA-256 and size."""

    path: str
    sha256: str
    size: int


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_digest(files: Iterable[FileEntry]) -> str:
    """``sha256:<hex>`` over each file's relative path and content hash, in path order."""
    digest = hashlib.sha256()
    for entry in sorted(files, key=lambda f: f.path):
        digest.update(f"{entry.path}\0{entry.sha256}\n".encode())
    return f"sha256:{digest.hexdigest()}"

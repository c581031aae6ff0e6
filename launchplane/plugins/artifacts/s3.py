"""The ``s3`` artifact store: versions under a bucket prefix, the ``file`` store's layout.

``artifact_store: {type: s3, options: {bucket: ml-artifacts, prefix: team-a}}``
in a queue config (plus ``region``, ``endpoint_url``, ``profile`` as every AWS
plugin takes them). Transfers go through :mod:`launchplane.core.s3` (multipart
and progress for large files).

Concurrent writers: a new version number is claimed with a conditional
``PutObject`` (``If-None-Match: *``) of ``<name>/versions/<v>.claim``: of two
writers racing for ``v3`` one wins and the other takes ``v4``. Files go up
next, the manifest last, then each alias is overwritten in one request (an
object write is atomic in S3). Content equal to an existing version's gives
that version back. Needs the ``aws`` extra.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from launchplane import hookimpl
from launchplane.core import aws, s3
from launchplane.core.interfaces import (
    ArtifactStore,
    ArtifactVersion,
    PluginError,
    check_artifact_name,
)
from launchplane.plugins.artifacts import layout

CLAIM_ATTEMPTS = 100
"""Version numbers tried before an upload gives up (each lost race moves one up)."""


class S3StoreOptions(aws.AwsOptions):
    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = ""
    """Keys start with ``<prefix>/``; empty: at the bucket's root."""


class S3ArtifactStore(layout.BlockingArtifactStore):
    """Artifact versions in ``s3://<bucket>/<prefix>/``."""

    name = "s3"
    options_model = S3StoreOptions

    def __init__(self, options: S3StoreOptions | None = None) -> None:
        super().__init__(options)
        self._client: Any = None
        self._client_lock = threading.Lock()

    @property
    def settings(self) -> S3StoreOptions:
        assert isinstance(self.options, S3StoreOptions)
        return self.options

    def _s3(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = aws.client("s3", self.settings, kind="artifact store", name="s3")
            return self._client

    def _key(self, *parts: str) -> str:
        prefix = self.settings.prefix.strip("/")
        return "/".join([prefix, *parts] if prefix else parts)

    def _where(self, *parts: str) -> str:
        return str(s3.S3Uri(self.settings.bucket, self._key(*parts)))

    def _get(self, key: str) -> bytes | None:
        try:
            answer = self._s3().get_object(Bucket=self.settings.bucket, Key=key)
            return answer["Body"].read()
        except Exception as exc:
            if aws.error_code(exc) in {"NoSuchKey", "404", "NotFound"}:
                return None
            where = s3.S3Uri(self.settings.bucket, key)
            raise s3.S3Error(f"cannot read {where}: {aws.explain(exc)}") from None

    def _manifest(self, name: str, version: str) -> layout.Manifest | None:
        key = self._key(check_artifact_name("artifact", name), "versions", f"{version}.json")
        data = self._get(key)
        return None if data is None else layout.Manifest.from_json(data, self._where(key))

    def _listed(self, *parts: str) -> list[str]:
        """Object names directly under ``<prefix>/<parts>/``."""
        start = self._key(*parts) + "/"
        names: list[str] = []
        pages = self._s3().get_paginator("list_objects_v2")
        try:
            for page in pages.paginate(Bucket=self.settings.bucket, Prefix=start, Delimiter="/"):
                names += [item["Key"][len(start) :] for item in page.get("Contents", [])]
        except Exception as exc:
            raise s3.S3Error(f"cannot list {self._where(*parts)}/: {aws.explain(exc)}") from None
        return names

    def _versions(self, name: str) -> list[str]:
        listed = self._listed(name, "versions")
        return sorted({n.rsplit(".", 1)[0] for n in listed if n.endswith((".json", ".claim"))})

    def _aliases_of(self, name: str, version: str) -> list[str]:
        found = []
        for alias in self._listed(name, "aliases"):
            data = self._get(self._key(name, "aliases", alias))
            if data is not None and data.decode().strip() == version:
                found.append(alias)
        return sorted(found)

    def _pointer(self, name: str, alias: str) -> str | None:
        data = self._get(self._key(name, "aliases", alias))
        return None if data is None else data.decode().strip()

    def _unknown(self, name: str, alias: str) -> str:
        if not self._versions(name):
            return f"artifact {name!r} does not exist in {self._where()}"
        return f"artifact {name!r} has no version or alias {alias!r} in {self._where(name)}"

    def _place(self, name: str) -> str:
        return self._where(name)

    def version_uri(self, version: ArtifactVersion) -> str:
        """``s3://<bucket>/<prefix>/<name>/versions/<v>/``: the version's files, which a
        SageMaker input channel reads directly (the manifest sits beside, as ``<v>.json``)."""
        return self._where(version.name, "versions", version.version) + "/"

    def _fetch(self, version: ArtifactVersion, entry: layout.FileEntry, target: Path) -> None:
        key = self._key(version.name, "versions", version.version, entry.path)
        s3.download_file(self._s3(), self.settings.bucket, key, target)

    def _upload(
        self, path: Path, name: str, aliases: tuple[str, ...], metadata: dict[str, Any] | None
    ) -> ArtifactVersion:
        check_artifact_name("artifact", name)
        moving = layout.aliases_to_move(aliases)
        files = layout.scan(path)
        entries = [entry for _, entry in files]
        digest = layout.content_digest(entries)
        existing = self._versions(name)
        manifest = self._same_content(name, existing, digest)
        if manifest is None:
            version = self._claim(name, existing)
            manifest = layout.new_manifest(name, version, entries, metadata)
            for source, entry in files:
                key = self._key(name, "versions", version, entry.path)
                s3.upload_file(self._s3(), source, self.settings.bucket, key)
            manifest_key = self._key(name, "versions", f"{version}.json")
            s3.upload_bytes(
                self._s3(),
                manifest.to_json().encode(),
                self.settings.bucket,
                manifest_key,
                content_type="application/json",
            )
        for alias in moving:
            key = self._key(name, "aliases", alias)
            s3.upload_bytes(self._s3(), f"{manifest.version}\n".encode(), self.settings.bucket, key)
        return manifest.as_version(self.name, self._aliases_of(name, manifest.version))

    def _claim(self, name: str, existing: list[str]) -> str:
        """The next free version number, claimed so that no concurrent writer gets it too."""
        version = layout.next_version(existing)
        for _ in range(CLAIM_ATTEMPTS):
            key = self._key(name, "versions", f"{version}.claim")
            try:
                self._s3().put_object(
                    Bucket=self.settings.bucket, Key=key, Body=b"", IfNoneMatch="*"
                )
                return version
            except Exception as exc:
                if aws.error_code(exc) not in {
                    "PreconditionFailed",
                    "412",
                    "ConditionalRequestConflict",
                }:
                    raise s3.S3Error(
                        f"cannot claim {self._where(name, 'versions', version)}: {aws.explain(exc)}"
                    ) from None
            version = layout.next_version([version])
        raise PluginError(f"no free version of {name!r} after {CLAIM_ATTEMPTS} tries")


@hookimpl
def launchplane_register_artifact_stores(
    register: Callable[[type[ArtifactStore]], None],
) -> None:
    register(S3ArtifactStore)

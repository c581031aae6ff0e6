"""The ``wandb`` artifact store: versions of W&B artifacts, through the real ``wandb`` package.

``artifact_store: {type: wandb, options: {entity: acme, project: mnist}}`` in a
queue config makes plain names (``dataset:latest``) W&B artifacts of that
project; a ``wandb-artifact://entity/project/name:alias`` input is routed to
this store whatever the queue's store is, and names its own project. The agent
needs the ``wandb`` package (``pip install 'launchplane[wandb]'``) and a W&B key
of its own (``WANDB_API_KEY`` in its environment, or ``wandb login``): the store
runs on the agent, not in the job. Uploads need wandb 0.19.10 or later (a run of
their own per upload: ``reinit="create_new"``).

Versions are W&B's (``v0``, ``v1``, ...), and ``ArtifactVersion.name`` is the
full ``entity/project/name``, so a record's ``name:version`` resolves again
wherever the queue's options point later. The digest: an artifact uploaded by
this store carries launchplane's content digest (``sha256:...``, computed as
``layout.content_digest`` computes it, equal to the ``file`` and ``s3`` stores'
for equal content) in its metadata under :data:`DIGEST_KEY`; a download is
checked against it file by file. An artifact made elsewhere has only W&B's own
digest (an MD5 over its manifest): it is pinned as ``wandb:<digest>``, and a
download is checked by W&B's digest of the fetched version (W&B itself checks
each file's MD5). Equal content uploaded twice is one version: W&B deduplicates
by its digest, and the aliases move to the existing version.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field

from launchplane import RegisterArtifactStore, hookimpl
from launchplane.core.interfaces import (
    LATEST,
    ArtifactStore,
    ArtifactVersion,
    MissingExtraError,
    PluginError,
    check_artifact_name,
)
from launchplane.core.wandb_artifacts import (
    SCHEME,
    WandbArtifactPath,
    is_wandb_artifact,
    parse_wandb_artifact,
)
from launchplane.plugins.artifacts import layout

DIGEST_KEY = "launchplane_digest"
"""The W&B artifact metadata key holding launchplane's ``sha256:`` content digest."""
WANDB_DIGEST = "wandb:"


class WandbStoreOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entity: str | None = Field(default=None, min_length=1)
    """The W&B entity of plain artifact names; unset: the key's default entity."""
    project: str | None = Field(default=None, min_length=1)
    """The W&B project of plain artifact names (``wandb-artifact://`` names carry their own)."""
    base_url: str | None = None
    """The W&B server; unset: the agent's W&B settings (``WANDB_BASE_URL``, default cloud)."""
    type: str = "dataset"
    """The W&B artifact type of uploads whose metadata names no ``type``."""


def artifact_path(name: str, alias: str | None, options: WandbStoreOptions) -> WandbArtifactPath:
    """Where ``name`` lives in W&B: a URI, ``entity/project/name``, or a plain name + options."""
    text = name if is_wandb_artifact(name) else None
    if text is None and name.count("/") == 2:
        text = SCHEME + name
    if text is not None:
        try:
            return parse_wandb_artifact(text, alias)
        except ValueError as exc:
            raise PluginError(str(exc)) from None
    check_artifact_name("artifact", name)
    if options.project is None or options.entity is None:
        raise PluginError(
            f"artifact {name!r} names no W&B project: set artifact_store.options.entity and "
            f".project in the queue config, or name it wandb-artifact://entity/project/{name}"
        )
    return WandbArtifactPath(options.entity, options.project, name, alias or LATEST)


def _wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise MissingExtraError("artifact store", "wandb", "wandb") from None
    return wandb


class WandbArtifactStore(ArtifactStore):
    """W&B artifacts; every call runs the blocking ``wandb`` client in a worker thread."""

    name = "wandb"
    options_model = WandbStoreOptions
    _client: Any = None

    @property
    def settings(self) -> WandbStoreOptions:
        assert isinstance(self.options, WandbStoreOptions)
        return self.options

    async def resolve(self, name: str, alias: str | None = None) -> ArtifactVersion:
        path = artifact_path(name, alias, self.settings)
        return await anyio.to_thread.run_sync(self._resolve, path)

    async def download(self, version: ArtifactVersion, dest: Path) -> Path:
        return await anyio.to_thread.run_sync(self._download, version, dest)

    async def upload(
        self,
        path: Path,
        name: str,
        aliases: tuple[str, ...] = (),
        metadata: dict[str, Any] | None = None,
    ) -> ArtifactVersion:
        target = artifact_path(name, None, self.settings)
        return await anyio.to_thread.run_sync(self._upload, path, target, aliases, metadata)

    def _api(self) -> Any:
        """A ``wandb.Api`` with the agent's key (made once); a clear error when it has none."""
        if self._client is not None:
            return self._client
        wandb = _wandb()
        overrides = {"base_url": self.settings.base_url} if self.settings.base_url else {}
        try:
            api = wandb.Api(overrides=overrides)
        except wandb.errors.UsageError as exc:  # no key configured
            raise PluginError(_no_key(str(exc))) from None
        except Exception as exc:  # the key is checked against the server at once
            server = self.settings.base_url or "the agent's W&B server (WANDB_BASE_URL)"
            raise PluginError(
                f"artifact store 'wandb': {server} did not accept the agent's W&B key "
                f"({type(exc).__name__}: {exc})"
            ) from None
        if not api.api_key:
            raise PluginError(_no_key("no key found"))
        self._client = api
        return api

    def _artifact(self, qualified: str) -> Any:
        api = self._api()
        try:
            return api.artifact(qualified)
        except Exception as exc:  # CommError for an unknown name, alias or project
            raise PluginError(
                f"W&B artifact {qualified} not found or not readable with the agent's W&B key "
                f"({type(exc).__name__}: {exc})"
            ) from None

    def _resolve(self, path: WandbArtifactPath) -> ArtifactVersion:
        return self._as_version(path.path, self._artifact(path.qualified))

    def _as_version(self, name: str, artifact: Any) -> ArtifactVersion:
        metadata = dict(artifact.metadata or {})
        digest = metadata.get(DIGEST_KEY) or f"{WANDB_DIGEST}{artifact.digest}"
        return ArtifactVersion(
            store=self.name,
            name=name,
            version=artifact.version,
            digest=str(digest),
            size=int(artifact.size or 0),
            aliases=tuple(sorted(artifact.aliases or ())),
            metadata=metadata,
        )

    def _download(self, version: ArtifactVersion, dest: Path) -> Path:
        artifact = self._artifact(version.ref)
        dest.mkdir(parents=True, exist_ok=True)
        artifact.download(root=str(dest))
        where = f"W&B ({version.name})"
        if version.digest.startswith(WANDB_DIGEST):
            actual = f"{WANDB_DIGEST}{artifact.digest}"
            if actual != version.digest:
                raise PluginError(
                    f"{version.ref} in {where}: W&B digest {actual} differs from the pinned "
                    f"{version.digest}; the stored version was changed"
                )
        else:
            layout.verify(version, [entry for _, entry in layout.scan(dest)], where)
        return dest

    def _upload(
        self,
        path: Path,
        target: WandbArtifactPath,
        aliases: tuple[str, ...],
        metadata: dict[str, Any] | None,
    ) -> ArtifactVersion:
        moved = layout.aliases_to_move(aliases)
        entries = [entry for _, entry in layout.scan(path)]
        self._api()  # the key check, with its clear error, before a run is created
        wandb = _wandb()
        given = dict(metadata or {})
        kind = str(given.pop("type", None) or self.settings.type)
        artifact = wandb.Artifact(
            target.name, type=kind, metadata={**given, DIGEST_KEY: layout.content_digest(entries)}
        )
        if path.is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        server = {"base_url": self.settings.base_url} if self.settings.base_url else {}
        settings = wandb.Settings(silent=True, **server)
        # A run of its own per upload (uploads of several jobs may overlap in this
        # process), whose files go to a scratch directory, not the agent's cwd.
        with (
            tempfile.TemporaryDirectory(prefix="launchplane-wandb-") as scratch,
            wandb.init(
                entity=target.entity,
                project=target.project,
                job_type="launchplane-upload",
                dir=scratch,
                settings=settings,
                reinit="create_new",
            ) as run,
        ):
            logged = run.log_artifact(artifact, aliases=list(moved))
            logged.wait()
        return self._as_version(target.path, self._artifact(f"{target.path}:{logged.version}"))


def _no_key(why: str) -> str:
    return (
        f"artifact store 'wandb' needs a W&B API key on the agent ({why}): set WANDB_API_KEY "
        "in the agent's environment, or run `wandb login` as the agent's user"
    )


@hookimpl
def launchplane_register_artifact_stores(register: RegisterArtifactStore) -> None:
    register(WandbArtifactStore)

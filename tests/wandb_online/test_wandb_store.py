"""The ``wandb`` artifact store against a real W&B server.

Opt-in (marked ``wandb``): skipped unless ``LAUNCHPLANE_TEST_WANDB_API_KEY`` is
set, in CI too. Also read: ``LAUNCHPLANE_TEST_WANDB_ENTITY`` (default: the
key's default entity), ``LAUNCHPLANE_TEST_WANDB_PROJECT`` (default
``launchplane-tests``) and ``LAUNCHPLANE_TEST_WANDB_BASE_URL``. Each test uploads
artifacts of a unique name to that project.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from launchplane.core.interfaces import PluginError
from launchplane.plugins.artifacts import layout

API_KEY = os.environ.get("LAUNCHPLANE_TEST_WANDB_API_KEY")

pytestmark = [
    pytest.mark.wandb,
    pytest.mark.anyio,
    pytest.mark.skipif(
        not API_KEY, reason="set LAUNCHPLANE_TEST_WANDB_API_KEY to run the W&B store tests"
    ),
]


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The store with the test's key as the agent's, and W&B directories of the test's own."""
    wandb = pytest.importorskip("wandb", reason="pip install 'launchplane[wandb]'")
    from launchplane.plugins.artifacts.wandb import WandbArtifactStore, WandbStoreOptions

    assert API_KEY
    monkeypatch.setenv("WANDB_API_KEY", API_KEY)
    base_url = os.environ.get("LAUNCHPLANE_TEST_WANDB_BASE_URL")
    for name, value in {
        "WANDB_DIR": tmp_path / "wandb",
        "WANDB_CACHE_DIR": tmp_path / "wandb-cache",
        "WANDB_DATA_DIR": tmp_path / "wandb-data",
        "WANDB_ARTIFACT_DIR": tmp_path / "wandb-artifacts",
    }.items():
        monkeypatch.setenv(name, str(value))
    entity = os.environ.get("LAUNCHPLANE_TEST_WANDB_ENTITY")
    if not entity:
        overrides = {"base_url": base_url} if base_url else {}
        entity = wandb.Api(overrides=overrides).default_entity
    project = os.environ.get("LAUNCHPLANE_TEST_WANDB_PROJECT", "launchplane-tests")
    return WandbArtifactStore(
        options=WandbStoreOptions(entity=entity, project=project, base_url=base_url)
    )


def dataset(path: Path, text: str) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "train.csv").write_text(text)
    (path / "sub" / "labels.txt").write_text("a\nb\n")
    return path


async def test_upload_resolve_download_round_trip_with_launchplanes_digest(
    store, tmp_path: Path
) -> None:
    name = f"lp-test-{uuid.uuid4().hex[:10]}"
    source = dataset(tmp_path / "data", "x,y\n1,2\n")

    uploaded = await store.upload(source, name, aliases=("prod",), metadata={"rows": 1})

    local = [entry for _, entry in layout.scan(source)]
    assert uploaded.digest == layout.content_digest(local)  # equal to the file store's
    assert uploaded.version == "v0" and {"latest", "prod"} <= set(uploaded.aliases)
    assert uploaded.name == f"{store.settings.entity}/{store.settings.project}/{name}"
    resolved = await store.resolve(f"wandb-artifact://{uploaded.name}", "prod")
    assert (resolved.version, resolved.digest) == (uploaded.version, uploaded.digest)
    dest = await store.download(resolved, tmp_path / "down")
    assert (dest / "train.csv").read_text() == "x,y\n1,2\n"
    assert (dest / "sub" / "labels.txt").read_text() == "a\nb\n"


async def test_equal_content_is_one_version_and_new_content_the_next(store, tmp_path: Path) -> None:
    name = f"lp-test-{uuid.uuid4().hex[:10]}"
    first = await store.upload(dataset(tmp_path / "a", "1\n"), name)
    again = await store.upload(dataset(tmp_path / "b", "1\n"), name)
    other = await store.upload(dataset(tmp_path / "c", "2\n"), name)
    assert again.version == first.version and again.digest == first.digest
    assert other.version == "v1" and other.digest != first.digest
    assert (await store.resolve(name)).version == "v1"
    assert (await store.resolve(name, "v0")).digest == first.digest


async def test_an_unknown_artifact_is_an_error_naming_it(store) -> None:
    with pytest.raises(PluginError, match="not found"):
        await store.resolve(f"lp-missing-{uuid.uuid4().hex[:10]}", "latest")

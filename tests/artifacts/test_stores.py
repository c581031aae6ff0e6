"""The built-in artifact stores, each against its real backend.

``file``: a directory on this host (as a shared filesystem would be), with
concurrent writers as separate processes. ``s3``: moto's server over loopback
with real boto3 (the session's ``moto_url``), with concurrent writers as
threads racing for version numbers through conditional writes.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from launchplane.core.interfaces import ArtifactStore, PluginError
from launchplane.core.loader import get_plugin_manager
from launchplane.plugins.artifacts.layout import content_digest, scan

pytestmark = pytest.mark.anyio


def make_store(kind: str, tmp_path: Path) -> ArtifactStore:
    registry = get_plugin_manager()
    if kind == "file":
        return registry.artifact_store("file", {"root": str(tmp_path / "store")})
    import boto3

    bucket = f"lp-artifacts-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
    return registry.artifact_store("s3", {"bucket": bucket, "prefix": "team-a"})


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.aws)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "s3":
        request.getfixturevalue("aws_env")
    yield make_store(request.param, tmp_path)


def dataset(root: Path, **files: str) -> Path:
    for name, text in files.items():
        path = root / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}


async def test_upload_resolve_download_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    source = dataset(tmp_path / "out", **{"train.csv": "a,b\n1,2\n", "meta__info.json": "{}"})
    uploaded = await store.upload(source, "processed-dataset", metadata={"rows": 1})

    assert (uploaded.version, uploaded.aliases) == ("v0", ("latest",))
    assert uploaded.digest == content_digest(entry for _, entry in scan(source))
    resolved = await store.resolve("processed-dataset", "latest")
    assert resolved == uploaded
    assert resolved.metadata == {"rows": 1}
    dest = await store.download(resolved, tmp_path / "in")
    assert tree(dest) == tree(source)


async def test_versions_are_immutable_while_aliases_move(
    store: ArtifactStore, tmp_path: Path
) -> None:
    first = await store.upload(dataset(tmp_path / "a", **{"x.txt": "one"}), "ds", ("prod",))
    second = await store.upload(dataset(tmp_path / "b", **{"x.txt": "two"}), "ds")
    again = await store.upload(dataset(tmp_path / "c", **{"x.txt": "one"}), "ds", ("best",))

    assert (first.version, second.version) == ("v0", "v1")
    assert again.version == "v0"  # equal content is the same version, not a copy
    assert again.digest == first.digest
    assert set(again.aliases) == {"best", "latest", "prod"}
    assert (await store.resolve("ds")).version == "v0"  # latest moved back to it
    old = await store.resolve("ds", "v1")
    assert old.digest == second.digest
    assert tree(await store.download(old, tmp_path / "old")) == {"x.txt": "two"}


async def test_unknown_names_and_bad_names_are_errors_that_say_which(
    store: ArtifactStore, tmp_path: Path
) -> None:
    with pytest.raises(PluginError, match="artifact 'nope' does not exist"):
        await store.resolve("nope", "latest")
    await store.upload(dataset(tmp_path / "a", **{"x": "1"}), "ds")
    with pytest.raises(PluginError, match="no version or alias 'v7'"):
        await store.resolve("ds", "v7")
    with pytest.raises(PluginError, match="no version or alias 'staging'"):
        await store.resolve("ds", "staging")
    for bad in ("../etc", "a/b", ".hidden", ""):
        with pytest.raises(PluginError, match="not a valid name"):
            await store.upload(tmp_path / "a", bad)
    with pytest.raises(PluginError, match="looks like a version"):
        await store.upload(tmp_path / "a", "ds", ("v3",))
    with pytest.raises(PluginError, match="does not exist"):
        await store.upload(tmp_path / "missing", "ds")


async def test_a_symbolic_link_in_an_output_is_refused(
    store: ArtifactStore, tmp_path: Path
) -> None:
    source = dataset(tmp_path / "out", **{"ok.txt": "fine"})
    (source / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(PluginError, match="symbolic link"):
        await store.upload(source, "ds")


async def test_a_changed_stored_file_fails_the_download_by_digest(tmp_path: Path) -> None:
    store = make_store("file", tmp_path)
    version = await store.upload(dataset(tmp_path / "a", **{"x.txt": "one"}), "ds")
    (tmp_path / "store" / "ds" / "versions" / "v0" / "x.txt").write_text("tampered")
    with pytest.raises(PluginError, match="differs from the pinned"):
        await store.download(version, tmp_path / "in")


def _upload_in_a_process(root: str, index: int) -> str:
    """One writer process: its own content, the shared artifact name."""
    import tempfile

    registry = get_plugin_manager()
    store = registry.artifact_store("file", {"root": root})
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "out"
        source.mkdir()
        (source / "part.txt").write_text(f"writer {index}\n" * 1000)
        return anyio.run(store.upload, source, "shared").version


def test_concurrent_writer_processes_get_distinct_whole_versions(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    writers = 8
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(writers, mp_context=context) as pool:
        versions = list(pool.map(_upload_in_a_process, [root] * writers, range(writers)))

    assert sorted(versions) == sorted(f"v{i}" for i in range(writers))
    store = make_store("file", tmp_path)

    async def check() -> None:
        contents = set()
        for version in versions:
            got = await store.resolve("shared", version)
            dest = await store.download(got, tmp_path / "check" / version)
            contents.add((dest / "part.txt").read_text())
        assert len(contents) == writers
        assert (await store.resolve("shared")).version in versions

    anyio.run(check)


@pytest.mark.aws
def test_concurrent_s3_writers_race_for_version_numbers(aws_env: Any, tmp_path: Path) -> None:
    store = make_store("s3", tmp_path)
    writers = 6
    sources = [dataset(tmp_path / f"w{i}", **{"part.txt": f"writer {i}"}) for i in range(writers)]
    with concurrent.futures.ThreadPoolExecutor(writers) as pool:
        futures = [pool.submit(anyio.run, store.upload, source, "shared") for source in sources]
        versions = [f.result().version for f in futures]
    assert sorted(versions) == sorted(f"v{i}" for i in range(writers))

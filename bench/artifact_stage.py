#!/usr/bin/env python3
"""The artifacts stage: the cost of one 100 MB input artifact, uncached and cached.

What the agent does for an input before the build (``launchplane.agent.artifacts
.mount_inputs``, the same code, with a real plugin registry and the ``file``
store on this machine's temporary directory): resolve ``dataset:latest`` to a
version and digest, fetch it into the agent's cache by digest, add the mount.

* **uncached**: a fresh agent cache each repetition, so the store's download
  runs - a copy of 100 MB (4 files of 25 MB) and its SHA-256 check against
  the pinned digest, then the rename into the cache.
* **cached**: the same digest again in a warm cache - resolve (read the alias
  and the manifest) and the marker check; nothing is copied or hashed.

Each figure is the median of several repetitions (wall time of the whole
stage for that input), with the spread. The store and the cache share one
file system, as a store on a local disk would; an NFS store adds its read
time to the uncached figure.

    .venv/bin/python bench/artifact_stage.py [--quick]
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import _common as c
import anyio

SIZE = 100 * 1024 * 1024
FILES = 4
CACHED_TARGET_MS = 50.0


def remove(path: Path) -> None:
    """``rm -rf`` of a cache: its entries' folders are read-only (0555)."""
    for folder, _dirs, _files in os.walk(path):
        os.chmod(folder, 0o700)
    shutil.rmtree(path)


async def measure(root: Path, repetitions: int) -> tuple[list[float], list[float]]:
    from launchplane.agent.artifacts import ArtifactCache, mount_inputs
    from launchplane.core.interfaces import JobContext
    from launchplane.core.plugins import get_plugin_manager
    from launchplane.core.spec import ResolvedJob

    data = root / "data"
    data.mkdir()
    for index in range(FILES):
        (data / f"part-{index}.bin").write_bytes(os.urandom(SIZE // FILES))
    registry = get_plugin_manager()
    options = {"root": str(root / "store")}
    store = registry.artifact_store("file", options)
    await store.upload(data, "dataset")
    job = ResolvedJob.model_validate(
        {
            "command": ["true"],
            "input_artifacts": ["dataset:latest"],
            "artifact_store": {"type": "file", "options": options},
        }
    )

    async def stage(cache: ArtifactCache) -> float:
        ctx = JobContext(job_id="bench", run_id="bench-1", attempt=1, queue="q", workdir=root)
        start = time.perf_counter()
        await mount_inputs(job, ctx, registry, cache, [])
        elapsed = (time.perf_counter() - start) * 1000
        assert len(ctx.mounts) == 1
        return elapsed

    uncached = []
    for index in range(repetitions):
        cold = root / f"cold-{index}"
        uncached.append(await stage(ArtifactCache(cold)))
        remove(cold)
    warm = ArtifactCache(root / "warm")
    await stage(warm)
    cached = [await stage(warm) for _ in range(repetitions)]
    assert warm.downloads == 1, "a cached input was downloaded again"
    await registry.aclose()
    return uncached, cached


def main() -> None:
    parser = c.arguments(__doc__.splitlines()[0])
    args = parser.parse_args()
    report = c.Report("artifact_stage", "Artifacts stage: one 100 MB input (file store)", args)
    repetitions = 3 if args.quick else 7
    with tempfile.TemporaryDirectory(prefix="lp-bench-artifacts-") as tmp:
        try:
            uncached, cached = anyio.run(measure, Path(tmp), repetitions)
        finally:
            remove(Path(tmp))
    report.details["uncached_ms"] = uncached
    report.details["cached_ms"] = cached
    report.add(
        "uncached_100mb_p50_ms",
        "100 MB input, uncached: resolve + download + verify + mount",
        c.percentile(uncached, 50),
        "ms",
        None,
        f"p50 of {repetitions}",
        spread=c.spread(uncached),
    )
    report.add(
        "cached_100mb_p50_ms",
        "100 MB input, cached: resolve + cache check + mount",
        c.percentile(cached, 50),
        "ms",
        ("<=", CACHED_TARGET_MS),
        f"p50 of {repetitions}",
        spread=c.spread(cached),
    )
    report.finish()


if __name__ == "__main__":
    main()

"""The ``noop`` builder passes the job's image through and never builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from launchplane.core.interfaces import Image, JobContext
from launchplane.core.plugins import get_plugin_manager
from launchplane.core.spec import DockerSource, ResolvedJob
from launchplane.plugins.builders.noop import NoopBuilder


def context(tmp_path: Path, lines: list[str]) -> JobContext:
    async def sink(line: str) -> None:
        lines.append(line)

    return JobContext(job_id="j", run_id="r", attempt=1, queue="q", workdir=tmp_path, log=sink)


@pytest.mark.anyio
async def test_passes_the_named_image_through(tmp_path: Path) -> None:
    lines: list[str] = []
    job = ResolvedJob(docker=DockerSource(image="registry.local/train:1.2"))
    image = await NoopBuilder().build(job, context(tmp_path, lines))
    assert image == Image(ref="registry.local/train:1.2", digest=None, built=False)
    assert lines == ["noop builder: using image registry.local/train:1.2 as is"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "docker", [None, DockerSource(), DockerSource(image=""), DockerSource(dockerfile="Dockerfile")]
)
async def test_no_image_for_a_job_without_one(tmp_path: Path, docker: DockerSource | None) -> None:
    lines: list[str] = []
    assert await NoopBuilder().build(ResolvedJob(docker=docker), context(tmp_path, lines)) is None
    assert lines == []


@pytest.mark.anyio
async def test_registered_as_builtin_builder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD", "1")
    builder = get_plugin_manager().builder("noop")
    assert isinstance(builder, NoopBuilder)
    job = ResolvedJob(docker=DockerSource(image="busybox"))
    assert await builder.build(job, context(tmp_path, [])) == Image(ref="busybox")

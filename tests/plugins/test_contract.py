"""Plugin contract v1: incomplete plugins are refused; runners pass the shared conformance check.

``launchplane.testing.RunnerConformance`` drives a runner the way the agent
does. A minimal third-party runner written only against the documented
contract (minimal_runner.py), the local-process runner and the docker runner
pass it; runners that break the contract are caught by it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kit import DOCKER_BASE_IMAGE, require_docker
from minimal_runner import MinimalRun, MinimalRunner

from launchplane.core.interfaces import (
    Builder,
    Image,
    JobContext,
    Plugin,
    Run,
    Runner,
    SecretProvider,
    SecretRef,
)
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.runners.local import LocalProcessRunner
from launchplane.testing import ConformanceError, RunnerConformance

pytestmark = pytest.mark.anyio

CHECKS = ["check_describe", "check_output", "check_failure", "check_cancel", "check_attach"]


def python_job(resource: str, python: str = sys.executable) -> Any:
    def job(script: str) -> ResolvedJob:
        return ResolvedJob(resource=resource, command=[python, "-c", script])

    return job


# -- incomplete classes are refused -----------------------------------------------------


@pytest.mark.parametrize(
    ("base", "required"),
    [
        (Runner, {"describe", "submit"}),
        (Builder, {"build"}),
        (SecretProvider, {"resolve"}),
        (Run, {"status", "wait", "cancel", "logs"}),
    ],
)
def test_an_empty_subclass_is_abstract_and_names_every_missing_method(
    base: type, required: set[str]
) -> None:
    empty = type(f"Empty{base.__name__}", (base,), {"name": "empty", "scheme": "empty"})
    assert empty.__abstractmethods__ == frozenset(required)
    with pytest.raises(TypeError) as caught:
        empty()
    assert all(name in str(caught.value) for name in required)


def test_a_runner_missing_only_submit_is_refused_naming_submit() -> None:
    class HalfRunner(Runner):
        name = "half"

        def describe(self, job: ResolvedJob, image: Image | None) -> dict[str, Any]:
            return {}

    assert HalfRunner.__abstractmethods__ == frozenset({"submit"})
    with pytest.raises(TypeError, match="submit"):
        HalfRunner()


async def test_optional_methods_have_working_defaults(tmp_path: Path) -> None:
    class Complete(Runner, SecretProvider):
        name = "complete"
        scheme = "complete"

        def describe(self, job: ResolvedJob, image: Image | None) -> dict[str, Any]:
            return {}

        async def submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> Any:
            raise AssertionError

        async def resolve(self, ref: SecretRef) -> str:
            return "value"

    plugin = Complete()
    assert isinstance(plugin, Plugin) and plugin.options is None
    assert await plugin.attach("j-1", tmp_path / "j-1") is None
    assert plugin.native_ref(SecretRef("complete", "a"), "docker") is None
    assert await plugin.aclose() is None
    assert JobContext("j", "j-1", 1, "q", tmp_path).native_secrets == {}


# -- the conformance helper ---------------------------------------------------------------


def test_the_conformance_helper_imports_no_test_framework() -> None:
    probe = "import sys, launchplane.testing; print(sorted({'pytest', '_pytest'} & {*sys.modules}))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


async def test_a_minimal_third_party_runner_passes(tmp_path: Path) -> None:
    check = RunnerConformance(
        MinimalRunner(), python_job("minimal-process"), tmp_path, readopt=True
    )
    assert await check.check_all() == CHECKS


async def test_the_local_process_runner_passes(tmp_path: Path) -> None:
    check = RunnerConformance(LocalProcessRunner(), python_job("local-process"), tmp_path)
    assert await check.check_all() == CHECKS


@pytest.mark.docker
async def test_the_docker_runner_passes(tmp_path: Path) -> None:
    from launchplane.plugins.runners.docker import DockerRunner

    require_docker()
    runner = DockerRunner()
    check = RunnerConformance(
        runner,
        python_job("docker", python="python3"),
        tmp_path,
        image=Image(ref=DOCKER_BASE_IMAGE),
        readopt=True,
        name="lptest-conformance",  # containers lp-lptest-*: tests/docker cleans them up
    )
    try:
        assert await check.check_all() == CHECKS
    finally:
        await runner.aclose()


class _LateLogs(MinimalRun):
    """Breaks the contract: its logs start with the second line."""

    async def logs(self) -> AsyncIterator[str]:
        lines = super().logs()
        await anext(lines)
        async for line in lines:
            yield line


class _LateLogsRunner(MinimalRunner):
    async def submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> MinimalRun:
        run = await super().submit(job, image, ctx)
        return _LateLogs(run.id, run.files, run.pid)


class _ForgetfulRunner(MinimalRunner):
    """Breaks the contract: claims to re-adopt but never finds a run."""

    async def attach(self, run_id: str, run_dir: Path) -> MinimalRun | None:
        return None


async def test_the_helper_catches_logs_that_miss_lines(tmp_path: Path) -> None:
    check = RunnerConformance(_LateLogsRunner(), python_job("minimal-process"), tmp_path)
    with pytest.raises(ConformanceError, match="did not get every line in order: line 0 is"):
        await check.check_output()


async def test_the_helper_catches_a_runner_that_cannot_readopt(tmp_path: Path) -> None:
    check = RunnerConformance(
        _ForgetfulRunner(), python_job("minimal-process"), tmp_path, readopt=True
    )
    with pytest.raises(ConformanceError, match=r"returned None for a live run"):
        await check.check_attach()

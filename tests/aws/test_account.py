"""Opt-in: the sagemaker runner against a real AWS account (costs money; minutes per test).

Skipped unless ``LAUNCHPLANE_TEST_AWS_PROFILE`` names a profile of
``~/.aws/config`` (also in CI). It then needs:

``LAUNCHPLANE_TEST_SAGEMAKER_ROLE``    a role SageMaker may assume (its RoleArn)
``LAUNCHPLANE_TEST_SAGEMAKER_OUTPUT``  ``s3://bucket/prefix`` the role may write
``LAUNCHPLANE_TEST_SAGEMAKER_IMAGE``   an ECR image with ``python3`` in the same region
``LAUNCHPLANE_TEST_SAGEMAKER_INSTANCE`` optional, default ``ml.m5.large``

What runs for real here and only with moto or the Stubber elsewhere: the
whole life of a training job (InProgress -> Completed/Failed/Stopped with
SageMaker's own SecondaryStatus transitions and FailureReason),
StopTrainingJob, MaxRuntimeInSeconds, and the CloudWatch streams SageMaker
writes itself. Each test names its job after a fresh run id.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from launchplane.core.interfaces import Image, JobContext, RunResult, RunState
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.runners.sagemaker import SageMakerRun, SageMakerRunner

PROFILE = os.environ.get("LAUNCHPLANE_TEST_AWS_PROFILE")
pytestmark = [
    pytest.mark.aws_account,
    pytest.mark.anyio,
    pytest.mark.skipif(not PROFILE, reason="set LAUNCHPLANE_TEST_AWS_PROFILE to run"),
    pytest.mark.timeout(1800),
]


def setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(f"LAUNCHPLANE_TEST_SAGEMAKER_{name}", default)
    if not value:
        pytest.fail(
            f"LAUNCHPLANE_TEST_SAGEMAKER_{name} is needed with LAUNCHPLANE_TEST_AWS_PROFILE"
        )
    return value


def job(script: str, **stopping: int) -> ResolvedJob:
    args: dict[str, Any] = {
        "RoleArn": setting("ROLE"),
        "OutputDataConfig": {"S3OutputPath": setting("OUTPUT")},
        "InstanceType": setting("INSTANCE", "ml.m5.large"),
        "VolumeSizeInGB": 5,
        "MaxRuntimeInSeconds": stopping.get("max_runtime", 900),
        "profile": PROFILE,
        "poll_interval": 10,
        "max_poll_interval": 30,
    }
    return ResolvedJob.model_validate(
        {
            "resource": "sagemaker",
            "command": ["python3", "-c", script],
            "resource_args": {"sagemaker": args},
        }
    )


async def launch(
    spec: ResolvedJob, tmp_path: Path, *, cancel_after: float | None = None
) -> tuple[SageMakerRun, RunResult, list[str]]:
    run_id = f"acct-{uuid.uuid4().hex[:12]}-1"
    ctx = JobContext(
        job_id=run_id[:-2], run_id=run_id, attempt=1, queue="account", workdir=tmp_path
    )
    runner = SageMakerRunner()
    run = await runner.submit(spec, Image(setting("IMAGE")), ctx)
    lines: list[str] = []

    async def pump() -> None:
        async for line in run.logs():
            lines.append(line)

    async def stop_later() -> None:
        assert cancel_after is not None
        await anyio.sleep(cancel_after)
        await run.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump)
        if cancel_after is not None:
            tg.start_soon(stop_later)
        result = await run.wait()
    return run, result, lines


async def test_a_job_completes_and_its_cloudwatch_lines_arrive(tmp_path: Path) -> None:
    run, result, lines = await launch(job("print('hello from sagemaker')"), tmp_path)
    assert result.state is RunState.SUCCEEDED
    assert "hello from sagemaker" in lines
    assert run.facts()["training_job_arn"].startswith("arn:aws")


async def test_a_failing_job_reports_its_exit_code_and_reason(tmp_path: Path) -> None:
    _, result, _ = await launch(job("import sys; sys.exit(3)"), tmp_path)
    assert (result.state, result.infrastructure_failure) == (RunState.FAILED, False)
    assert result.reason and "training job failed" in result.reason


async def test_cancel_stops_the_job(tmp_path: Path) -> None:
    _, result, _ = await launch(job("import time; time.sleep(1200)"), tmp_path, cancel_after=240)
    assert result.state is RunState.CANCELLED


async def test_max_runtime_is_reported(tmp_path: Path) -> None:
    spec = job("import time; time.sleep(1200)", max_runtime=120)
    _, result, _ = await launch(spec, tmp_path)
    assert result.reason and result.reason.startswith("MaxRuntimeInSeconds (120 s) reached")

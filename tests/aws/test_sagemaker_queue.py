"""A SageMaker queue may not hand secret values to its jobs unless an admin opts in.

SageMaker shows a training job's Environment to anyone allowed
DescribeTrainingJob, so ``queue create`` on a real queue server refuses a
queue whose ``secrets:`` would land there; ``aws-sm:`` references are
accepted (the job gets the secret's id, for its role to read). The runner
refuses again at submit, before any AWS call, should a queue slip through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from launchplane.core.client import LaunchplaneClient, ValidationFailed
from launchplane.core.interfaces import Image, JobContext, PluginError
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.runners.sagemaker import SageMakerRunner
from launchplane.server.embedded import EmbeddedServer

pytestmark = [pytest.mark.aws, pytest.mark.anyio]

ARGS = {
    "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
    "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
}


def queue(secrets: dict[str, str], **extra: object) -> dict[str, object]:
    return {
        "resource": "sagemaker",
        "secrets": secrets,
        "resource_args": {"sagemaker": {**ARGS, **extra}},
    }


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        yield srv


async def test_secret_values_without_the_opt_in_are_refused_at_queue_create(
    client: LaunchplaneClient,
) -> None:
    secrets = {"HF_TOKEN": "env:HF_TOKEN", "DB_PASSWORD": "aws-sm:prod/db#password"}
    with pytest.raises(ValidationFailed) as caught:
        await client.create_queue("sm-secrets", queue(secrets))
    [error] = caught.value.errors
    assert error["path"] == "secrets.HF_TOKEN"
    assert "anyone allowed sagemaker:DescribeTrainingJob can read" in error["message"]
    assert "secrets_in_environment: true" in error["message"]
    assert "aws-sm:NAME" in error["message"]


async def test_aws_sm_references_and_the_admins_opt_in_are_accepted(
    client: LaunchplaneClient,
) -> None:
    await client.create_queue("sm-refs", queue({"DB_PASSWORD": "aws-sm:prod/db#password"}))
    opted = queue({"HF_TOKEN": "env:HF_TOKEN"}, secrets_in_environment=True)
    assert (await client.create_queue("sm-opted", opted))["version"] == 1


def launch(job: dict[str, object], tmp_path: Path) -> tuple[ResolvedJob, JobContext]:
    resolved = ResolvedJob.model_validate({"resource": "sagemaker", "entry_point": "x.py", **job})
    ctx = JobContext(
        job_id="j",
        run_id="j-1",
        attempt=1,
        queue="q",
        workdir=tmp_path,
        env={"HF_TOKEN": "canary-value"},
        secret_names=frozenset({"HF_TOKEN"}),
    )
    return resolved, ctx


async def test_submit_refuses_secret_values_again_before_any_aws_call(tmp_path: Path) -> None:
    job, ctx = launch(
        {"secrets": {"HF_TOKEN": "env:HF_TOKEN"}, "resource_args": {"sagemaker": ARGS}}, tmp_path
    )
    with pytest.raises(PluginError) as caught:
        # No client exists yet: a call would need one (and moto is not even running).
        await SageMakerRunner().submit(job, Image("img:1"), ctx)
    assert "secrets HF_TOKEN would be put in the training job's Environment" in str(caught.value)
    assert "canary-value" not in str(caught.value)
    assert not (tmp_path / "sagemaker.json").exists()


def test_plan_shows_references_never_values() -> None:
    job = ResolvedJob.model_validate(
        {
            "resource": "sagemaker",
            "docker": {"image": "img:1"},
            "secrets": {"DB": "aws-sm:prod/db#password"},
            "resource_args": {"sagemaker": ARGS},
        }
    )
    shown = SageMakerRunner().describe(job, Image("img:1"))
    assert shown["secrets"] == {"DB": "aws-sm:prod/db#password (reference)"}
    env = shown["CreateTrainingJob"]["Environment"]
    assert (env["DB_SECRET_ID"], env["DB_SECRET_KEY"]) == ("prod/db", "password")
    assert "DB" not in env

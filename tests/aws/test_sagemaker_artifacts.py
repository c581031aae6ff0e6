"""Input artifacts of an ``s3`` store on SageMaker: pinned by the agent, read by the instance.

A real server and agent on loopback, the sagemaker runner and the ``s3``
artifact store against moto's server with real boto3. The agent resolves the
alias to a version and digest but does not download it: the training job gets
an S3 input channel on the version's own prefix (versions never change), and
the job's variable names the channel's folder.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import pytest
from kit import log_lines, running_agent, wait_for_state
from sagemakerkit import HoldingProxy

from launchplane.core.client import LaunchplaneClient
from launchplane.plugins.artifacts.s3 import S3ArtifactStore, S3StoreOptions
from launchplane.plugins.runners.sagemaker_request import training_job_name
from launchplane.server.embedded import EmbeddedServer

pytestmark = [pytest.mark.aws, pytest.mark.anyio]

QUEUE = "sagemaker-artifacts"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        yield srv


async def test_an_s3_store_input_is_an_input_channel_on_its_pinned_version(
    server: EmbeddedServer, client: LaunchplaneClient, aws_env: dict[str, str], tmp_path: Path
) -> None:
    proxy = HoldingProxy(aws_env["AWS_ENDPOINT_URL"])  # records the requests (moto's
    # DescribeTrainingJob does not give the Environment back)
    bucket = f"lp-sm-artifacts-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
    store = S3ArtifactStore(S3StoreOptions(bucket=bucket, prefix="team"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("x,y\n1,0\n")
    v0 = await store.upload(data, "dataset")
    (data / "train.csv").write_text("x,y\n1,0\n2,1\n")
    await store.upload(data, "dataset")  # latest is v1 now
    await server.ensure_queue(
        QUEUE,
        {
            "resource": "sagemaker",
            "artifact_store": {"type": "s3", "options": {"bucket": bucket, "prefix": "team"}},
            "resource_args": {
                "sagemaker": {
                    "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
                    "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/out"},
                    "InstanceType": "ml.m5.xlarge",
                    "VolumeSizeInGB": 5,
                    "MaxRuntimeInSeconds": 600,
                    "poll_interval": 0.05,
                    "max_poll_interval": 0.2,
                    "endpoint_url": proxy.url,
                }
            },
        },
    )
    with proxy.running():
        async with running_agent(server, tmp_path / "work", [QUEUE]):
            job = await client.submit_job(
                QUEUE,
                {
                    "docker": {"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1"},
                    "command": ["python", "train.py"],
                    "input_artifacts": ["dataset:v0"],
                },
            )
            done = await wait_for_state(client, job["id"], timeout=60)
            record = await client.get_record(job["id"])
    assert done["state"] == "succeeded", record["result"]
    [pinned] = record["artifacts"]["inputs"]
    assert (pinned["version"], pinned["digest"], pinned["store"]) == ("v0", v0.digest, "s3")
    described = boto3.client("sagemaker", region_name="us-east-1").describe_training_job(
        TrainingJobName=training_job_name(f"{job['id']}-1")
    )
    [channel] = described["InputDataConfig"]
    assert channel["ChannelName"] == "dataset"
    uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
    assert uri == f"s3://{bucket}/team/dataset/versions/v0/"
    listed = boto3.client("s3", region_name="us-east-1").list_objects_v2(
        Bucket=bucket, Prefix="team/dataset/versions/v0/"
    )
    assert [o["Key"] for o in listed["Contents"]] == ["team/dataset/versions/v0/train.csv"]
    [request] = proxy.calls("CreateTrainingJob")
    environment = request["Environment"]
    assert environment["LAUNCHPLANE_ARTIFACT_DATASET"] == "/opt/ml/input/data/dataset"
    assert not (tmp_path / "work" / ".artifact-cache").exists()  # nothing downloaded
    assert any(
        "the runner reads it at s3://" in line for line in await log_lines(client, job["id"])
    )

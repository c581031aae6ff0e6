"""End to end on moto: queue server + real ``launch-agent`` processes + docker builder + moto.

examples/hello is built by the docker builder and pushed to the local
registry (so the image has a registry digest), then run by the sagemaker
runner: real boto3 calls over HTTP to moto's server create the training
job, describe it and read its CloudWatch Logs. The CloudWatch lines are
written into moto by the test, as SageMaker's instances would write them.
The queue opts in to a secret value in the job's Environment: it reaches the
request, and is scrubbed from the CloudWatch output and kept out of the record.

Simulated: moto finishes a training job at once, so a test-side proxy
(``sagemakerkit.HoldingProxy``) between boto3 and moto holds its
DescribeTrainingJob answers at InProgress/Training until the test lets go;
that is how an agent can be killed, and replaced, while the job runs.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from kit import (
    DOCKER_BASE_IMAGE,
    DOCKER_HINT,
    LAUNCHPLANE,
    agent_process,
    eventually,
    log_lines,
    require_docker,
    require_service,
    subprocess_env,
    wait_for_line,
    wait_for_state,
)
from sagemakerkit import HoldingProxy

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = [pytest.mark.aws, pytest.mark.docker, pytest.mark.anyio]

REGISTRY = os.environ.get("LAUNCHPLANE_TEST_REGISTRY", "127.0.0.1:5000")
HELLO = Path(__file__).parents[2] / "examples" / "hello"
QUEUE = "sagemaker-moto"
GROUP = "/aws/sagemaker/TrainingJobs"
CANARY_VAR = "LPTEST_SAGEMAKER_CANARY"
CANARY = "sm-canary-7f3a9c21"


def registry_up() -> bool:
    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def proxy(aws_env: dict[str, str]) -> Iterator[HoldingProxy]:
    with HoldingProxy(aws_env["AWS_ENDPOINT_URL"]).running() as running:
        running.hold.set()
        yield running


@pytest.fixture
async def server(tmp_path: Path, proxy: HoldingProxy) -> AsyncIterator[EmbeddedServer]:
    require_docker()
    require_service(f"Docker registry on {REGISTRY}", registry_up(), DOCKER_HINT)
    config = {
        "resource": "sagemaker",
        "builder": {
            "type": "docker",
            "base_image": DOCKER_BASE_IMAGE,
            "options": {"registry": f"{REGISTRY}/lptest-sagemaker"},
        },
        "lease_ttl_seconds": 30,  # still held when the killed agent's successor starts
        "env": {"GREETING": "hello from the queue"},
        # The admin opts in: this value goes into the job's Environment (and nowhere else).
        "secrets": {"API_TOKEN": f"env:{CANARY_VAR}"},
        "resource_args": {
            "sagemaker": {
                "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
                "OutputDataConfig": {"S3OutputPath": "s3://lptest-sagemaker/out"},
                "InstanceType": "ml.m5.xlarge",
                "VolumeSizeInGB": 5,
                "MaxRuntimeInSeconds": 600,
                "endpoint_url": proxy.url,
                "poll_interval": 0.05,
                "max_poll_interval": 0.2,
                "secrets_in_environment": True,
            }
        },
    }
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        await srv.ensure_queue(QUEUE, config)
        yield srv


def write_log_lines(job_name: str, stream: str, lines: list[str]) -> None:
    """What an instance of the job writes to CloudWatch (boto3 -> moto)."""
    import boto3

    logs = boto3.client("logs")
    if not logs.describe_log_groups(logGroupNamePrefix=GROUP)["logGroups"]:
        logs.create_log_group(logGroupName=GROUP)
    name = f"{job_name}/{stream}"
    if not logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=name)["logStreams"]:
        logs.create_log_stream(logGroupName=GROUP, logStreamName=name)
    now = int(time.time() * 1000)
    events = [{"timestamp": now + i, "message": line} for i, line in enumerate(lines)]
    logs.put_log_events(logGroupName=GROUP, logStreamName=name, logEvents=events)


async def test_submit_runs_a_training_job_whose_logs_and_record_reach_the_user_across_a_restart(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    proxy: HoldingProxy,
    aws_env: dict[str, str],
    tmp_path: Path,
) -> None:
    token = await server.create_token("agent", queues=[QUEUE])
    env = subprocess_env(
        **aws_env, DOCKER_HOST=os.environ.get("DOCKER_HOST", ""), **{CANARY_VAR: CANARY}
    )
    work = tmp_path / "work"
    options: dict[str, Any] = {"queues": [QUEUE], "agent_id": "sm-box", "env": env}
    job = await client.submit_job(
        QUEUE,
        {
            "workdir": str(HELLO),
            "entry_point": "train.py",
            "args": ["--epochs", "2"],
            "hyperparameters": {"lr": 0.01},
        },
    )
    run_id = f"{job['id']}-1"
    name = f"lp-{run_id}"
    # Two instances' streams; the second's lines come after the first's.
    write_log_lines(name, "algo-1-1700000000", ["step 1", "step 2"])
    write_log_lines(name, "algo-2-1700000000", ["step 3", f"token={CANARY}"])

    async with agent_process(server.url, token, work, **options, log_name="first.log") as first:
        await wait_for_line(client, job["id"], lambda line: line == "token=***", timeout=120)

        async def first_four_recorded() -> bool:
            try:
                return int((work / run_id / "logged-lines").read_text()) >= 3
            except (OSError, ValueError):
                return False

        await eventually(first_four_recorded, 10, "the logged-lines count")
        await first.kill()
    assert (await client.get_job(job["id"]))["state"] == "running"

    write_log_lines(name, "algo-1-1700000000", ["step 4", "step 5"])
    async with agent_process(server.url, token, work, **options, log_name="second.log") as second:
        await wait_for_line(client, job["id"], lambda line: line == "step 5", timeout=30)
        proxy.hold.clear()  # the training job may complete now
        done = await wait_for_state(client, job["id"], timeout=30)
    assert (done["state"], done["attempt"]) == ("succeeded", 1), second.log()
    assert "re-adopted its sagemaker run after a restart" in second.log()

    # Every CloudWatch line once, in order, though two agents read the streams.
    lines = await log_lines(client, job["id"])
    steps = [line for line in lines if line.startswith("step ")]
    assert steps == ["step 1", "step 2", "step 3", "step 4", "step 5"]
    assert "token=***" in lines  # CloudWatch output passes the agent's redactor
    assert not any(CANARY in line for line in lines)
    shown = await anyio.run_process(
        [LAUNCHPLANE, "logs", job["id"], "--server", server.url, "--token", server.admin_token],
        env=subprocess_env(),
    )
    assert "step 5" in shown.stdout.decode().splitlines()

    # One CreateTrainingJob (the successor re-adopted the job), with the right request.
    [request] = proxy.calls("CreateTrainingJob")
    record = await client.get_record(job["id"])
    image = record["image"]
    assert image["digest"].startswith("sha256:")  # built now, or found in the registry
    assert image["pinned"] == f"{image['ref'].rsplit(':', 1)[0]}@{image['digest']}"
    spec = request["AlgorithmSpecification"]
    assert spec["TrainingImage"] == image["pinned"]
    assert (spec["ContainerEntrypoint"], spec["ContainerArguments"]) == (
        ["python", "train.py"],
        ["--epochs", "2"],
    )
    assert request["TrainingJobName"] == name
    assert request["HyperParameters"] == {"lr": "0.01"}
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.m5.xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 5,
    }
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 600}
    environment = request["Environment"]
    assert environment["GREETING"] == "hello from the queue"
    assert environment["API_TOKEN"] == CANARY  # the opt-in's trade-off, documented
    assert environment["LAUNCHPLANE_RUN_ID"] == run_id
    assert environment["LAUNCHPLANE_OUTPUT_DIR"] == "/opt/ml/model"
    assert json.loads(environment["LAUNCHPLANE_HYPERPARAMETERS"]) == {"lr": 0.01}
    assert {"Key": "launchplane.run_id", "Value": run_id} in request["Tags"]

    # The record says where the job is; moto has it as created.
    import boto3

    described = boto3.client("sagemaker").describe_training_job(TrainingJobName=name)
    assert CANARY not in json.dumps(record)
    assert record["workload"] == {
        "id": name,
        "training_job_name": name,
        "training_job_arn": described["TrainingJobArn"],
        "region": "us-east-1",
    }
    assert described["AlgorithmSpecification"]["TrainingImage"] == image["pinned"]
    tags = boto3.client("sagemaker").list_tags(ResourceArn=described["TrainingJobArn"])["Tags"]
    assert {"Key": "launchplane.job_id", "Value": job["id"]} in tags


async def test_a_role_name_becomes_the_arn_of_the_agents_account(
    aws_env: dict[str, str], tmp_path: Path
) -> None:
    """W&B takes ``RoleArn: SageMakerRole``: the account comes from STS (moto's), at submit."""
    import boto3

    from launchplane.core.interfaces import Image, JobContext
    from launchplane.core.spec import ResolvedJob
    from launchplane.plugins.runners.sagemaker import SageMakerRunner

    args = {
        "RoleArn": "SageMakerRole",
        "OutputDataConfig": {"S3OutputPath": "s3://lptest-sagemaker/out"},
        "InstanceType": "ml.m5.xlarge",
        "VolumeSizeInGB": 5,
    }
    job = ResolvedJob.model_validate(
        {"resource": "sagemaker", "command": ["true"], "resource_args": {"sagemaker": args}}
    )
    run_id = f"role-{time.time_ns()}-1"
    ctx = JobContext(job_id=run_id[:-2], run_id=run_id, attempt=1, queue="q", workdir=tmp_path)
    runner = SageMakerRunner()
    try:
        run = await runner.submit(job, Image("img:1"), ctx)
    finally:
        await runner.aclose()
    described = boto3.client("sagemaker").describe_training_job(TrainingJobName=run.id)
    assert described["RoleArn"] == "arn:aws:iam::123456789012:role/SageMakerRole"

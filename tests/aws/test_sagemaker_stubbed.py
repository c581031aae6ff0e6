"""SageMaker state transitions moto cannot produce, driven by botocore's Stubber.

moto completes every training job the moment it is created and has no
StopTrainingJob, so the paths below are **simulated**: the SageMaker client is
a real boto3 client whose responses come from ``botocore.stub.Stubber`` (which
checks each request and response against botocore's model of the API). The
CloudWatch Logs client is real too, talking to moto's server over HTTP.
The retry test runs a real queue server and an in-process agent; only the
SageMaker answers are scripted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from kit import running_agent, wait_for_state

from launchplane.core.aws import AwsOptions
from launchplane.core.client import LaunchplaneClient
from launchplane.core.interfaces import RunState
from launchplane.plugins.runners.sagemaker import JobPlace, SageMakerRun, SageMakerRunner, _Clients
from launchplane.server.embedded import EmbeddedServer

pytestmark = [pytest.mark.aws, pytest.mark.anyio]

NAME = "lp-stub-1"
ARN = f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{NAME}"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def described(status: str, secondary: str, name: str = NAME, **extra: Any) -> dict[str, Any]:
    """A DescribeTrainingJob response with the fields botocore's model requires."""
    return {
        "TrainingJobName": name,
        "TrainingJobArn": ARN.replace(NAME, name),
        "ModelArtifacts": {"S3ModelArtifacts": "s3://bucket/out/model.tar.gz"},
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "img"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "CreationTime": NOW,
        "SecondaryStatusTransitions": [
            {"Status": secondary, "StartTime": NOW, "StatusMessage": f"now {secondary}"}
        ],
        **extra,
    }


@pytest.fixture
def stubbed(aws_env: dict[str, str]) -> Iterator[tuple[_Clients, Any]]:
    """Real clients (CloudWatch Logs on moto); the SageMaker one answered by a Stubber."""
    from botocore.stub import Stubber

    clients = _Clients(AwsOptions())
    with Stubber(clients.sagemaker) as stub:
        yield clients, stub
        stub.assert_no_pending_responses()


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, line: str) -> None:
        self.lines.append(line)


async def watch(run: SageMakerRun) -> tuple[Any, list[str]]:
    """``wait()`` with ``logs()`` drained beside it, as the agent does."""
    output: list[str] = []

    async def pump() -> None:
        async for line in run.logs():
            output.append(line)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            result = await run.wait()
    return result, output


def make_run(clients: _Clients, emit: Lines | None = None, **place: Any) -> SageMakerRun:
    where = JobPlace(name=NAME, poll_interval=0.01, max_poll_interval=0.05, **place)
    return SageMakerRun(clients, where, arn=ARN, emit=emit)


async def test_in_progress_then_failed_reports_the_failure_reason_and_each_transition(
    stubbed: tuple[_Clients, Any],
) -> None:
    clients, stub = stubbed
    reason = "AlgorithmError: ExecuteUserScriptError: Command 'python train.py' exit code: 2"
    for status, secondary in [("InProgress", "Starting"), ("InProgress", "Starting")]:
        stub.add_response(
            "describe_training_job", described(status, secondary), {"TrainingJobName": NAME}
        )
    stub.add_response("describe_training_job", described("InProgress", "Training"))
    stub.add_response("describe_training_job", described("Failed", "Failed", FailureReason=reason))
    emitted = Lines()
    result, _ = await watch(make_run(clients, emitted))
    assert result.state is RunState.FAILED
    assert result.exit_code == 2
    assert result.reason == f"training job failed: {reason}"
    assert not result.infrastructure_failure
    assert emitted.lines == [
        f"training job {NAME}: InProgress / Starting: now Starting",
        f"training job {NAME}: InProgress / Training: now Training",
        f"training job {NAME}: Failed / Failed: now Failed",
    ]


async def test_a_capacity_failure_is_an_infrastructure_failure(
    stubbed: tuple[_Clients, Any],
) -> None:
    clients, stub = stubbed
    reason = "CapacityError: Unable to provision requested ML compute capacity."
    stub.add_response("describe_training_job", described("Failed", "Failed", FailureReason=reason))
    result, _ = await watch(make_run(clients))
    assert (result.state, result.infrastructure_failure) == (RunState.FAILED, True)
    assert reason in result.reason


async def test_a_spot_interruption_is_an_infrastructure_failure(
    stubbed: tuple[_Clients, Any],
) -> None:
    clients, stub = stubbed
    stub.add_response("describe_training_job", described("Stopped", "Interrupted"))
    result, _ = await watch(make_run(clients))
    assert (result.state, result.infrastructure_failure) == (RunState.FAILED, True)
    assert "spot instance was interrupted" in result.reason


async def test_max_runtime_reached_is_reported_as_such(stubbed: tuple[_Clients, Any]) -> None:
    clients, stub = stubbed
    stub.add_response("describe_training_job", described("InProgress", "Training"))
    stub.add_response("describe_training_job", described("Stopped", "MaxRuntimeExceeded"))
    result, _ = await watch(make_run(clients, max_runtime=600))
    assert result.state is RunState.FAILED
    assert result.reason.startswith("MaxRuntimeInSeconds (600 s) reached")
    assert not result.infrastructure_failure


async def test_cancel_stops_the_training_job_and_the_run_ends_cancelled(
    stubbed: tuple[_Clients, Any],
) -> None:
    clients, stub = stubbed
    stub.add_response("describe_training_job", described("InProgress", "Training"))
    stub.add_response("stop_training_job", {}, {"TrainingJobName": NAME})
    stub.add_response("describe_training_job", described("Stopping", "Stopping"))
    stub.add_response("describe_training_job", described("Stopped", "Stopped"))
    run = make_run(clients)
    assert await run.status() is RunState.RUNNING
    await run.cancel(grace=5)
    result, _ = await watch(run)
    assert result.state is RunState.CANCELLED
    await run.cancel(grace=5)  # after the end: nothing is called (the Stubber would refuse it)


async def test_cancel_of_a_job_that_already_ended_does_not_raise(
    stubbed: tuple[_Clients, Any],
) -> None:
    clients, stub = stubbed
    stub.add_client_error(
        "stop_training_job",
        service_error_code="ValidationException",
        service_message=f"The job status is Completed; cannot stop {NAME}",
    )
    stub.add_response("describe_training_job", described("Completed", "Completed"))
    run = make_run(clients)
    await run.cancel()
    result, _ = await watch(run)
    assert result.state is RunState.SUCCEEDED  # it ended on its own first


QUEUE = "sm-retry"
QUEUE_CONFIG = {
    "resource": "sagemaker",
    "docker": {"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1"},
    "retry": {"max_attempts": 3},
    "resource_args": {
        "sagemaker": {
            "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
            "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
            "InstanceType": "ml.p4d.24xlarge",
            "poll_interval": 0.01,
            "max_poll_interval": 0.05,
        }
    },
}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        await srv.ensure_queue(QUEUE, QUEUE_CONFIG)
        yield srv


async def test_capacity_errors_are_retried_by_the_queue_policy(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    stubbed: tuple[_Clients, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Attempt 1 fails for capacity while running, attempt 2 at CreateTrainingJob, 3 succeeds."""
    clients, stub = stubbed
    monkeypatch.setattr(SageMakerRunner, "connect", lambda self, options: clients)
    job = await client.submit_job(QUEUE, {"entry_point": "train.py"})
    names = [f"lp-{job['id']}-{attempt}" for attempt in (1, 2, 3)]
    no_capacity = "CapacityError: Unable to provision requested ML compute capacity."
    stub.add_response("create_training_job", {"TrainingJobArn": ARN})
    stub.add_response(
        "describe_training_job", described("Failed", "Failed", names[0], FailureReason=no_capacity)
    )
    stub.add_client_error(
        "create_training_job",
        service_error_code="ResourceLimitExceeded",
        service_message="The account-level service limit 'ml.p4d.24xlarge for training job "
        "usage' is 0 Instances",
    )
    stub.add_response("create_training_job", {"TrainingJobArn": ARN})
    stub.add_response("describe_training_job", described("Completed", "Completed", names[2]))
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        done = await wait_for_state(client, job["id"], timeout=30)
    assert (done["state"], done["attempt"]) == ("succeeded", 3)
    failures = [e for e in done["events"] if e["state"] == "failed"]
    assert [e["attempt"] for e in failures] == [1, 2]
    assert all((e["details"] or {}).get("infrastructure_failure") for e in failures)
    assert no_capacity in failures[0]["reason"]
    assert "ResourceLimitExceeded" in failures[1]["reason"]


async def test_a_users_error_that_mentions_capacity_is_not_infrastructure(
    stubbed: tuple[_Clients, Any],
) -> None:
    clients, stub = stubbed
    reason = "AlgorithmError: OSError: not enough disk capacity, exit code: 1"
    stub.add_response("describe_training_job", described("Failed", "Failed", FailureReason=reason))
    result, _ = await watch(make_run(clients))
    assert (result.infrastructure_failure, result.exit_code) == (False, 1)


async def test_a_failed_stop_is_said_not_raised_and_the_job_is_still_watched(
    stubbed: tuple[_Clients, Any],
) -> None:
    clients, stub = stubbed
    stub.add_client_error(
        "stop_training_job", service_error_code="AccessDeniedException", service_message="no"
    )
    stub.add_response("describe_training_job", described("Completed", "Completed"))
    emitted = Lines()
    run = make_run(clients, emitted)
    await run.cancel()
    result, _ = await watch(run)
    assert result.state is RunState.SUCCEEDED
    assert emitted.lines[0] == (
        f"StopTrainingJob {NAME} failed (AccessDeniedException: no); it may still run"
    )


async def test_a_refused_create_fails_the_job_and_is_not_retried(
    stubbed: tuple[_Clients, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from launchplane.core.interfaces import Image, InfrastructureError, JobContext, PluginError
    from launchplane.core.spec import ResolvedJob

    clients, stub = stubbed
    monkeypatch.setattr(SageMakerRunner, "connect", lambda self, options: clients)
    stub.add_client_error(
        "create_training_job",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform: iam:PassRole",
    )
    job = ResolvedJob.model_validate(
        {
            "resource": "sagemaker",
            "entry_point": "x.py",
            "resource_args": QUEUE_CONFIG["resource_args"],
        }
    )
    ctx = JobContext(job_id="j", run_id="j-1", attempt=1, queue="q", workdir=tmp_path)
    with pytest.raises(PluginError) as caught:
        await SageMakerRunner().submit(job, Image("img:1"), ctx)
    assert not isinstance(caught.value, InfrastructureError)
    assert str(caught.value) == (
        "CreateTrainingJob lp-j-1: AccessDeniedException: not authorized to perform: iam:PassRole"
    )

"""resource_args.sagemaker -> the CreateTrainingJob request, checked against botocore's own model.

The seed document's SageMaker examples and its templated queue are planned
with ``launchplane plan`` (the same code path as a launch, stopped before
submit) and the request shown is validated again with botocore's own
parameter validator, the one boto3 runs before sending a call. A wrong type or
an unknown field is refused with its path when the job is submitted to a real
queue server; a template bound is enforced before that. No AWS call is made.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kit import plan, planned

from launchplane.core.client import LaunchplaneClient, ValidationFailed
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.runners import sagemaker_request as rq
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.aws

TESTS = Path(__file__).parents[1]
REFERENCE = TESTS / "fixtures" / "reference"
EXAMPLES, COMPANIONS = REFERENCE / "examples", REFERENCE / "companions"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
QUEUE = {
    "resource": "sagemaker",
    "docker": {"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1"},
    "resource_args": {
        "sagemaker": {"RoleArn": ROLE, "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"}}
    },
}


def botocore_accepts(request: dict[str, Any]) -> None:
    """botocore's own ParamValidator (what boto3 runs before a call) finds nothing wrong."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("sagemaker")
    report = ParamValidator().validate(
        request, model.operation_model("CreateTrainingJob").input_shape
    )
    assert not report.has_errors(), report.generate_report()


def queue_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sagemaker-queue.yaml"
    path.write_text(text)
    return path


def write_queue(tmp_path: Path) -> Path:
    import json

    return queue_file(tmp_path, json.dumps(QUEUE))


def test_anatomy_short_keys_plan_to_a_request_botocore_accepts(tmp_path: Path) -> None:
    shown = planned(EXAMPLES / "01-anatomy.yaml", "--queue-config", write_queue(tmp_path))
    request = shown["would_submit"]["CreateTrainingJob"]
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.p3.8xlarge",
        "VolumeSizeInGB": 100,
        "InstanceCount": 1,
    }
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    # command wins over entry_point, as for every runner
    assert request["AlgorithmSpecification"]["ContainerEntrypoint"] == [
        "python",
        "train.py",
        "--epochs",
        "100",
    ]
    assert set(request["Environment"]) >= {"WANDB_PROJECT", "NCCL_DEBUG"}
    assert request["TrainingJobName"] == "lp-<job_id>-<attempt>"
    assert "missing" not in shown["would_submit"]
    botocore_accepts({**request, "TrainingJobName": "lp-abc-1"})


def test_compute_resources_wandb_form_plans_and_flags_the_seeds_role_arn(tmp_path: Path) -> None:
    shown = planned(EXAMPLES / "02-compute-resources.yaml", "--queue-config", write_queue(tmp_path))
    request = shown["would_submit"]["CreateTrainingJob"]
    assert request["ResourceConfig"]["VolumeSizeInGB"] == 500
    assert request["StoppingCondition"]["MaxRuntimeInSeconds"] == 259200
    # The seed's RoleArn has a 9-digit account: botocore does not check patterns, AWS does.
    assert request["RoleArn"] == "arn:aws:iam::123456789:role/SageMakerRole"
    [warning] = shown["would_submit"]["warnings"]
    assert warning.startswith("resource_args.sagemaker.RoleArn: ")
    botocore_accepts({**request, "TrainingJobName": "lp-abc-1"})


def test_templated_queue_plans_with_defaults_and_chosen_values(tmp_path: Path) -> None:
    base = COMPANIONS / "queue-sagemaker-templates.yaml"
    queue = queue_file(
        tmp_path,
        f"base_config: {base}\n"
        "resource_args:\n  sagemaker:\n    OutputDataConfig: {S3OutputPath: s3://b/out}\n"
        "docker: {image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1}\n",
    )
    job = COMPANIONS / "job-train.yaml"
    request = planned(job, "--queue-config", queue)["would_submit"]["CreateTrainingJob"]
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.p3.2xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 100,
    }
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}  # an int, not 86400.0
    botocore_accepts({**request, "TrainingJobName": "lp-abc-1"})
    chosen = planned(job, "--queue-config", queue, "--var", "volume_size=200")
    assert chosen["would_submit"]["CreateTrainingJob"]["ResourceConfig"]["VolumeSizeInGB"] == 200
    refused = plan(job, "--queue-config", queue, "--var", "volume_size=1000")
    assert refused.exit_code == 2
    assert "volume_size: 1000 is above the maximum 500" in refused.stderr
    assert "would_submit" not in refused.stdout


def test_the_seed_queue_alone_plans_and_says_what_is_missing() -> None:
    shown = planned(
        COMPANIONS / "job-train.yaml",
        "--queue-config",
        COMPANIONS / "queue-sagemaker-templates.yaml",
    )
    missing = shown["would_submit"]["missing"]
    assert "resource_args.sagemaker.OutputDataConfig: is required by SageMaker" in missing
    assert any(line.startswith("docker.image: the job has no image") for line in missing)


def test_wrong_types_and_unknown_fields_are_refused_in_plan_with_their_paths(
    tmp_path: Path,
) -> None:
    result = plan(
        COMPANIONS / "job-train.yaml",
        "--queue-config",
        write_queue(tmp_path),
        "--set",
        "resource_args.sagemaker.ResourceConfig.InstanceCount=two",
        "--set",
        "resource_args.sagemaker.StopingCondition.MaxRuntimeInSeconds=60",
    )
    assert result.exit_code == 2
    assert (
        "resource_args.sagemaker.ResourceConfig.InstanceCount: must be an integer, "
        "got a string 'two'"
    ) in result.stderr
    assert (
        "resource_args.sagemaker.StopingCondition: is not a field of CreateTrainingJobRequest "
        "(did you mean 'StoppingCondition'?)"
    ) in result.stderr


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        await srv.ensure_queue("sm", QUEUE)
        yield srv


@pytest.mark.anyio
async def test_a_submit_with_a_wrong_type_or_unknown_field_is_refused_with_its_path(
    submitter: LaunchplaneClient,
) -> None:
    bad = {
        "entry_point": "train.py",
        "resource_args": {
            "sagemaker": {
                "VolumeSizeInGB": "lots",
                "ResourceConfig": {"InstanceTyp": "ml.m5.xlarge"},
                "EnableManagedSpotTraining": "yes",
            }
        },
    }
    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job("sm", bad)
    problems = {error["path"]: error["message"] for error in caught.value.errors}
    assert problems["resource_args.sagemaker.ResourceConfig.InstanceTyp"].startswith(
        "is not a field of ResourceConfig (did you mean 'InstanceType'?)"
    )
    assert "must be true or false" in problems["resource_args.sagemaker.EnableManagedSpotTraining"]
    assert "must be an integer" in problems["resource_args.sagemaker.VolumeSizeInGB"]  # as written


@pytest.mark.anyio
async def test_a_submitter_may_not_opt_into_secrets_or_pick_the_endpoint(
    submitter: LaunchplaneClient,
) -> None:
    job = {
        "entry_point": "train.py",
        "resource_args": {
            "sagemaker": {"secrets_in_environment": True, "endpoint_url": "http://evil.example"}
        },
    }
    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job("sm", job)
    assert {error["path"] for error in caught.value.errors} == {
        "resource_args.sagemaker.secrets_in_environment",
        "resource_args.sagemaker.endpoint_url",
    }


def test_a_short_key_may_not_dodge_its_long_form() -> None:
    with pytest.raises(Exception, match="VolumeSizeInGB 1000 differs from ResourceConfig"):
        rq.SageMakerArgs.model_validate(
            {"VolumeSizeInGB": 1000, "ResourceConfig": {"VolumeSizeInGB": 100}}
        )
    same = rq.SageMakerArgs.model_validate(
        {"VolumeSizeInGB": 100, "resource_config": {"VolumeSizeInGB": 100}}
    )
    assert same.request() == {"ResourceConfig": {"VolumeSizeInGB": 100}}


def test_training_job_names_are_deterministic_and_within_sagemakers_pattern() -> None:
    for run_id in ["0192ab-1", "job_with.odd/chars-12", "x" * 200 + "-3", "-1"]:
        name = rq.training_job_name(run_id)
        assert name == rq.training_job_name(run_id)
        assert len(name) <= 63 and rq.TRAINING_JOB_NAME_RE.fullmatch(name), name
    assert rq.training_job_name("x" * 200 + "-3") != rq.training_job_name("x" * 200 + "-4")
    assert rq.training_job_name("01HXYZ-2") == "lp-01HXYZ-2"


def test_the_final_request_has_image_command_hyperparameters_env_channels_and_tags() -> None:
    job = ResolvedJob.model_validate(
        {
            "resource": "sagemaker",
            "entry_point": "train.py",
            "args": ["--epochs", "3"],
            "hyperparameters": {"lr": 0.001, "layers": [64, 64], "name": "tiny"},
            "input_artifacts": [
                "s3://data/sets/imagenet/",
                {"name": "s3://data/tok", "slot": "tokenizer"},
                "dataset:latest",
            ],
            "resource_args": {"sagemaker": {**QUEUE["resource_args"]["sagemaker"]}},
        }
    )
    args = rq.SageMakerArgs.model_validate(job.resource_args["sagemaker"])
    env = rq.launch_environment({"A": "1", "LAUNCHPLANE_HYPERPARAMETERS": "x" * 600})
    request = rq.build_request(
        job,
        args,
        image="1.dkr.ecr.us-east-1.amazonaws.com/t@sha256:" + "a" * 64,
        name="lp-j-1",
        labels={"launchplane.run_id": "j-1", "team": "a<b>"},
        env=env,
    )
    spec = request["AlgorithmSpecification"]
    assert spec["TrainingImage"].endswith("@sha256:" + "a" * 64)
    assert (spec["ContainerEntrypoint"], spec["ContainerArguments"]) == (
        ["python", "train.py"],
        ["--epochs", "3"],
    )
    assert request["HyperParameters"] == {"lr": "0.001", "layers": "[64, 64]", "name": "tiny"}
    assert request["Environment"] == {"A": "1", "LAUNCHPLANE_OUTPUT_DIR": "/opt/ml/model"}
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["imagenet", "tokenizer"]
    assert {"Key": "team", "Value": "a_b_"} in request["Tags"]
    assert rq.check_request(request, complete=True) == []
    botocore_accepts(request)


def test_secret_references_pass_aws_sm_as_ids_and_name_the_rest() -> None:
    job = ResolvedJob.model_validate(
        {
            "resource": "sagemaker",
            "secrets": {"DB": "aws-sm:prod/db#password", "HF": "env:HF_TOKEN"},
        }
    )
    env, valued = rq.secret_references(job, {})
    assert env == {"DB_SECRET_ID": "prod/db", "DB_SECRET_KEY": "password"}
    assert valued == ["HF"]
    arn = "arn:aws:secretsmanager:us-east-1:1:secret:prod/db"
    env, _ = rq.secret_references(job, {"DB": {"SecretId": arn}})
    assert env == {"DB_SECRET_ID": arn}
    # The aws-sm provider's native reference for this runner (branch h5's shape).
    native = {"SecretId": "prod/db", "JsonKey": "password", "VersionStage": "AWSPREVIOUS"}
    env, _ = rq.secret_references(job, {"DB": native})
    assert env == {
        "DB_SECRET_ID": "prod/db",
        "DB_SECRET_KEY": "password",
        "DB_SECRET_VERSION_STAGE": "AWSPREVIOUS",
    }


def test_a_training_job_name_of_the_config_is_replaced_with_a_note(tmp_path: Path) -> None:
    shown = planned(
        COMPANIONS / "job-train.yaml",
        "--queue-config",
        write_queue(tmp_path),
        "--set",
        "resource_args.sagemaker.TrainingJobName=my-run",
    )["would_submit"]
    assert shown["CreateTrainingJob"]["TrainingJobName"] == "lp-<job_id>-<attempt>"
    [note] = shown["notes"]
    assert note.startswith("TrainingJobName 'my-run' of resource_args.sagemaker is replaced")


def test_the_queue_of_docs_sagemaker_plans(tmp_path: Path) -> None:
    import re

    text = (TESTS.parent / "docs" / "sagemaker.md").read_text()
    queue = queue_file(tmp_path, re.findall(r"```yaml\n(.*?)```", text, re.S)[0])
    shown = planned(COMPANIONS / "job-train.yaml", "--queue-config", queue)["would_submit"]
    assert shown["secrets"] == {"DB_PASSWORD": "aws-sm:prod/db#password (reference)"}
    assert "missing" not in shown and "warnings" not in shown
    botocore_accepts({**shown["CreateTrainingJob"], "TrainingJobName": "lp-abc-1"})


def test_a_role_name_plans_as_the_arn_it_becomes(tmp_path: Path) -> None:
    queue = {**QUEUE, "resource_args": {"sagemaker": {**QUEUE["resource_args"]["sagemaker"]}}}
    queue["resource_args"]["sagemaker"].update(RoleArn="SageMakerRole", region="cn-north-1")
    import json

    shown = planned(
        COMPANIONS / "job-train.yaml", "--queue-config", queue_file(tmp_path, json.dumps(queue))
    )["would_submit"]
    assert shown["CreateTrainingJob"]["RoleArn"] == (
        "arn:aws-cn:iam::<account of the agent's credentials>:role/SageMakerRole"
    )
    assert "warnings" not in shown


def test_long_wandb_file_overrides_are_split_as_wandb_splits_them_and_read_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = pytest.importorskip("wandb.sdk.launch.inputs.files")
    overrides = {"config.yaml": {"layers": list(range(200)), "name": "résumé"}}
    text = json.dumps(overrides)
    env = rq.launch_environment({"A": "1", "WANDB_LAUNCH_FILE_OVERRIDES": text})

    chunks = sorted(name for name in env if name.startswith("WANDB_LAUNCH_FILE_OVERRIDES_"))
    assert "WANDB_LAUNCH_FILE_OVERRIDES" not in env and len(chunks) > 1
    assert all(len(env[name]) <= rq.ENV_VALUE_MAX for name in chunks)
    for name in chunks:
        monkeypatch.setenv(name, env[name])
    monkeypatch.delenv("WANDB_LAUNCH_FILE_OVERRIDES", raising=False)
    monkeypatch.setattr(files.FileOverrides, "_instance", None)
    assert files.FileOverrides().overrides == overrides
    short = rq.launch_environment({"WANDB_LAUNCH_FILE_OVERRIDES": "{}"})
    assert short["WANDB_LAUNCH_FILE_OVERRIDES"] == "{}"

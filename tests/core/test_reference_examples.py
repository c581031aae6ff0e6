"""Every example of the W&B Launch reference document, as users would feed it to launchplane.

``tests/fixtures/reference/examples/`` holds each code block verbatim (a test
checks them against the copy of the document next to them);
``companions/`` holds the queue configs some examples need and the split
versions of blocks that show two alternatives or two files at once.
docs/configuration.md explains each decision recorded in :data:`EXAMPLES`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit import plan, planned

from launchplane.core.config import load_job_file, load_queue_file
from launchplane.core.config.queue_check import check_queue_config
from launchplane.core.errors import ConfigError
from launchplane.core.spec import TemplateVariable
from launchplane.core.yamlsafe import load_document

REFERENCE = Path(__file__).parents[1] / "fixtures" / "reference"
EXAMPLES_DIR = REFERENCE / "examples"
COMPANIONS = REFERENCE / "companions"

JOB, QUEUE, FRAGMENT, NOT_CONFIG = "job config", "queue config", "fragment", "not a launch config"


@dataclass(frozen=True)
class Example:
    file: str
    kind: str
    valid_as_is: bool = True
    """False: the block cannot be loaded verbatim (two alternatives, two files, shell text)."""


EXAMPLES: dict[int, Example] = {
    1: Example("01-anatomy.yaml", JOB),
    2: Example("02-compute-resources.yaml", JOB),
    3: Example("03-gpu-allocation.yaml", JOB, valid_as_is=False),
    4: Example("04-entry-point.yaml", JOB),
    5: Example("05-multi-stage.yaml", JOB, valid_as_is=False),
    6: Example("06-env-inherit.yaml", JOB),
    7: Example("07-secrets-best-practices.yaml", QUEUE, valid_as_is=False),
    8: Example("08-git-job.yaml", JOB),
    9: Example("09-artifact-job.yaml", JOB),
    10: Example("10-prebuilt-image.yaml", JOB, valid_as_is=False),
    11: Example("11-custom-base-image.yaml", JOB, valid_as_is=False),
    12: Example("12-tensorflow-queue.yaml", QUEUE),
    13: Example("13-agent-builder.yaml", QUEUE, valid_as_is=False),
    14: Example("14-custom.dockerfile", NOT_CONFIG, valid_as_is=False),
    15: Example("15-requirements.txt", NOT_CONFIG, valid_as_is=False),
    16: Example("16-conda-environment.yaml", NOT_CONFIG, valid_as_is=False),
    17: Example("17-dataset-artifacts.yaml", JOB),
    18: Example("18-model-artifacts.yaml", JOB),
    19: Example("19-checkpoint-resume.yaml", JOB),
    20: Example("20-queue-secrets.yaml", QUEUE),
    21: Example("21-kubernetes-secrets-queue.yaml", QUEUE),
    22: Example("22-reproducibility-checklist.yaml", JOB),
    23: Example("23-queue-templates.yaml", QUEUE),
    24: Example("24-template-string.yaml", FRAGMENT),
    25: Example("25-template-integer.yaml", FRAGMENT),
    26: Example("26-template-float.yaml", FRAGMENT),
    27: Example("27-parameterized.yaml", QUEUE),
    28: Example("28-sweep.yaml", NOT_CONFIG, valid_as_is=False),
    29: Example("29-inheritance-hierarchy.yaml", JOB, valid_as_is=False),
    31: Example("31-config-versioning.yaml", JOB, valid_as_is=False),
    33: Example("team-configs/llm-base.yaml", JOB),
    34: Example("34-my-experiment.yaml", JOB),
    35: Example("35-arr-coc-training.yaml", JOB),
}
NOT_EXAMPLES = {30: "python", 32: "bash"}
"""The Python API call (tested as dict layers in test_config_guardrails) and a directory tree."""


def refused(*args: str | Path) -> str:
    result = plan(*args)
    assert result.exit_code == 2, result.stdout
    return result.stderr


def example(number: int) -> Path:
    return EXAMPLES_DIR / EXAMPLES[number].file


def companion(name: str) -> Path:
    return COMPANIONS / name


K8S, LOCAL = companion("queue-kubernetes.yaml"), companion("queue-local.yaml")


# --- the fixtures are the document's blocks -------------------------------------------


def test_every_code_block_of_the_reference_is_a_fixture() -> None:
    text = (REFERENCE / "wandb-launch-job-configuration.md").read_text()
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
    assert len(blocks) == len(EXAMPLES) + len(NOT_EXAMPLES)
    for number, (language, body) in enumerate(blocks, 1):
        if number in NOT_EXAMPLES:
            assert language == NOT_EXAMPLES[number]
            continue
        assert example(number).read_text() == body, f"block {number} differs from its fixture"


def test_every_valid_example_loads() -> None:
    for number, entry in EXAMPLES.items():
        if entry.valid_as_is and entry.kind != NOT_CONFIG:
            assert isinstance(load_job_file(example(number)), dict)


# --- job configs that plan as they are ------------------------------------------------

PLANS: list[tuple[int, Path]] = [
    (1, K8S),
    (1, LOCAL),
    (2, K8S),
    (4, LOCAL),
    (8, K8S),
    (9, K8S),
    (17, K8S),
    (18, K8S),
    (19, LOCAL),
    (33, K8S),
    (34, K8S),
    (35, K8S),
    (35, LOCAL),
]


@pytest.mark.parametrize(("number", "queue"), PLANS, ids=[f"{n}-{q.stem}" for n, q in PLANS])
def test_job_example_plans(number: int, queue: Path) -> None:
    document = planned(example(number), "--queue-config", queue)
    assert document["resolved"]["resource"] in ("kubernetes", "local-process")
    if queue == LOCAL:
        assert document["would_submit"]["argv"]


def test_anatomy() -> None:
    resolved = planned(example(1), "--queue-config", K8S)["resolved"]
    assert resolved["queue"] == "<queue-name>"
    assert resolved["git"] == {
        "repository": "https://github.com/user/repo",
        "branch": "main",
        "commit": "abc123",
    }
    assert resolved["resource_args"]["kubernetes"]["requests"]["nvidia.com/gpu"] == "2"
    assert resolved["input_artifacts"] == [
        {"name": "dataset", "alias": "latest"},
        {"name": "pretrained-model", "alias": "v1.2"},
    ]
    assert resolved["env"]["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_wandb_job_mapping_moves_to_top_level() -> None:
    git = planned(example(8), "--queue-config", K8S)["resolved"]["git"]
    assert git == {
        "repository": "https://github.com/myorg/llm-training",
        "branch": "main",
        "commit": "a1b2c3d4",
    }
    artifact = planned(example(9), "--queue-config", K8S)["resolved"]["artifact"]
    assert artifact == "wandb-artifact://entity/project/code:v1.2.3"


def test_arr_coc_keeps_macros_for_launch() -> None:
    document = planned(example(35), "--queue-config", LOCAL)
    resolved = document["resolved"]
    assert resolved["env"]["WANDB_RUN_NAME"] == "arr-coc-8gpu-${run_id}"
    assert resolved["output_artifacts"] == [
        {"name": "arr-coc-checkpoint-${run_id}", "type": "model", "path": "/workspace/checkpoints"}
    ]
    assert resolved["hyperparameters"]["learning_rate"] == 3e-4
    assert document["would_submit"]["argv"][:2] == ["torchrun", "--nproc_per_node=8"]


def test_arr_coc_as_a_real_process() -> None:
    script = Path(sys.executable).with_name("launchplane")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "launchplane.cli"]
    done = subprocess.run(
        [*command, "plan", str(example(35)), "--queue-config", str(LOCAL), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["resolved"]["project"] == "arr-coc-vlm"


def test_team_config_inheritance() -> None:
    resolved = planned(example(34), "--queue-config", K8S)["resolved"]
    assert resolved["entity"] == "research-team"
    assert resolved["project"] == "llm-experiments-researcher-a"
    assert resolved["resource_args"]["kubernetes"]["requests"] == {
        "memory": "128Gi",
        "cpu": "32",
        "nvidia.com/gpu": "4",
    }
    assert resolved["resource_args"]["kubernetes"]["tolerations"] == [
        {"key": "gpu-workload", "operator": "Exists"}
    ]
    assert resolved["env"]["NCCL_DEBUG"] == "INFO"
    assert resolved["hyperparameters"]["num_layers"] == 24


# --- examples that need a companion ---------------------------------------------------


def test_null_env_needs_the_queue_to_pass_it_through() -> None:
    names = ["CUDA_HOME", "WANDB_API_KEY", "HF_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    stderr = refused(example(6), "--queue-config", K8S)
    assert "5 problems:" in stderr
    for name in names:
        assert f"env.{name}: null (inherit from the agent) is allowed only for names" in stderr
    resolved = planned(example(6), "--queue-config", companion("queue-passthrough.yaml"))[
        "resolved"
    ]
    assert resolved["env"]["WANDB_PROJECT"] == "vlm-training"
    assert all(resolved["env"][name] is None for name in names)
    assert resolved["passthrough_env"] == names


def test_reproducibility_checklist_needs_the_repository_from_the_queue() -> None:
    assert "git.repository: Field required" in refused(example(22), "--queue-config", K8S)
    resolved = planned(example(22), "--queue-config", companion("queue-git.yaml"))["resolved"]
    assert resolved["git"] == {
        "repository": "https://github.com/myorg/llm-training",
        "commit": "abc123def456",
    }
    assert resolved["builder"]["accelerator"]["base_image"] == (
        "pytorch/pytorch:2.1.0-cuda12.1-cudnn8-runtime"
    )
    assert resolved["input_artifacts"] == [{"name": "dataset", "alias": "v2023.12.01"}]


def test_sagemaker_templates_with_their_declarations() -> None:
    queue = companion("queue-sagemaker-templates.yaml")
    _, warnings = check_queue_config(load_queue_file(queue))
    assert warnings == []
    job = companion("job-train.yaml")
    resolved = planned(job, "--queue-config", queue)["resolved"]
    sagemaker = resolved["resource_args"]["sagemaker"]
    assert sagemaker["ResourceConfig"] == {
        "InstanceType": "ml.p3.2xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 100,
    }
    assert sagemaker["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    chosen = planned(
        job,
        "--queue-config",
        queue,
        "--var",
        "volume_size=200",
        "--var",
        "instance_type=ml.p3.8xlarge",
    )["resolved"]["resource_args"]["sagemaker"]["ResourceConfig"]
    assert (chosen["VolumeSizeInGB"], chosen["InstanceType"]) == (200, "ml.p3.8xlarge")
    stderr = refused(
        job,
        "--queue-config",
        queue,
        "--var",
        "volume_size=5000",
        "--set",
        "resource_args.sagemaker.ResourceConfig.VolumeSizeInGB=5000",
    )
    assert "5000 is above the maximum 500 (an integer from 50 to 500)" in stderr
    assert (
        "resource_args.sagemaker.ResourceConfig.VolumeSizeInGB: is set by the queue from "
        "template variable 'volume_size'; pass --var volume_size=... instead"
    ) in stderr


def test_queue_templates_alone_name_each_undeclared_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        check_queue_config(load_queue_file(example(23)))
    assert {error.path for error in caught.value.errors} == {
        "resource_args.sagemaker.ResourceConfig.InstanceType",
        "resource_args.sagemaker.ResourceConfig.VolumeSizeInGB",
        "resource_args.sagemaker.StoppingCondition.MaxRuntimeInSeconds",
    }


@pytest.mark.parametrize("number", [24, 25, 26])
def test_template_field_snippets_are_variable_declarations(number: int) -> None:
    ((name, declaration),) = load_job_file(example(number)).items()
    variable = TemplateVariable.model_validate(declaration)
    assert variable.default is not None
    assert name in ("instance_type", "volume_size", "max_runtime")


def test_parameterized_config_is_a_queue_config() -> None:
    with pytest.raises(ConfigError) as caught:
        check_queue_config(load_queue_file(example(27)))
    assert {error.path for error in caught.value.errors} == {
        "hyperparameters.model_size",
        "hyperparameters.batch_size",
        "hyperparameters.learning_rate",
        "resource_args.kubernetes.requests.memory",
        'resource_args.kubernetes.requests."nvidia.com/gpu"',
    }
    resolved = planned(
        companion("job-parameterized.yaml"),
        "--queue-config",
        companion("queue-parameterized.yaml"),
        "--var",
        "memory=64Gi",
    )["resolved"]
    assert resolved["job"] == "llm-training:v1"
    assert resolved["hyperparameters"] == {
        "model_size": "large",
        "batch_size": 32,
        "learning_rate": 3e-4,
    }
    assert resolved["resource_args"]["kubernetes"]["requests"] == {
        "memory": "64Gi",
        "nvidia.com/gpu": 4,
    }


def test_parameterized_config_as_a_job_keeps_placeholders_as_text() -> None:
    sets = ["--set", "resource_args.kubernetes.requests.memory=16Gi"]
    sets += ["--set", 'resource_args.kubernetes.requests."nvidia.com/gpu"=1']
    result = plan(example(27), "--queue-config", K8S, *sets)
    assert result.exit_code == 0
    assert "hyperparameters.model_size: {{model_size}} stays as text" in result.stderr
    resolved = load_document(result.stdout, source="out")["resolved"]
    assert resolved["hyperparameters"]["batch_size"] == "{{batch_size}}"
    # On a kubernetes queue the text is no quantity: refused, after the same warning.
    stderr = refused(example(27), "--queue-config", K8S)
    assert "resource_args.kubernetes.requests.memory: {{memory}} stays as text" in stderr
    assert (
        "resource_args.kubernetes.requests.memory: Value error, '{{memory}}' is not a "
        "Kubernetes quantity"
    ) in stderr


@pytest.mark.parametrize("number", [12, 20, 21])
def test_queue_examples_are_valid_queue_configs(number: int) -> None:
    _, warnings = check_queue_config(load_queue_file(example(number)))
    assert warnings == []
    planned(companion("job-train.yaml"), "--queue-config", example(number))


def test_tensorflow_queue_builder_moves_out_of_resource_args() -> None:
    resolved = planned(companion("job-train.yaml"), "--queue-config", example(12))["resolved"]
    assert resolved["builder"]["accelerator"]["base_image"] == "tensorflow/tensorflow:latest-gpu"
    assert resolved["resource_args"] == {"docker": {"gpus": "all"}}


def test_queue_secrets_stay_references() -> None:
    resolved = planned(companion("job-train.yaml"), "--queue-config", example(20))["resolved"]
    assert resolved["env"]["WANDB_API_KEY"] == "${SERVICE_ACCOUNT_KEY}"
    assert resolved["env"]["HUGGINGFACE_TOKEN"] == "${HF_TOKEN}"


def test_job_env_with_agent_references_is_refused() -> None:
    # The queue-level secrets example used as a *job* is exactly what a submitter may not do.
    stderr = refused(example(20), "--queue-config", K8S)
    assert "env.WANDB_API_KEY: ${SERVICE_ACCOUNT_KEY} would read the agent's environment" in stderr
    assert "5 problems:" in stderr


# --- blocks that are not loadable as they are -----------------------------------------


@pytest.mark.parametrize(
    ("number", "location", "line"),
    [
        (3, "resource_args.docker.gpus", 6),
        (5, "job", 8),
        (7, "env", 7),
        (10, "job.docker.image", 6),
        (11, "builder.accelerator.base_image", 6),
        (13, "builder.type", 5),
        (31, "job", 12),
    ],
)
def test_alternatives_in_one_block_are_duplicate_keys(
    number: int, location: str, line: int
) -> None:
    stderr = refused(example(number), "--queue-config", K8S)
    assert f"{location} (line {line}): duplicate key" in stderr


SPLITS: list[tuple[str, Path]] = [
    ("03-gpu-allocation-all.yaml", K8S),
    ("03-gpu-allocation-devices.yaml", K8S),
    ("05-stage1-preprocess.yaml", LOCAL),
    ("05-stage2-train.yaml", LOCAL),
    ("07-job-env.yaml", K8S),
    ("10-prebuilt-image-nvcr.yaml", K8S),
    ("10-prebuilt-image-acr.yaml", K8S),
    ("11-custom-base-image-tensorflow.yaml", K8S),
    ("11-custom-base-image-pytorch.yaml", K8S),
    ("29-job-memory.yaml", K8S),
    ("31-base-training.yaml", K8S),
    ("31-base-training-v1.1.yaml", K8S),
    ("job-train.yaml", companion("13-builder-docker.yaml")),
    ("job-train.yaml", companion("13-builder-kaniko.yaml")),
    ("job-train.yaml", companion("13-builder-noop.yaml")),
]


@pytest.mark.parametrize(("job", "queue"), SPLITS, ids=[f"{j}-{q.stem}" for j, q in SPLITS])
def test_split_alternatives_plan(job: str, queue: Path) -> None:
    planned(companion(job), "--queue-config", queue)


def test_split_examples_resolve_as_intended() -> None:
    gpus = planned(companion("03-gpu-allocation-devices.yaml"), "--queue-config", K8S)
    assert gpus["resolved"]["resource_args"]["docker"]["gpus"] == "device=0,1"
    # The queue half names no runner (local-process), which needs something to run.
    env = planned(
        companion("07-job-env.yaml"),
        "--queue-config",
        companion("07-queue-env.yaml"),
        "--set",
        "entry_point=train.py",
    )
    assert env["resolved"]["env"] == {
        "WANDB_API_KEY": "${WANDB_SERVICE_ACCOUNT_KEY}",
        "DATABASE_URL": "${DB_CONNECTION_STRING}",
        "MODEL_NAME": "llama-2-7b",
    }
    image = planned(companion("10-prebuilt-image-nvcr.yaml"), "--queue-config", K8S)
    assert image["resolved"]["docker"] == {"image": "nvcr.io/nvidia/pytorch:23.12-py3"}
    stage = planned(companion("05-stage1-preprocess.yaml"), "--queue-config", LOCAL)
    assert stage["resolved"]["output_artifacts"] == [{"name": "processed-dataset"}]
    builder = load_queue_file(companion("13-builder-kaniko.yaml"))
    assert check_queue_config(builder)[0].builder.type == "kaniko"  # type: ignore[union-attr]


def test_inheritance_hierarchy_block_mixes_yaml_and_shell() -> None:
    stderr = refused(example(29), "--queue-config", K8S)
    assert "line 12: invalid YAML" in stderr
    resolved = planned(
        companion("29-job-memory.yaml"),
        "--queue-config",
        K8S,
        "--override-resource-args",
        '{"kubernetes": {"requests": {"nvidia.com/gpu": "4"}}}',
    )["resolved"]
    assert resolved["resource_args"]["kubernetes"]["requests"] == {
        "memory": "64Gi",
        "nvidia.com/gpu": "4",
    }


def test_versioned_config_written_with_base_config_is_the_same() -> None:
    standalone = planned(companion("31-base-training-v1.1.yaml"), "--queue-config", K8S)
    inheriting = planned(companion("31-base-training-v1.1-inheriting.yaml"), "--queue-config", K8S)
    assert standalone == inheriting


# --- not launch configs ---------------------------------------------------------------


def test_sweep_config_gets_a_clear_error() -> None:
    stderr = refused(example(28), "--queue-config", K8S)
    assert "method: unknown key; this looks like a W&B sweep config" in stderr
    assert "parameters: unknown key (did you mean 'hyperparameters'?)" in stderr
    assert "metric: unknown key" in stderr


def test_conda_environment_gets_a_clear_error() -> None:
    stderr = refused(example(16), "--queue-config", K8S)
    assert "channels: unknown key; this looks like a conda environment file" in stderr


@pytest.mark.parametrize("number", [14, 15])
def test_dockerfile_and_requirements_are_not_yaml(number: int) -> None:
    assert "invalid YAML" in refused(example(number), "--queue-config", K8S)

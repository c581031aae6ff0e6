"""``launchplane plan`` on Kubernetes queues: every manifest it prints is schema-valid.

Runs the real CLI (click's runner, the same code path as a submit's
resolution: load, normalise, guardrails, templates, the runner's
``resource_args`` model, the ``kubernetes`` runner's ``describe``) and checks
each ``would_submit.manifest`` again, here, against the official OpenAPI
schema with ``kubernetes-validate``. No cluster is contacted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kit import plan

from launchplane.cli import cli
from launchplane.core.yamlsafe import load_document
from launchplane.plugins.runners.kubernetes_manifest import validate_manifest

pytestmark = pytest.mark.kubernetes

REFERENCE = Path(__file__).parents[1] / "fixtures" / "reference"
EXAMPLES, COMPANIONS = REFERENCE / "examples", REFERENCE / "companions"
HERE = Path(__file__).parent / "fixtures"
K8S = COMPANIONS / "queue-kubernetes.yaml"


def would_submit(*args: str | Path) -> dict[str, Any]:
    result = plan(*args)
    assert result.exit_code == 0, result.stderr
    document = load_document(result.stdout, source="plan output")
    assert "would_submit" in document, result.stderr
    submitted = document["would_submit"]
    assert validate_manifest(submitted["manifest"]) == []
    return submitted


def refused(*args: str | Path) -> str:
    result = plan(*args)
    assert result.exit_code == 2, result.stdout
    return result.stderr


def pod(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    return pod(manifest)["containers"][0]


def env_of(item: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in item.get("env", [])}


# Every resource_args.kubernetes of the reference document, as a job on a kubernetes queue
# (or with the queue that makes it loadable), with what each must carry into the pod.
REFERENCE_PLANS: list[tuple[str, Path, dict[str, str]]] = [
    ("01-anatomy.yaml", K8S, {"memory": "32Gi", "nvidia.com/gpu": "2"}),
    ("02-compute-resources.yaml", K8S, {"cpu": "4", "nvidia.com/gpu": "1"}),
    ("22-reproducibility-checklist.yaml", COMPANIONS / "queue-git.yaml", {}),
    ("team-configs/llm-base.yaml", K8S, {"memory": "128Gi", "nvidia.com/gpu": "8"}),
    ("34-my-experiment.yaml", K8S, {"cpu": "32", "nvidia.com/gpu": "4"}),
    ("35-arr-coc-training.yaml", K8S, {"memory": "256Gi", "nvidia.com/gpu": "8"}),
    ("../companions/29-job-memory.yaml", K8S, {"memory": "64Gi"}),
    ("../companions/31-base-training.yaml", K8S, {"cpu": "8", "nvidia.com/gpu": "2"}),
    ("../companions/31-base-training-v1.1.yaml", K8S, {"cpu": "16", "nvidia.com/gpu": "4"}),
    ("../companions/31-base-training-v1.1-inheriting.yaml", K8S, {"memory": "64Gi"}),
]


@pytest.mark.parametrize(
    ("example", "queue", "requests"), REFERENCE_PLANS, ids=[p[0] for p in REFERENCE_PLANS]
)
def test_reference_examples_plan_to_schema_valid_jobs(
    example: str, queue: Path, requests: dict[str, str]
) -> None:
    submitted = would_submit(EXAMPLES / example, "--queue-config", queue)
    manifest = submitted["manifest"]
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "Job")
    assert manifest["spec"]["backoffLimit"] == 0
    assert pod(manifest)["restartPolicy"] == "Never"
    resources = container(manifest).get("resources", {})
    for name, quantity in requests.items():
        assert resources["requests"][name] == quantity
    for name in resources.get("requests", {}):
        if name.startswith("nvidia.com/"):  # an extended resource needs its limit
            assert resources["limits"][name] == resources["requests"][name]


def test_reference_scheduling_fields_reach_the_pod() -> None:
    manifest = would_submit(EXAMPLES / "02-compute-resources.yaml", "--queue-config", K8S)[
        "manifest"
    ]
    assert pod(manifest)["nodeSelector"] == {
        "node.kubernetes.io/instance-type": "p3.8xlarge",
        "topology.kubernetes.io/zone": "us-west-2a",
    }
    assert pod(manifest)["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert container(manifest)["resources"]["limits"] == {"memory": "32Gi", "nvidia.com/gpu": "1"}


def test_team_config_inheritance_plans_one_job() -> None:
    manifest = would_submit(EXAMPLES / "34-my-experiment.yaml", "--queue-config", K8S)["manifest"]
    assert container(manifest)["resources"]["requests"] == {
        "memory": "128Gi",
        "cpu": "32",
        "nvidia.com/gpu": "4",
    }
    assert pod(manifest)["tolerations"] == [{"key": "gpu-workload", "operator": "Exists"}]
    assert pod(manifest)["nodeSelector"] == {"node.kubernetes.io/instance-type": "p4d.24xlarge"}
    assert env_of(container(manifest))["NCCL_DEBUG"] == "INFO"


def test_arr_coc_plans_a_schema_valid_job_with_its_command_and_env() -> None:
    result = CliRunner().invoke(
        cli,
        [
            "plan",
            str(EXAMPLES / "35-arr-coc-training.yaml"),
            "--queue-config",
            str(K8S),
            "--json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    submitted = json.loads(result.stdout)["would_submit"]
    manifest = submitted["manifest"]
    assert validate_manifest(manifest) == []
    assert submitted["schema"] == "valid against the Kubernetes 1.30 OpenAPI schema"
    main = container(manifest)
    assert main["command"][:2] == ["torchrun", "--nproc_per_node=8"]
    assert "args" not in main
    env = env_of(main)
    assert env["WANDB_RUN_NAME"] == "arr-coc-8gpu-${run_id}"  # expanded at launch, not in plan
    assert env["PYTHONUNBUFFERED"] == "1"
    assert main["resources"] == {
        "requests": {"memory": "256Gi", "cpu": "64", "nvidia.com/gpu": "8"},
        "limits": {"memory": "512Gi", "nvidia.com/gpu": "8"},
    }
    assert pod(manifest)["nodeSelector"] == {"accelerator": "nvidia-a100-80gb"}
    labels = manifest["metadata"]["labels"]
    assert labels["launchplane.run_id"] == "<job_id>-<attempt>"
    assert manifest["spec"]["template"]["metadata"]["labels"] == labels


def test_kubernetes_secrets_queue_example_mounts_every_key() -> None:
    manifest = would_submit(
        COMPANIONS / "job-train.yaml",
        "--queue-config",
        HERE / "queue-21-on-kubernetes.yaml",
    )["manifest"]
    assert container(manifest)["envFrom"] == [
        {"secretRef": {"name": "wandb-credentials"}},
        {"secretRef": {"name": "cloud-provider-keys"}},
    ]


def test_parameterized_queue_plans_with_the_variable_it_was_given() -> None:
    manifest = would_submit(
        COMPANIONS / "job-parameterized.yaml",
        "--queue-config",
        COMPANIONS / "queue-parameterized.yaml",
        "--var",
        "memory=64Gi",
    )["manifest"]
    # The integer template variable (num_gpus: 4) becomes a quantity string.
    assert container(manifest)["resources"]["requests"] == {"memory": "64Gi", "nvidia.com/gpu": "4"}
    assert container(manifest)["resources"]["limits"] == {"nvidia.com/gpu": "4"}


def test_wandb_form_job_keeps_the_users_fields_and_gets_image_command_env() -> None:
    submitted = would_submit(
        HERE / "job-hello.yaml", "--queue-config", HERE / "queue-wandb-job.yaml"
    )
    manifest = submitted["manifest"]
    # The user's fields stay.
    assert manifest["metadata"]["labels"]["team"] == "vision"
    assert manifest["metadata"]["annotations"] == {"example.com/owner": "vision-team"}
    assert manifest["spec"]["backoffLimit"] == 2
    assert manifest["spec"]["activeDeadlineSeconds"] == 7200
    assert pod(manifest)["restartPolicy"] == "OnFailure"
    assert pod(manifest)["schedulerName"] == "volcano"
    assert pod(manifest)["volumes"] == [{"name": "shm", "emptyDir": {"medium": "Memory"}}]
    assert manifest["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    trainer, sidecar = pod(manifest)["containers"]
    assert trainer["name"] == "trainer"
    assert trainer["workingDir"] == "/workspace"
    assert trainer["volumeMounts"] == [{"name": "shm", "mountPath": "/dev/shm"}]
    assert trainer["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    # The first container gets the job's image, command and env; the sidecar is left alone.
    assert trainer["image"] == "registry.example.com/team/hello:1.0"
    assert trainer["command"] == ["python", "-c", "print('hello')"]
    assert env_of(trainer) == {
        "FROM_MANIFEST": "kept",
        "PYTHONUNBUFFERED": "1",
        "GREETING": "hello",
    }
    assert sidecar == {
        "name": "metrics",
        "image": "prom/statsd-exporter:v0.26.0",
        "args": ["--statsd.listen-udp=:8125"],
    }
    # The name is the run's, whatever the manifest said.
    assert manifest["metadata"]["name"] == submitted["name"] == "lp-<job_id>-<attempt>"
    assert manifest["metadata"]["labels"]["launchplane.job_id"] == "<job_id>"


def test_wandb_form_takes_short_form_keys_from_the_job_on_top() -> None:
    manifest = would_submit(
        HERE / "job-hello.yaml",
        "--queue-config",
        HERE / "queue-wandb-job.yaml",
        "--set",
        'resource_args.kubernetes.requests."nvidia.com/gpu"=2',
    )["manifest"]
    trainer = container(manifest)
    assert trainer["resources"] == {
        "requests": {"nvidia.com/gpu": "2"},
        "limits": {"nvidia.com/gpu": "2"},
    }


def test_pytorchjob_plans_to_a_valid_custom_object() -> None:
    submitted = would_submit(
        HERE / "job-hello.yaml", "--queue-config", HERE / "queue-pytorchjob.yaml"
    )
    assert submitted["api"] == "kubeflow.org/v1 PyTorchJob (custom object, plural pytorchjobs)"
    manifest = submitted["manifest"]
    replicas = manifest["spec"]["pytorchReplicaSpecs"]
    assert manifest["spec"]["runPolicy"] == {"cleanPodPolicy": "None"}
    for role, count in (("Master", 1), ("Worker", 3)):
        assert replicas[role]["replicas"] == count
        assert replicas[role]["restartPolicy"] == "OnFailure"
        main = replicas[role]["template"]["spec"]["containers"][0]
        assert main["name"] == "pytorch"
        assert main["image"] == "registry.example.com/team/hello:1.0"
        assert main["command"] == ["python", "-c", "print('hello')"]
        assert env_of(main)["GREETING"] == "hello"
        labels = replicas[role]["template"]["metadata"]["labels"]
        assert labels["launchplane.run_id"] == "<job_id>-<attempt>"
        assert "restartPolicy" not in replicas[role]["template"]["spec"]  # the replica's decides
    assert replicas["Worker"]["template"]["spec"]["containers"][0]["resources"] == {
        "limits": {"nvidia.com/gpu": 8}
    }


def test_secrets_are_references_in_the_plan() -> None:
    submitted = would_submit(HERE / "job-hello.yaml", "--queue-config", HERE / "queue-secrets.yaml")
    manifest = submitted["manifest"]
    assert manifest["metadata"]["namespace"] == "ml-jobs"
    env = env_of(container(manifest))
    assert env["WANDB_API_KEY"] == {"secretKeyRef": {"name": "wandb-credentials", "key": "api-key"}}
    assert env["HF_TOKEN"] == {
        "secretKeyRef": {"name": "lp-<job_id>-<attempt>-secrets", "key": "HF_TOKEN"}
    }
    assert submitted["run_secret"] == {
        "name": "lp-<job_id>-<attempt>-secrets",
        "keys": ["HF_TOKEN"],
    }
    assert container(manifest)["envFrom"] == [{"secretRef": {"name": "cloud-provider-keys"}}]


# --- refused with the path, before anything runs -----------------------------------------


def test_a_misspelt_short_form_key_is_refused_with_its_path() -> None:
    stderr = refused(
        HERE / "job-hello.yaml",
        "--queue-config",
        K8S,
        "--set",
        "resource_args.kubernetes.node_selecter.gpu=a100",
    )
    assert (
        "resource_args.kubernetes.node_selecter: unknown key (did you mean 'node_selector'?)"
        in stderr
    )


def test_a_bad_quantity_is_refused_with_its_path() -> None:
    stderr = refused(
        HERE / "job-hello.yaml",
        "--queue-config",
        K8S,
        "--set",
        "resource_args.kubernetes.limits.memory=lots",
    )
    assert "resource_args.kubernetes.limits.memory:" in stderr
    assert "'lots' is not a Kubernetes quantity" in stderr


def test_a_misspelt_field_of_a_wandb_manifest_is_refused_with_its_path(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        "docker: {image: busybox}\n"
        "resource_args:\n"
        "  kubernetes:\n"
        "    spec:\n"
        "      template:\n"
        "        spec:\n"
        "          containers:\n"
        "            - name: main\n"
        "              resorces: {limits: {cpu: 1}}\n"
    )
    stderr = refused(job, "--queue-config", K8S)
    assert (
        "resource_args.kubernetes.spec.template.spec.containers.0: Additional properties are "
        "not allowed ('resorces' was unexpected)"
    ) in stderr


def test_a_job_cannot_ask_for_host_access_or_another_service_account() -> None:
    stderr = refused(
        HERE / "job-hello.yaml",
        "--queue-config",
        K8S,
        "--set",
        "resource_args.kubernetes.service_account=cluster-admin",
    )
    assert "resource_args.kubernetes.service_account" in stderr
    stderr = refused(
        HERE / "job-hello.yaml",
        "--queue-config",
        K8S,
        "--set",
        'resource_args.kubernetes.volumes=[{"name": "root", "hostPath": {"path": "/"}}]',
    )
    assert (
        "resource_args.kubernetes.volumes.0.host_path: a hostPath volume reaches the node" in stderr
    )


# --- docs/kubernetes.md's examples plan as they are written -------------------------------

DOCS = Path(__file__).parents[2] / "docs" / "kubernetes.md"


def doc_yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)


def test_the_docs_queue_and_manifests_plan_to_valid_workloads(tmp_path: Path) -> None:
    queue, wandb_job, pytorch = doc_yaml_blocks()[:3]
    (tmp_path / "queue.yaml").write_text(queue)
    manifest = would_submit(HERE / "job-hello.yaml", "--queue-config", tmp_path / "queue.yaml")[
        "manifest"
    ]
    assert manifest["metadata"]["namespace"] == "ml-jobs"
    assert env_of(container(manifest))["WANDB_API_KEY"] == {
        "secretKeyRef": {"name": "wandb-credentials", "key": "api-key"}
    }
    kinds = []
    for number, block in enumerate((wandb_job, pytorch)):
        path = tmp_path / f"queue-{number}.yaml"
        path.write_text("resource: kubernetes\n" + block)
        kinds.append(would_submit(HERE / "job-hello.yaml", "--queue-config", path)["api"])
    assert kinds == [
        "batch/v1 Job",
        "kubeflow.org/v1 PyTorchJob (custom object, plural pytorchjobs)",
    ]


def test_the_docs_input_artifact_queues_plan_to_init_containers_and_volumes(
    tmp_path: Path,
) -> None:
    """The two queues of docs/kubernetes.md "Input artifacts", planned with an input."""
    s3_queue, file_queue = doc_yaml_blocks()[3:5]
    job = tmp_path / "job.yaml"
    job.write_text(
        "docker: {image: 'python:3.12'}\ncommand: [python, train.py]\n"
        "input_artifacts: ['dataset:v3']\n"
    )
    planned = []
    for number, block in enumerate((s3_queue, file_queue)):
        path = tmp_path / f"queue-{number}.yaml"
        path.write_text("resource: kubernetes\n" + block)
        planned.append(pod(would_submit(job, "--queue-config", path)["manifest"]))
    fetched, mapped = planned
    [init] = fetched["initContainers"]
    assert init["image"] == "registry.example.com/launchplane:0.9"
    assert init["command"][:3] == ["launchplane", "artifact", "fetch"]
    assert init["command"][-2:] == ["--region", "eu-west-1"]
    assert fetched["containers"][0]["volumeMounts"][0]["readOnly"] is True
    assert mapped["volumes"] == [
        {
            "name": "lp-artifacts-0",
            "persistentVolumeClaim": {"claimName": "artifacts", "readOnly": True},
        }
    ]
    [mount] = mapped["containers"][0]["volumeMounts"]
    assert (mount["mountPath"], mount["readOnly"]) == ("/launchplane/artifacts/dataset", True)

"""``kubernetes_manifest.render``: what the runner creates for a run, checked against the schema.

Pure functions, no cluster: each rendered manifest is validated with
``kubernetes-validate`` against the official OpenAPI schema (strict).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from launchplane.core.errors import ConfigError, from_validation_error
from launchplane.core.interfaces import JobContext, PluginError, admin_only_fields
from launchplane.core.launch import run_labels
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.runners import kubernetes_manifest as km

pytestmark = pytest.mark.kubernetes

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
CANARY = "canary-s3cr3t-value-7f1c"


def job(**fields: Any) -> ResolvedJob:
    fields.setdefault("command", ["python", "train.py"])
    fields.setdefault("resource", "kubernetes")
    return ResolvedJob.model_validate(fields)


def render(resolved: ResolvedJob, **kwargs: Any) -> km.Workload:
    kwargs.setdefault("run_id", "j42-1")
    kwargs.setdefault("labels", {})
    kwargs.setdefault("env", {})
    kwargs.setdefault("secret_names", ())
    kwargs.setdefault("native_secrets", {})
    workload = km.render(resolved, "registry.example.com/t/img@sha256:" + "a" * 64, **kwargs)
    assert km.validate_manifest(workload.body) == []
    if workload.secret is not None:
        assert km.validate_manifest(workload.secret) == []
    return workload


def first(workload: km.Workload) -> dict[str, Any]:
    node: Any = workload.body
    for part in workload.container_paths[0]:
        node = node[part]
    return node


def test_a_run_renders_a_named_labelled_job_in_the_namespace() -> None:
    ctx = JobContext(
        job_id="j42", run_id="j42-1", attempt=1, queue="gpu queue/a100", workdir=Path(".")
    )
    workload = render(
        job(resource_args={"kubernetes": {"namespace": "ml"}}),
        labels={**run_labels(ctx), "bad key!": "x"},
        default_namespace="elsewhere",
    )
    assert (workload.group, workload.version, workload.kind, workload.plural) == (
        "batch",
        "v1",
        "Job",
        "jobs",
    )
    assert workload.is_job
    assert (workload.namespace, workload.name) == ("ml", "lp-j42-1")
    meta = workload.body["metadata"]
    assert (meta["name"], meta["namespace"]) == ("lp-j42-1", "ml")
    labels = meta["labels"]
    assert labels["launchplane.run_id"] == "j42-1"
    assert labels["launchplane.attempt"] == "1"
    assert LABEL_VALUE.fullmatch(labels["launchplane.queue"])
    assert labels["launchplane.queue"].startswith("gpu-queue-a100")
    assert "bad key!" not in labels
    assert workload.body["spec"]["template"]["metadata"]["labels"] == labels
    assert workload.container_paths == [("spec", "template", "spec", "containers", 0)]
    assert workload.secret is None


def test_default_namespace_when_the_job_names_none() -> None:
    assert render(job(), default_namespace="team-a").namespace == "team-a"


def test_workload_names_are_dns_labels_deterministic_and_distinct() -> None:
    ids = [
        "abc-1",
        "ABC_def.9-2",
        "x" * 100 + "-1",
        "x" * 100 + "-2",
        "-weird--id-",
        "j" * 60 + "-10",
    ]
    names = [km.workload_name(run_id) for run_id in ids]
    for name in names:
        assert len(name) <= 63 and DNS_LABEL.fullmatch(name), name
        assert name.startswith("lp-")
    assert len(set(names)) == len(names)
    assert [km.workload_name(run_id) for run_id in ids] == names
    assert km.workload_name("abc-1") == "lp-abc-1"


def test_label_values_are_safe_distinct_and_unchanged_when_already_safe() -> None:
    assert km.label_value("j42-1") == "j42-1"
    values = ["a b", "a/b", "-x-", "é", "q" * 80 + "1", "q" * 80 + "2", ""]
    cleaned = [km.label_value(v) for v in values]
    for value in cleaned:
        assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), value
    assert len(set(cleaned)) == len(cleaned)


def test_secret_values_go_only_into_the_run_secret() -> None:
    workload = render(
        job(),
        env={"PLAIN": "visible", "DB_PASSWORD": CANARY},
        secret_names={"DB_PASSWORD"},
        native_secrets={"WANDB_API_KEY": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}},
    )
    assert CANARY not in json.dumps(workload.body)
    env = {e["name"]: e for e in first(workload)["env"]}
    assert env["PLAIN"] == {"name": "PLAIN", "value": "visible"}
    assert env["DB_PASSWORD"] == {
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "lp-j42-1-secrets", "key": "DB_PASSWORD"}},
    }
    assert env["WANDB_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "wandb", "key": "api-key"}
    }
    assert env["PYTHONUNBUFFERED"]["value"] == "1"
    secret = workload.secret
    assert secret is not None
    assert secret["metadata"] == {
        "name": "lp-j42-1-secrets",
        "namespace": "default",
        "labels": workload.body["metadata"]["labels"],
    }
    assert secret["stringData"] == {"DB_PASSWORD": CANARY}


def test_a_native_secret_of_another_namespace_is_refused() -> None:
    native = {"T": {"secretKeyRef": {"name": "s", "key": "k"}, "namespace": "other"}}
    with pytest.raises(PluginError, match="Secret s is in namespace other but the job runs in ml"):
        render(job(resource_args={"kubernetes": {"namespace": "ml"}}), native_secrets=native)
    same = render(job(resource_args={"kubernetes": {"namespace": "other"}}), native_secrets=native)
    assert {"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}} in first(same)[
        "env"
    ]


def test_command_replaces_the_entrypoint_args_alone_feed_it() -> None:
    assert first(render(job(command=["python", "t.py"], args=["--lr", "1"])))["command"] == [
        "python",
        "t.py",
        "--lr",
        "1",
    ]
    only_args = first(render(job(command=None, args=["--fast"])))
    assert only_args["args"] == ["--fast"] and "command" not in only_args
    entry = first(render(job(command=None, entry_point="train.py --x")))
    assert entry["command"] == ["python", "train.py", "--x"]
    bare = first(render(job(command=None)))
    assert "command" not in bare and "args" not in bare


def test_short_form_fields_land_where_kubernetes_wants_them() -> None:
    workload = render(
        job(
            resource_args={
                "kubernetes": {
                    "requests": {"cpu": 4, "memory": "16Gi", "nvidia.com/gpu": 2},
                    "limits": {"memory": "32Gi"},
                    "nodeSelector": {"pool": "gpu"},
                    "tolerations": [{"key": "gpu", "operator": "Exists", "toleration_seconds": 30}],
                    "affinity": {
                        "node_affinity": {
                            "required_during_scheduling_ignored_during_execution": {
                                "node_selector_terms": [
                                    {
                                        "match_expressions": [
                                            {"key": "zone", "operator": "In", "values": ["a"]}
                                        ]
                                    }
                                ]
                            }
                        }
                    },
                    "env_from": [
                        {"secretRef": {"name": "keys"}, "prefix": "K_"},
                        {"config_map_ref": {"name": "cfg"}},
                    ],
                    "volumes": [
                        {"name": "data", "persistent_volume_claim": {"claim_name": "datasets"}}
                    ],
                    "volume_mounts": [{"name": "data", "mount_path": "/data", "read_only": True}],
                    "priority_class": "high",
                    "image_pull_secrets": ["regcred", {"name": "other"}],
                    "labels": {"team": "vision"},
                    "annotations": {"example.com/why": "test"},
                    "active_deadline_seconds": 600,
                    "backoff_limit": 1,
                    "ttl_seconds_after_finished": 300,
                }
            }
        )
    )
    body = workload.body
    pod = body["spec"]["template"]["spec"]
    main = first(workload)
    assert main["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"},
        "limits": {"memory": "32Gi", "nvidia.com/gpu": "2"},
    }
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "tolerationSeconds": 30}]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["key"] == "zone"
    assert main["envFrom"] == [
        {"prefix": "K_", "secretRef": {"name": "keys"}},
        {"configMapRef": {"name": "cfg"}},
    ]
    assert pod["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}]
    assert main["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]
    assert pod["priorityClassName"] == "high"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "other"}]
    assert body["metadata"]["labels"]["team"] == "vision"
    assert body["spec"]["template"]["metadata"]["annotations"] == {"example.com/why": "test"}
    assert (body["spec"]["activeDeadlineSeconds"], body["spec"]["backoffLimit"]) == (600, 1)
    assert body["spec"]["ttlSecondsAfterFinished"] == 300
    assert pod["restartPolicy"] == "Never"


def test_user_data_maps_keep_their_keys() -> None:
    workload = render(
        job(
            resource_args={
                "kubernetes": {
                    "affinity": {
                        "pod_anti_affinity": {
                            "preferred_during_scheduling_ignored_during_execution": [
                                {
                                    "weight": 1,
                                    "pod_affinity_term": {
                                        "topology_key": "kubernetes.io/hostname",
                                        "label_selector": {"match_labels": {"my_app": "x"}},
                                    },
                                }
                            ]
                        }
                    }
                }
            }
        )
    )
    term = workload.body["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ][0]["podAffinityTerm"]
    assert term["labelSelector"] == {"matchLabels": {"my_app": "x"}}


def test_volcano_job_gets_the_image_in_each_task() -> None:
    manifest = {
        "apiVersion": "batch.volcano.sh/v1alpha1",
        "kind": "Job",
        "spec": {
            "minAvailable": 2,
            "schedulerName": "volcano",
            "tasks": [
                {
                    "name": "ps",
                    "replicas": 1,
                    "template": {"spec": {"containers": [{"name": "ps"}]}},
                },
                {"name": "worker", "replicas": 2, "template": {"spec": {"containers": [{}]}}},
            ],
        },
    }
    workload = render(job(resource_args={"kubernetes": manifest}))
    assert (workload.group, workload.plural, workload.is_job) == ("batch.volcano.sh", "jobs", False)
    assert workload.container_paths == [
        ("spec", "tasks", 0, "template", "spec", "containers", 0),
        ("spec", "tasks", 1, "template", "spec", "containers", 0),
    ]
    tasks = workload.body["spec"]["tasks"]
    assert tasks[0]["template"]["spec"]["containers"][0]["name"] == "ps"
    assert tasks[1]["template"]["spec"]["containers"][0]["name"] == "job"
    for task in tasks:
        assert task["template"]["spec"]["containers"][0]["image"].startswith(
            "registry.example.com/"
        )
    assert workload.body["spec"]["minAvailable"] == 2


def test_plural_can_be_named_for_an_irregular_kind() -> None:
    manifest = {
        "apiVersion": "example.com/v1",
        "kind": "TrainingPolicy",
        "plural": "trainingpolicies",
        "spec": {"template": {"spec": {"containers": [{"name": "m"}]}}},
    }
    assert render(job(resource_args={"kubernetes": manifest})).plural == "trainingpolicies"


# --- refused ------------------------------------------------------------------------


def errors_of(args: dict[str, Any]) -> list[str]:
    try:
        km.KubernetesArgs.model_validate(args)
    except ConfigError as exc:
        return [str(error) for error in exc.errors]
    except ValidationError as exc:
        return [str(error) for error in from_validation_error(exc, model=km.KubernetesArgs)]
    return []


def test_privileged_settings_need_the_queues_opt_in() -> None:
    manifest = {
        "spec": {
            "template": {
                "spec": {
                    "hostNetwork": True,
                    "serviceAccountName": "admin",
                    "containers": [
                        {
                            "name": "m",
                            "securityContext": {
                                "privileged": True,
                                "capabilities": {"add": ["SYS_ADMIN"]},
                            },
                            "ports": [{"containerPort": 80, "hostPort": 80}],
                        }
                    ],
                    "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
                }
            }
        }
    }
    found = errors_of(manifest)
    for path in (
        "spec.template.spec.hostNetwork",
        "spec.template.spec.serviceAccountName",
        "spec.template.spec.containers.0.securityContext.privileged",
        "spec.template.spec.containers.0.securityContext.capabilities",
        "spec.template.spec.containers.0.ports.0.hostPort",
        "spec.template.spec.volumes.0.hostPath",
    ):
        assert any(e.startswith(path + ":") and "allow_privileged: true" in e for e in found), path
    assert errors_of({**manifest, "allow_privileged": True}) == []
    allowed = render(job(resource_args={"kubernetes": {**manifest, "allow_privileged": True}}))
    assert allowed.body["spec"]["template"]["spec"]["hostNetwork"] is True
    assert {"service_account", "allow_privileged"} <= admin_only_fields(km.KubernetesArgs)


def test_kind_specific_fields_and_unknown_kinds_are_refused() -> None:
    pytorch = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {"template": {"spec": {"containers": [{"name": "p"}]}}}
            }
        },
    }
    assert errors_of(pytorch) == []
    assert errors_of({**pytorch, "backoff_limit": 3})[0].startswith(
        "backoff_limit: applies to a batch/v1 Job, not to PyTorchJob"
    )
    assert errors_of({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {}})[0].startswith(
        "apiVersion: apps/v1 Deployment: the runner creates a batch/v1 Job or a custom resource"
    )
    bad_role = {
        **pytorch,
        "spec": {"pytorchReplicaSpecs": {"Chief": {"template": {"spec": {"containers": [{}]}}}}},
    }
    assert (
        "spec.pytorchReplicaSpecs.Chief: a PyTorchJob replica type is Master or Worker"
        in errors_of(bad_role)
    )
    no_template = {"apiVersion": "example.com/v1", "kind": "Thing", "spec": {"size": 1}}
    with pytest.raises(PluginError, match="has no pod template"):
        render(job(resource_args={"kubernetes": no_template}))


def test_schema_catches_what_pydantic_does_not() -> None:
    found = errors_of(
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "m", "ports": [{"containerPort": "eighty"}]}]}
                }
            }
        }
    )
    assert found == [
        "spec.template.spec.containers.0.ports.0.containerPort: 'eighty' is not of type 'integer'"
    ]
    found = errors_of({"volume_mounts": [{"name": "d"}]})
    assert found and found[0].startswith("volume_mounts.0: 'mountPath' is a required property")
    assert km.validate_manifest(
        {"apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": "x"}}
    ) == [
        "spec: 'template' is a required property",
        "spec.backoffLimit: 'x' is not of type 'integer', 'null'",
    ]


def test_bad_quantities_labels_and_env_from_are_refused() -> None:
    assert errors_of({"requests": {"cpu": "four"}})
    assert errors_of({"labels": {"launchplane.job_id": "x"}}) == [
        "labels.\"launchplane.job_id\": labels starting with 'launchplane.' are launchplane's"
    ]
    assert errors_of({"env_from": [{"secret_ref": {"name": "a"}, "config_map_ref": {"name": "b"}}]})
    assert (
        errors_of({"requests": {"cpu": "500m", "memory": "1.5Gi", "nvidia.com/gpu": 1, "x": "1e3"}})
        == []
    )


def test_a_job_without_an_image_anywhere_is_refused() -> None:
    with pytest.raises(PluginError, match="has no image for its Kubernetes container"):
        km.render(job(), None, run_id="a-1", labels={}, env={}, secret_names=(), native_secrets={})
    kept = km.render(
        job(
            resource_args={
                "kubernetes": {
                    "spec": {
                        "template": {"spec": {"containers": [{"name": "m", "image": "busybox"}]}}
                    }
                }
            }
        ),
        None,
        run_id="a-1",
        labels={},
        env={},
        secret_names=(),
        native_secrets={},
    )
    assert kept.body["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"


def test_schema_version_is_configurable_and_bounded() -> None:
    workload = km.render(
        job(),
        "img",
        run_id="a-1",
        labels={},
        env={},
        secret_names=(),
        native_secrets={},
        schema_version="1.25",
    )
    assert km.validate_manifest(workload.body, version="1.37") == []
    with pytest.raises(
        PluginError, match=r"schema_version 1\.10: kubernetes-validate has schemas from"
    ):
        km.validate_manifest(workload.body, version="1.10")


def test_label_and_node_selector_values_must_be_label_values() -> None:
    found = errors_of({"labels": {"team": "vision team"}, "node_selector": {"pool": "a" * 64}})
    assert len(found) == 2
    assert found[0].startswith("node_selector.pool: Value error, 'aaaa")
    assert found[1].startswith("labels.team: Value error, 'vision team' is not a label value")
    # A macro is expanded at launch; what it expands to is made label-safe then.
    expanded = render(job(resource_args={"kubernetes": {"labels": {"run": "a run/${x}"}}}))
    assert LABEL_VALUE.fullmatch(expanded.body["metadata"]["labels"]["run"])

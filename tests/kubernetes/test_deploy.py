"""``deploy/kubernetes/``: the agent in a cluster, as ``kubectl apply -k`` would send it.

Every manifest file is checked against the official OpenAPI schema
(``kubernetes-validate``, strict), and so is what ``kubectl kustomize`` (the
real kubectl on PATH) renders from the directory. No cluster is contacted.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from launchplane.cli.agent import _read_config
from launchplane.plugins.runners.kubernetes_manifest import validate_manifest

pytestmark = pytest.mark.kubernetes

DEPLOY = Path(__file__).parents[2] / "deploy" / "kubernetes"
NAMESPACE = "launchplane"


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    """``kubectl kustomize deploy/kubernetes``, by kind."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl (with kustomize) is not on PATH: install Debian's kubernetes-client")
    done = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    objects = documents(done.stdout)
    by_kind = {obj["kind"]: obj for obj in objects}
    assert len(by_kind) == len(objects)
    return by_kind


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_manifest_file_is_schema_valid(path: Path) -> None:
    (obj,) = documents(path.read_text())
    assert validate_manifest(obj) == []


def test_the_kustomization_lists_every_manifest_file() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]


def test_kustomize_renders_schema_valid_objects_in_one_namespace(
    rendered: dict[str, dict[str, Any]],
) -> None:
    assert set(rendered) == {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Secret",
        "ConfigMap",
        "Deployment",
    }
    for kind, obj in rendered.items():
        assert validate_manifest(obj) == [], kind
        if kind != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, kind
    assert rendered["Namespace"]["metadata"]["name"] == NAMESPACE


def test_the_deployment_runs_launch_agent_in_cluster_with_its_config_and_token(
    rendered: dict[str, dict[str, Any]],
) -> None:
    deployment = rendered["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == rendered["ServiceAccount"]["metadata"]["name"]
    (agent,) = pod["containers"]
    assert agent["command"] == ["launch-agent", "-c", "/etc/launchplane/agent.yaml"]
    env = {e["name"]: e for e in agent["env"]}
    assert env["LAUNCHPLANE_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": rendered["Secret"]["metadata"]["name"],
        "key": "token",
    }
    assert "KUBECONFIG" not in env  # in-cluster config: the pod's service account
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in agent["volumeMounts"]}
    config = volumes[mounts["/etc/launchplane"]]["configMap"]["name"]
    assert config == rendered["ConfigMap"]["metadata"]["name"]
    assert agent["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The work dir and $LAUNCHPLANE_HOME are writable volumes.
    assert mounts["/var/lib/launchplane"] in volumes and mounts["/tmp"] in volumes
    assert env["LAUNCHPLANE_HOME"]["value"] == "/var/lib/launchplane"


def test_the_agent_config_is_one_launch_agent_reads(
    rendered: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(rendered["ConfigMap"]["data"]["agent.yaml"])
    settings = _read_config(path)
    assert settings["queues"] == ["gpu"]
    assert settings["agent_id"] == "launchplane-agent"  # stable across pod restarts
    assert settings["work_dir"].startswith("/var/lib/launchplane/")
    grace = rendered["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings["drain_timeout"]
    # And a misspelt setting would be refused, so this check can fail.
    path.write_text("queus: [gpu]\n")
    with pytest.raises(click.BadParameter, match="unknown setting"):
        _read_config(path)


def test_the_role_grants_what_the_runner_needs_and_no_more(
    rendered: dict[str, dict[str, Any]],
) -> None:
    grants = {
        (group, resource): set(rule["verbs"])
        for rule in rendered["Role"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert grants == {
        ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
        ("", "pods"): {"get", "list", "watch", "delete"},
        ("", "pods/log"): {"get"},
        ("", "events"): {"get", "list", "watch"},
        ("", "secrets"): {"create", "get", "patch", "delete"},
        ("", "configmaps"): {"create", "get", "delete"},
    }
    binding = rendered["RoleBinding"]
    assert binding["roleRef"]["name"] == rendered["Role"]["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "launchplane-agent", "namespace": NAMESPACE}
    ]
    # The custom kinds are there to uncomment.
    text = (DEPLOY / "role.yaml").read_text()
    assert '#   resources: ["pytorchjobs"]' in text

"""Secrets on the kubernetes runner, end to end: server + agent + emulator + Docker.

Real: the queue server (in this event loop), the in-process agent and its
``env`` and ``k8s`` secret providers, the ``kubernetes`` client over
loopback, and the job's container on the Docker engine (it really reads its
environment). Simulated (tests/kubernetes/k8skit.py): the API server is
kmock's emulator as extended there; the test-side PodController stands in
for the kubelet, resolving ``secretKeyRef`` from the Secrets stored in the
emulator as a kubelet does.

The queue names one secret of each kind: ``env:`` (its value passes the
agent and must land only in the run's own Secret, owned by the Job) and
``k8s:NAME#KEY`` (the value never passes the agent: the pod reads the
user's Secret itself). Neither value may be written into the Job, the run
record, the job's log or any answer of the launchplane API.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
import pytest
from k8skit import Cluster
from kit import log_lines, running_agent, wait_for_state
from targets import EMULATOR_NAMESPACE as NAMESPACE
from targets import EmulatorTarget
from test_runner_e2e import JOB_TIMEOUT, command_job, queue_config

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = [pytest.mark.kubernetes, pytest.mark.docker, pytest.mark.anyio]

QUEUE = "k8s-secrets"
ENV_VALUE = "env-canary-3f7a19c2"
"""The value of the ``env:`` secret, in the agent's environment."""
K8S_VALUE = "k8s-canary-b81d5e04"
"""The value of key ``password`` of the user's Secret ``db-creds`` in the cluster."""
SECRETS = {"API_TOKEN": "env:LP_K8S_PLANTED", "DB_PASS": "k8s:db-creds#password"}
SCRIPT = (
    "import hashlib, os\n"
    "for name in ('API_TOKEN', 'DB_PASS'):\n"
    "    value = os.environ.get(name, '')\n"
    "    print(name, hashlib.sha256(value.encode()).hexdigest(), flush=True)\n"
)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def create_user_secret(kubeconfig: Path) -> None:
    """The user's Secret ``db-creds`` in the job's namespace, created as ``kubectl`` would."""
    import kubernetes

    with kubernetes.config.new_client_from_config(config_file=str(kubeconfig)) as api:
        kubernetes.client.CoreV1Api(api).create_namespaced_secret(
            NAMESPACE,
            {
                "metadata": {"name": "db-creds"},
                "data": {"password": base64.b64encode(K8S_VALUE.encode()).decode()},
            },
        )


@pytest.fixture
async def server(
    tmp_path: Path, kube: Cluster, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[EmbeddedServer]:
    """A kubernetes queue with both secrets; the user's Secret exists in the job's namespace."""
    monkeypatch.setenv("LP_K8S_PLANTED", ENV_VALUE)  # the in-process agent's environment
    # In a worker thread: the emulator answers from this event loop.
    await anyio.to_thread.run_sync(create_user_secret, kube.kubeconfig)
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        await srv.ensure_queue(QUEUE, {**queue_config(EmulatorTarget(kube)), "secrets": SECRETS})
        yield srv


async def test_both_secrets_reach_the_container_and_neither_value_is_written_anywhere_else(
    server: EmbeddedServer, client: LaunchplaneClient, kube: Cluster, tmp_path: Path
) -> None:
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        submitted = await client.submit_job(QUEUE, command_job(EmulatorTarget(kube), SCRIPT))
        job_id = submitted["id"]
        done = await wait_for_state(client, job_id, timeout=JOB_TIMEOUT)
        record = await client.get_record(job_id)
        lines = await log_lines(client, job_id)
        answer = await client.get_job(job_id)

    assert done["state"] == "succeeded", (done, lines[-10:])
    # The container saw both values (their hashes are printed) ...
    assert f"API_TOKEN {sha256(ENV_VALUE)}" in lines, lines
    assert f"DB_PASS {sha256(K8S_VALUE)}" in lines, lines

    # ... the Job refers to them, and holds neither.
    name = f"lp-{job_id}-1"
    job = kube.emulator.get("batch/v1/jobs", NAMESPACE, name)
    assert job is not None
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container.get("env") or []}
    assert env["API_TOKEN"] == {
        "name": "API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": f"{name}-secrets", "key": "API_TOKEN"}},
    }
    assert env["DB_PASS"] == {
        "name": "DB_PASS",
        "valueFrom": {"secretKeyRef": {"name": "db-creds", "key": "password"}},
    }

    # The env: value is in the run's own Secret only, which the Job owns (the garbage
    # collector deletes it with the Job); the k8s: value was never copied into it.
    run_secret = kube.emulator.get("v1/secrets", NAMESPACE, f"{name}-secrets")
    assert run_secret is not None
    assert run_secret["data"] == {"API_TOKEN": base64.b64encode(ENV_VALUE.encode()).decode()}
    (owner,) = run_secret["metadata"]["ownerReferences"]
    assert (owner["apiVersion"], owner["kind"], owner["name"], owner["uid"]) == (
        "batch/v1",
        "Job",
        name,
        job["metadata"]["uid"],
    )

    for where, text in {
        "Job manifest": json.dumps(job),
        "record": json.dumps(record),
        "log": "\n".join(lines),
        "GET job": json.dumps(answer),
    }.items():
        for value in (ENV_VALUE, K8S_VALUE):
            assert value not in text, (where, value)
        encoded = base64.b64encode(ENV_VALUE.encode()).decode()
        assert encoded not in text, where
    assert record["spec"]["secrets"] == SECRETS

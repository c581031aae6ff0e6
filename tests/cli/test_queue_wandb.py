"""``launchplane queue create/update --type TYPE -f body.yaml``: W&B queues on a real server.

The server is a ``launchplane server`` process on a loopback port; the bodies
are written the way W&B's UI and API hold them.
"""

from __future__ import annotations

import json
from pathlib import Path

from test_jobs_cli import Server, run
from test_jobs_cli import server as server  # the fixture: a real server on loopback

KUBERNETES_BODY = """\
apiVersion: batch/v1
kind: Job
metadata:
  labels: {team: ml}
namespace: training
spec:
  template:
    spec:
      containers:
        - resources:
            limits: {nvidia.com/gpu: "{{gpus}}"}
builder:
  accelerator:
    base_image: nvidia/cuda:12.1.0-runtime-ubuntu22.04
"""

LOCAL_CONTAINER_BODY = """\
env:
  - NCCL_DEBUG=WARN
  - WANDB_API_KEY
gpus: all
shm-size: "{{shm}}"
volume: [/datasets:/datasets:ro]
rm: true
"""

TEMPLATE_VARIABLES = {
    "shm": {"schema": {"type": "string", "enum": ["1g", "2g"], "default": "1g"}},
}


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_kubernetes_body_with_wandbs_template_variables(server: Server, tmp_path: Path) -> None:
    body = write(tmp_path, "k8s.yaml", KUBERNETES_BODY)
    variables = json.dumps([{"name": "gpus", "schema": '{"type":"integer","minimum":1}'}])
    created = run(
        server,
        *("queue", "create", "wb-k8s", "--type", "kubernetes", "-f", body),
        *("--template-variables", variables, "--json"),
    )
    assert created.exit_code == 0, created.output
    config = json.loads(created.stdout)["config"]
    assert config["resource"] == "kubernetes"
    assert config["builder"] == {
        "accelerator": {"base_image": "nvidia/cuda:12.1.0-runtime-ubuntu22.04"}
    }
    assert "builder" not in config["resource_args"]["kubernetes"]
    assert config["resource_args"]["kubernetes"]["namespace"] == "training"
    assert config["template_variables"] == {"gpus": {"type": "integer", "min": 1}}

    job = write(tmp_path, "job.yaml", "docker: {image: 'python:3.11'}\nentry_point: train.py\n")
    submitted = run(server, "submit", job, "--queue", "wb-k8s", "--var", "gpus=2", "--json")
    assert submitted.exit_code == 0, submitted.output
    resolved = json.loads(submitted.stdout)["resolved"]
    spec = resolved["resource_args"]["kubernetes"]["spec"]["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2


def test_a_local_container_body_in_stored_form_then_updated(server: Server, tmp_path: Path) -> None:
    stored = json.dumps({"resource_args": {"local-container": {"gpus": 1, "memory": "2g"}}})
    created = run(
        server,
        *("queue", "create", "wb-docker", "--type", "local-container"),
        *("-f", write(tmp_path, "stored.json", stored), "--json"),
    )
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["config"] == {
        "resource": "docker",
        "resource_args": {"docker": {"gpus": 1, "memory": "2g"}},
    }

    variables = write(tmp_path, "variables.yaml", json.dumps(TEMPLATE_VARIABLES))
    updated = run(
        server,
        *("queue", "update", "wb-docker", "--type", "local-container"),
        *("-f", write(tmp_path, "body.yaml", LOCAL_CONTAINER_BODY)),
        *("--template-variables", variables, "--json"),
    )
    assert updated.exit_code == 0, updated.output
    answer = json.loads(updated.stdout)
    assert answer["version"] == 2
    assert answer["config"] == {
        "resource": "docker",
        "resource_args": {
            "docker": {
                "env": {"NCCL_DEBUG": "WARN"},
                "gpus": "all",
                "shm_size": "{{shm}}",
                "volumes": ["/datasets:/datasets:ro"],
            }
        },
        "passthrough_env": ["WANDB_API_KEY"],
        "template_variables": {"shm": {"type": "string", "options": ["1g", "2g"], "default": "1g"}},
    }

    # Refused by the server: --resource-args is sent as given.
    job = write(tmp_path, "job.yaml", "docker: {image: 'python:3.11'}\n")
    sneaky = {"local-container": {"volume": ["/:/host"], "env": ["AWS_SECRET_ACCESS_KEY"]}}
    refused = run(
        server,
        *("submit", job, "--queue", "wb-docker", "--var", "shm=4g"),
        *("--resource-args", json.dumps(sneaky)),
    )
    assert refused.exit_code == 2
    assert refused.stderr.splitlines()[0] == "error: invalid job"
    for line in (
        "  resource_args.local-container.volume: docker run flag 'volume' changes what the "
        "container can reach: only the queue config (an admin) may set it",
        "  resource_args.local-container.env.0: 'AWS_SECRET_ACCESS_KEY' without a value reads "
        "the agent's environment, which only a queue config may do",
        "  template_variables.shm: '4g' is not one of the allowed options: 1g, 2g",
    ):
        assert line in refused.stderr
    accepted = run(
        server,
        *("submit", job, "--queue", "wb-docker", "--var", "shm=2g", "--json"),
        *("--resource-args", '{"local-container": {"m": "1g", "e": ["LR=0.1"]}}'),
    )
    assert accepted.exit_code == 0, accepted.output
    assert json.loads(accepted.stdout)["resolved"]["resource_args"]["docker"] == {
        "env": {"NCCL_DEBUG": "WARN", "LR": "0.1"},
        "gpus": "all",
        "shm_size": "2g",
        "volumes": ["/datasets:/datasets:ro"],
        "memory": "1g",
    }


def test_wandb_errors_name_the_key_and_never_reach_the_server(
    server: Server, tmp_path: Path
) -> None:
    body = write(tmp_path, "bad.yaml", "privileged: true\nmemory: [1g]\n")
    result = run(server, "queue", "create", "wb-bad", "--type", "local-container", "-f", body)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {body} (a W&B local-container body)",
        "  resource_args.local-container.privileged: unsupported docker run flag 'privileged'; "
        "supported: add-host, c, cpu, cpu-period, cpu-quota, cpu-shares, cpus, cpuset-cpus, "
        "cpuset-mems, e, env, gpus, init, l, label, m, memory, memory-reservation, memory-swap, "
        "net, network, pids-limit, platform, rm, runtime, shm-size, u, ulimit, user, v, volume, "
        "w, workdir",
        "  resource_args.local-container.memory: 'memory' takes one string or number, not a list",
    ]
    unknown = run(server, "queue", "create", "wb-bad", "--type", "k8s", "-f", body)
    assert unknown.exit_code == 2
    assert "unknown W&B queue type 'k8s'" in unknown.stderr
    assert run(server, "queue", "show", "wb-bad").exit_code != 0


def test_a_stored_form_without_type_gets_a_hint(server: Server, tmp_path: Path) -> None:
    stored = json.dumps({"resource_args": {"kubernetes": {"spec": {}}}})
    result = run(server, "queue", "create", "wb-hint", "-f", write(tmp_path, "stored.json", stored))
    assert result.exit_code == 2
    assert "pass --type kubernetes, or add resource: kubernetes" in result.stderr


def test_template_variables_join_a_launchplane_config(server: Server, tmp_path: Path) -> None:
    config = write(tmp_path, "queue.yaml", "resource: local-process\nenv: {N: '{{n}}'}\n")
    variables = '{"n": {"schema": {"type": "number", "maximum": 4, "default": 1.5}}}'
    created = run(
        server,
        *("queue", "create", "wb-lp", "-f", config, "--template-variables", variables, "--json"),
    )
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["config"]["template_variables"] == {
        "n": {"type": "float", "max": 4, "default": 1.5}
    }
    twice = write(
        tmp_path, "twice.yaml", "env: {N: '{{n}}'}\ntemplate_variables: {n: {type: integer}}\n"
    )
    result = run(
        server, "queue", "create", "wb-lp2", "-f", twice, "--template-variables", variables
    )
    assert result.exit_code == 2
    assert "  template_variables.n: also in --template-variables" in result.stderr


def test_a_launchplane_config_may_spell_the_runner_the_wandb_way(
    server: Server, tmp_path: Path
) -> None:
    config = write(
        tmp_path,
        "queue.yaml",
        "resource: local-container\n"
        "resource_args:\n  local-container: {gpus: all, e: [HF_TOKEN]}\n",
    )
    assert run(server, "queue", "create", "wb-spelt", "-f", config).exit_code == 0
    rows = [line.split()[:3] for line in run(server, "queue", "list").output.splitlines()]
    assert ["wb-spelt", "1", "docker"] in rows
    job = write(tmp_path, "job.yaml", "docker: {image: 'python:3.11'}\n")
    submitted = run(server, "submit", job, "--queue", "wb-spelt", "--json")
    assert submitted.exit_code == 0, submitted.output
    resolved = json.loads(submitted.stdout)["resolved"]
    assert (resolved["resource"], resolved["resource_args"], resolved["passthrough_env"]) == (
        "docker",
        {"docker": {"gpus": "all"}},
        ["HF_TOKEN"],
    )


def test_a_wandb_body_warns_where_wandbs_yaml_reads_a_value_otherwise(
    server: Server, tmp_path: Path
) -> None:
    # W&B reads YAML 1.1: `gpu: no` is a boolean there, the string "no" here.
    body = write(tmp_path, "k8s.yaml", "metadata: {name: x, labels: {gpu: no}}\nspec: {}\n")
    created = run(server, "queue", "create", "wb-yaml", "--type", "kubernetes", "-f", body)
    assert created.exit_code == 0, created.output
    assert (
        f"warning: {body}: metadata.labels.gpu: launchplane reads no as the string 'no'; "
        "wandb reads the boolean false; quote it to say which"
    ) in created.stderr

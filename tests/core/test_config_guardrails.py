"""resolve_job: layers, guardrails (and every way to try to get around them), stages."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, model_validator

from launchplane.core.config import (
    load_job_file,
    parse_resource_args,
    parse_set,
    resolve_job,
)
from launchplane.core.errors import ConfigError, FieldError
from launchplane.core.interfaces import PluginError
from launchplane.core.spec import QueueConfig
from launchplane.plugins.runners.local import LocalProcessRunner

QUEUE: dict[str, Any] = {
    "resource": "kubernetes",
    "docker": {"image": "registry/approved:1"},
    "builder": {"type": "noop"},
    "env": {"WANDB_API_KEY": "${SERVICE_ACCOUNT_KEY}", "TEAM": "ml"},
    "secrets": {"HF_TOKEN": "env:HF_TOKEN"},
    "passthrough_env": ["CUDA_HOME"],
    "resource_args": {
        "kubernetes": {
            "namespace": "training",
            "requests": {"memory": "{{memory}}", "nvidia.com/gpu": "1"},
            "node_selector": {"accelerator": "a100"},
        },
        "sagemaker": {"ResourceConfig": {"VolumeSizeInGB": "{{volume_size}}"}},
    },
    "template_variables": {
        "memory": {"type": "string", "default": "32Gi", "options": ["32Gi", "64Gi"]},
        "volume_size": {"type": "integer", "default": 100, "min": 50, "max": 500},
    },
    "locked": [
        "docker.image",
        "builder",
        'resource_args.kubernetes.requests."nvidia.com/gpu"',
        "resource_args.kubernetes.node_selector",
    ],
}

JOB: dict[str, Any] = {"entry_point": "train.py", "env": {"LR": "3e-4"}}


def refused(*args: Any, **kwargs: Any) -> dict[str, str]:
    """The problems of a refused resolution, path -> message."""
    with pytest.raises(ConfigError) as caught:
        resolve_job(*args, **kwargs)
    return {error.path: error.message for error in caught.value.errors}


LOCKED = "is locked by the queue config; only an admin can change it"


# --- what resolution produces ---------------------------------------------------------


def test_layers_merge_in_order() -> None:
    resolved = resolve_job(
        QUEUE,
        {**JOB, "resource_args": {"kubernetes": {"requests": {"cpu": "8"}}}},
        [parse_set("env.LR=1e-3"), parse_set("resource_args.kubernetes.requests.cpu=16")],
        {"memory": "64Gi"},
        queue_name="gpu",
    )
    assert resolved.queue == "gpu"
    assert resolved.resource == "kubernetes"
    assert resolved.env == {"WANDB_API_KEY": "${SERVICE_ACCOUNT_KEY}", "TEAM": "ml", "LR": "0.001"}
    assert resolved.resource_args["kubernetes"] == {
        "namespace": "training",
        "requests": {"memory": "64Gi", "nvidia.com/gpu": "1", "cpu": 16},
        "node_selector": {"accelerator": "a100"},
    }
    assert resolved.resource_args["sagemaker"] == {"ResourceConfig": {"VolumeSizeInGB": 100}}
    assert resolved.secrets == {"HF_TOKEN": "env:HF_TOKEN"}
    assert resolved.passthrough_env == ["CUDA_HOME"]
    assert resolved.template_values == {"memory": "64Gi", "volume_size": 100}
    assert resolved.docker is not None and resolved.docker.image == "registry/approved:1"


def test_queue_config_model_and_dict_resolve_alike() -> None:
    model = QueueConfig.model_validate(QUEUE)
    assert resolve_job(model, JOB) == resolve_job(QUEUE, JOB)


def test_resolution_does_not_touch_its_inputs() -> None:
    queue, job = copy.deepcopy(QUEUE), copy.deepcopy(JOB)
    overrides = [parse_set("env.A=1")]
    resolved = resolve_job(queue, job, overrides, {"memory": "64Gi"})
    assert (queue, job, overrides) == (QUEUE, JOB, [{"env": {"A": 1}}])
    resolved.resource_args["kubernetes"]["namespace"] = "changed"
    assert QUEUE["resource_args"]["kubernetes"]["namespace"] == "training"


def test_template_values_from_job_overrides_and_variables_in_order() -> None:
    job = {**JOB, "template_variables": {"volume_size": 200, "memory": "64Gi"}}
    overrides = [parse_set("template_variables.volume_size=300")]
    resolved = resolve_job(QUEUE, job, overrides, {"volume_size": "400"})
    assert resolved.template_values == {"memory": "64Gi", "volume_size": 400}
    assert resolve_job(QUEUE, job, overrides).template_values["volume_size"] == 300
    assert resolve_job(QUEUE, job).template_values["volume_size"] == 200


def test_wandb_python_api_layers() -> None:
    # wandb.launch(job=..., config={...}, resource_args={...}) from the reference.
    config = {"hyperparameters": {"batch_size": 64, "learning_rate": 5e-4}}
    resource_args = {"kubernetes": {"requests": {"memory": "64Gi"}}}
    queue = {"resource": "kubernetes", "hyperparameters": {"batch_size": 32, "epochs": 3}}
    resolved = resolve_job(
        queue, {"job": "vlm-training:latest"}, [config, {"resource_args": resource_args}]
    )
    assert resolved.job == "vlm-training:latest"
    assert resolved.hyperparameters == {"batch_size": 64, "learning_rate": 5e-4, "epochs": 3}
    assert resolved.resource_args == resource_args


def test_a_job_may_fill_in_a_mapping_the_queue_started() -> None:
    queue = {"git": {"repository": "https://github.com/myorg/llm-training"}}
    resolved = resolve_job(queue, {"git": {"commit": "abc123def456"}})
    assert resolved.git is not None
    assert (resolved.git.repository, resolved.git.commit) == (
        "https://github.com/myorg/llm-training",
        "abc123def456",
    )


# --- locked paths and how not to get around them --------------------------------------


def test_locked_path_by_set() -> None:
    assert refused(QUEUE, JOB, [parse_set("docker.image=evil:latest")]) == {
        "docker.image": f"{LOCKED} (from --set docker.image=evil:latest)"
    }


def test_locked_path_by_set_with_the_wandb_spelling() -> None:
    assert refused(QUEUE, JOB, [parse_set("job.docker.image=evil")]) == {
        "docker.image": f"{LOCKED} (from --set job.docker.image=evil)"
    }


def test_locked_path_by_resource_args() -> None:
    layer = parse_resource_args('{"kubernetes": {"requests": {"nvidia.com/gpu": "8"}}}')
    assert refused(QUEUE, JOB, [layer]) == {
        'resource_args.kubernetes.requests."nvidia.com/gpu"': f"{LOCKED} (from --resource-args)"
    }


def test_locked_path_by_quoted_set() -> None:
    layer = parse_set('resource_args.kubernetes.requests."nvidia.com/gpu"=8')
    assert list(refused(QUEUE, JOB, [layer])) == [
        'resource_args.kubernetes.requests."nvidia.com/gpu"'
    ]


def test_locked_path_by_a_plain_python_override() -> None:
    assert refused(QUEUE, JOB, [{}, {"docker": {"image": "x"}}]) == {
        "docker.image": f"{LOCKED} (in override 2)"
    }


def test_locked_path_by_base_config(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("docker:\n  image: evil:latest\n")
    (tmp_path / "job.yaml").write_text("base_config: base.yaml\nentry_point: train.py\n")
    job = load_job_file(tmp_path / "job.yaml")
    assert refused(QUEUE, job) == {"docker.image": LOCKED}


def test_locked_path_by_wandb_job_mapping() -> None:
    job = {**JOB, "job": {"docker": {"image": "evil:latest"}}}
    assert refused(QUEUE, job) == {"docker.image": LOCKED}


def test_locked_builder_by_resource_args_builder() -> None:
    job = {**JOB, "resource_args": {"builder": {"type": "docker"}}}
    assert refused(QUEUE, job) == {"builder": LOCKED}


def test_locked_builder_by_resource_args_builder_in_a_base_file(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("resource_args:\n  builder:\n    type: kaniko\n")
    (tmp_path / "job.yaml").write_text("base_config: base.yaml\n")
    assert refused(QUEUE, load_job_file(tmp_path / "job.yaml")) == {"builder": LOCKED}


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("Resource_Args", "resource_args"),
        ("Resource-Args", "resource_args"),
        ("resourceArgs", "resource_args"),
        ("Docker", "docker"),
        ("DOCKER", "docker"),
        ("entryPoint", "entry_point"),
        ("repo", None),
    ],
)
def test_other_spellings_of_a_key_are_unknown_keys(key: str, suggestion: str | None) -> None:
    job = {**JOB, key: {"image": "evil"}}
    problems = refused(QUEUE, job)
    if suggestion:
        assert problems == {key: f"unknown key (did you mean '{suggestion}'?)"}
    else:
        assert list(problems) == [key]


def test_unknown_nested_keys_suggest_too() -> None:
    # git.repo is W&B's spelling of git.repository (tests/core/test_wandb_spec.py).
    assert refused(QUEUE, {"git": {"repositry": "x"}, "docker": {"Image": "x"}}) == {
        "git.repositry": "unknown key (did you mean 'repository'?)",
        "docker.Image": "unknown key (did you mean 'image'?)",
    }


def test_job_mapping_with_unknown_source() -> None:
    assert refused(QUEUE, {"job": {"dockr": {"image": "x"}}}) == {
        "job.dockr": (
            "unknown key (did you mean 'docker'?); job: as a mapping holds the code source: "
            "git, artifact or docker"
        )
    }


def test_job_mapping_conflicting_with_top_level() -> None:
    job = {"job": {"git": {"repository": "a"}}, "git": {"repository": "b"}}
    assert refused({}, job) == {
        "job.git": "also set as top-level 'git'; set it once, as top-level 'git'"
    }
    job = {"builder": {"type": "noop"}, "resource_args": {"builder": {"type": "docker"}}}
    assert refused({}, job) == {
        "resource_args.builder": (
            "also set as top-level 'builder'; set it once, as top-level 'builder'"
        )
    }


@pytest.mark.parametrize(
    ("job", "path", "protected"),
    [
        ({"docker": None}, "docker", "docker.image"),
        ({"docker": "evil:latest"}, "docker", "docker.image"),
        ({"resource_args": {"kubernetes": "x"}}, "resource_args.kubernetes", None),
        ({"resource_args": None}, "resource_args", None),
        (
            {"resource_args": {"kubernetes": {"requests": []}}},
            "resource_args.kubernetes.requests",
            None,
        ),
    ],
)
def test_replacing_a_parent_of_a_locked_path(
    job: dict[str, Any], path: str, protected: str | None
) -> None:
    problems = refused(QUEUE, job)
    assert list(problems) == [path]
    assert problems[path].startswith("replacing this would change ")
    if protected:
        assert problems[path] == f"replacing this would change {protected}, which {LOCKED}"


def test_a_parent_mapping_merges_so_siblings_are_fine() -> None:
    job = {
        "docker": {"dockerfile": "Dockerfile"},
        "resource_args": {"kubernetes": {"requests": {"cpu": "8"}, "namespace": "mine"}},
    }
    resolved = resolve_job(QUEUE, job)
    assert resolved.docker is not None
    assert (resolved.docker.image, resolved.docker.dockerfile) == (
        "registry/approved:1",
        "Dockerfile",
    )
    assert resolved.resource_args["kubernetes"]["requests"]["nvidia.com/gpu"] == "1"


def test_a_child_of_a_locked_path() -> None:
    job = {"resource_args": {"kubernetes": {"node_selector": {"zone": "us-west-2a"}}}}
    assert refused(QUEUE, job) == {"resource_args.kubernetes.node_selector": LOCKED}
    assert refused(QUEUE, {"builder": {"accelerator": {"base_image": "x"}}}) == {"builder": LOCKED}


def test_a_locked_path_the_queue_does_not_set_stays_unset() -> None:
    queue = {"locked": ["docker.image"]}
    assert refused(queue, {"docker": {"image": "x"}}) == {"docker.image": LOCKED}
    resolved = resolve_job(queue, {"docker": {"dockerfile": "Dockerfile"}})
    assert resolved.docker is not None and resolved.docker.image is None


def test_locked_entries_in_wandb_spelling() -> None:
    queue = {"locked": ["job.docker.image", "resource_args.builder.type"]}
    assert refused(queue, {"docker": {"image": "x"}, "builder": {"type": "docker"}}) == {
        "docker.image": LOCKED,
        "builder.type": LOCKED,
    }


# --- templated paths ------------------------------------------------------------------


def test_a_templated_path_set_directly() -> None:
    queue = {
        "resource": "sagemaker",
        "resource_args": {"sagemaker": {"ResourceConfig": {"VolumeSizeInGB": "{{volume_size}}"}}},
        "template_variables": {"volume_size": {"type": "integer", "default": 100}},
    }
    layer = parse_set("resource_args.sagemaker.ResourceConfig.VolumeSizeInGB=1000")
    assert refused(queue, {}, [layer]) == {
        "resource_args.sagemaker.ResourceConfig.VolumeSizeInGB": (
            "is set by the queue from template variable 'volume_size'; pass --var "
            "volume_size=... instead (from --set "
            "resource_args.sagemaker.ResourceConfig.VolumeSizeInGB=1000)"
        )
    }


def test_a_templated_path_by_replacing_its_parent() -> None:
    job = {"resource_args": {"kubernetes": {"requests": "lots"}}}
    problems = refused(QUEUE, job)
    assert problems == {
        "resource_args.kubernetes.requests": (
            "replacing this would change resource_args.kubernetes.requests.memory, which is set "
            "by the queue from template variable 'memory'; pass --var memory=... instead"
        )
    }


def test_a_string_with_several_variables() -> None:
    queue = {
        "env": {"TAG": "{{a}}-{{b}}"},
        "template_variables": {"a": {"default": "x"}, "b": {"default": "y"}},
    }
    assert resolve_job(queue, {}).env == {"TAG": "x-y"}
    assert refused(queue, {"env": {"TAG": "z"}}) == {
        "env.TAG": (
            "is set by the queue from template variables 'a', 'b'; "
            "pass --var a=... --var b=... instead"
        )
    }


def test_templated_list_items_protect_the_whole_list() -> None:
    queue = {
        "command": ["python", "train.py", "--epochs={{epochs}}"],
        "resource_args": {"kubernetes": {"args": ["--size={{epochs}}"]}},
        "template_variables": {"epochs": {"type": "integer", "default": 3}},
    }
    assert resolve_job(queue, {}).command == ["python", "train.py", "--epochs=3"]
    problems = refused(
        queue, {"command": ["sh"], "resource_args": {"kubernetes": {"args": {"0": "x"}}}}
    )
    assert problems == {
        "command": (
            "replacing this would change command.2, which is set by the queue from template "
            "variable 'epochs'; pass --var epochs=... instead"
        ),
        "resource_args.kubernetes.args": (
            "replacing this would change resource_args.kubernetes.args.0, which is set by the "
            "queue from template variable 'epochs'; pass --var epochs=... instead"
        ),
    }


# --- what only admins may do ----------------------------------------------------------


def test_secrets_in_a_job_or_override() -> None:
    message = (
        "secrets belong to the queue config, which only admins can change; ask an admin to add "
        "them there (the job gets them as env variables)"
    )
    assert refused(QUEUE, {"secrets": {"DB": "aws-sm:prod/db#password"}}) == {"secrets": message}
    assert refused(QUEUE, {}, [parse_set("secrets.DB=env:DB")]) == {
        "secrets": f"{message} (from --set secrets.DB=env:DB)"
    }


def test_agent_environment_references_in_a_job() -> None:
    job = {
        "env": {"LEAK": "${HOME}", "OK": "run-${run_id}", "ESCAPED": "$${HOME}"},
        "command": ["sh", "-c", "echo ${AWS_SECRET_ACCESS_KEY}"],
        "args": ["--x=${PATH}"],
        "entry_point": "${SHELL}",
        "hyperparameters": {"template": "${not_expanded_here}"},
    }
    problems = refused(QUEUE, job)
    assert set(problems) == {"env.LEAK", "command.2", "args.0", "entry_point"}
    assert problems["env.LEAK"] == (
        "${HOME} would read the agent's environment, which only a queue config may do; write "
        "$${HOME} for the literal text, or ask an admin to provide it (queue env, secrets or "
        "passthrough_env)"
    )


def test_macros_and_escapes_are_fine_in_a_job() -> None:
    job = {
        "env": {"A": "${run_id}/${job_id}/${queue}/${project}/${entity}/${image_uri}", "B": "$$"}
    }
    assert resolve_job(QUEUE, job).env["A"].startswith("${run_id}")


def test_null_env_only_for_passthrough_names() -> None:
    assert resolve_job(QUEUE, {"env": {"CUDA_HOME": None}}).env["CUDA_HOME"] is None
    assert refused(QUEUE, {"env": {"HF_TOKEN": None}}, [parse_set("env.X=null")]) == {
        "env.HF_TOKEN": (
            "null (inherit from the agent) is allowed only for names in the queue's "
            "passthrough_env (here: CUDA_HOME); give a value, or ask an admin to add HF_TOKEN "
            "to passthrough_env"
        ),
        "env.X": (
            "null (inherit from the agent) is allowed only for names in the queue's "
            "passthrough_env (here: CUDA_HOME); give a value, or ask an admin to add X to "
            "passthrough_env (from --set env.X=null)"
        ),
    }


def test_a_null_env_value_filled_by_a_later_layer_is_fine() -> None:
    job = {"env": {"HF_TOKEN": None}}
    assert resolve_job(QUEUE, job, [parse_set("env.HF_TOKEN=abc")]).env["HF_TOKEN"] == "abc"
    problems = refused(QUEUE, {"env": {"A": "1"}}, [parse_set("env.A=null")])
    assert problems["env.A"].endswith("(from --set env.A=null)")


def test_queue_settings_in_a_job() -> None:
    job = {"resource": "local-process", "locked": [], "passthrough_env": ["X"], "max_attempts": 9}
    assert refused(QUEUE, job) == {
        "resource": (
            "the queue decides the runner; submit to another queue "
            "(this queue runs 'kubernetes', not 'local-process')"
        ),
        "locked": "is a queue setting that only an admin can change",
        "passthrough_env": "is a queue setting that only an admin can change",
        "max_attempts": "is a queue setting that only an admin can change",
    }


def test_base_config_must_be_resolved_by_the_loader() -> None:
    assert refused(QUEUE, {"base_config": "team.yaml"}) == {
        "base_config": (
            "is read by the file loader (launchplane submit/plan); it cannot be resolved here"
        )
    }


def test_a_layer_must_be_a_mapping() -> None:
    assert refused(QUEUE, JOB, [["docker.image=x"]]) == {  # type: ignore[list-item]
        "": "a job or override must be a mapping, not a list (in override 1)"
    }


# --- all problems at once, by stage ---------------------------------------------------


def test_every_problem_of_the_submission_at_once() -> None:
    job = {
        "secrets": {"A": "env:A"},
        "Docker": {},
        "env": {"X": "${HOME}", "Y": None},
        "template_variables": {"volume_size": 9999, "memroy": "64Gi"},
        "docker": {"image": "x"},
    }
    problems = refused(QUEUE, job, [parse_set("builder.type=docker")], {"memory": "1Ti"})
    assert set(problems) == {
        "secrets",
        "Docker",
        "env.X",
        "env.Y",
        "docker.image",
        "builder",
        "template_variables.volume_size",
        "template_variables.memroy",
        "template_variables.memory",
    }


def test_resolved_job_errors_name_their_path() -> None:
    assert refused({}, {"git": {"commit": "abc"}}) == {"git.repository": "Field required"}


def test_resource_args_key_with_a_different_case() -> None:
    assert refused(QUEUE, {"resource_args": {"Kubernetes": {"x": 1}}}) == {
        "resource_args.Kubernetes": (
            "this queue runs 'kubernetes'; did you mean resource_args.kubernetes? "
            "(keys are case-sensitive)"
        )
    }


def test_invalid_queue_config_is_reported_as_such() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_job({"env": {"A": "{{nope}}"}}, JOB)
    assert str(caught.value).startswith("queue config: env.A: uses template variable 'nope'")


# --- the runner's own model -----------------------------------------------------------


def test_runner_model_errors_are_prefixed_and_suggest() -> None:
    queue = {"resource": "local-process"}
    job = {"entry_point": "train.py", "resource_args": {"local-process": {"nicety": 3, "nice": 99}}}
    assert refused(queue, job, resource_args_model=LocalProcessRunner.resource_args_model) == {
        "resource_args.local-process.nicety": "unknown key (did you mean 'nice'?)",
        "resource_args.local-process.nice": "Input should be less than or equal to 19 (got 99)",
    }


class _SlurmArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    partition: str = "gpu"
    region: str | None = None

    @model_validator(mode="after")
    def _needs_region(self) -> _SlurmArgs:
        if self.partition == "cloud" and self.region is None:
            raise ConfigError([FieldError("region", "is required for partition 'cloud'")])
        if self.partition == "broken":
            raise PluginError("the partition list could not be read")
        return self


def test_runner_model_config_and_plugin_errors_are_prefixed() -> None:
    queue = {"resource": "slurm"}
    cloud = {"resource_args": {"slurm": {"partition": "cloud"}}}
    assert refused(queue, cloud, resource_args_model=_SlurmArgs) == {
        "resource_args.slurm.region": "is required for partition 'cloud'"
    }
    broken = {"resource_args": {"slurm": {"partition": "broken"}}}
    assert refused(queue, broken, resource_args_model=_SlurmArgs) == {
        "resource_args.slurm": "the partition list could not be read"
    }


def test_runner_model_checks_only_the_queue_runners_args() -> None:
    job = {
        "entry_point": "train.py",
        "resource_args": {"slurm": {"partition": "cpu"}, "docker": {"anything": 1}},
    }
    resolved = resolve_job({"resource": "slurm"}, job, resource_args_model=_SlurmArgs)
    assert resolved.resource_args == job["resource_args"]  # validated, not rewritten
    assert refused(
        {"resource": "slurm"},
        {"resource_args": {"slurm": {"partiton": "cpu"}}},
        resource_args_model=_SlurmArgs,
    ) == {"resource_args.slurm.partiton": "unknown key (did you mean 'partition'?)"}


def test_a_patch_cannot_change_the_code_a_queue_pins() -> None:
    # A W&B job's diff.patch is code: a locked commit must not run a submitter's patch.
    queue = {
        "git": {"repository": "https://example.com/approved.git", "commit": "a" * 40},
        "locked": ["git.commit"],
    }
    job = {"entry_point": "train.py", "git": {"patch": "diff --git a/train.py b/train.py\n"}}
    problems = refused(queue, job)
    assert list(problems) == ["git.patch"]
    assert "would change the code the queue pins (git.commit)" in problems["git.patch"]
    # Without a pin the patch is the submitter's own business.
    resolved = resolve_job({"git": queue["git"]}, job)
    assert resolved.git is not None and resolved.git.patch == job["git"]["patch"]


@pytest.mark.parametrize(
    ("job", "path"),
    [
        ({"resource_args": {"docker": {"volumes": ["/:/host"]}}}, "resource_args.docker.volumes"),
        ({"resource_args": {"docker": {"network": "host"}}}, "resource_args.docker.network"),
        ({"resource_args": {"docker": {"runtime": "runc"}}}, "resource_args.docker.runtime"),
        ({"resource_args": {"docker": {"user": "0"}}}, "resource_args.docker.user"),
    ],
)
def test_a_submitter_cannot_set_what_reaches_the_agent_host(job: dict[str, Any], path: str) -> None:
    # W&B's allow-list refuses these docker flags from a submitter; launchplane's own spelling
    # must not get around it. The queue config (the admin) may set them.
    from launchplane.plugins.runners.docker import DockerArgs

    queue = {"resource": "docker", "docker": {"image": "python:3.11"}}
    problems = refused(queue, job, resource_args_model=DockerArgs)
    assert list(problems) == [path]
    assert "only the queue config (an admin) may set it" in problems[path]
    resolved = resolve_job({**queue, **job}, {}, resource_args_model=DockerArgs)
    assert resolved.resource_args["docker"] == job["resource_args"]["docker"]
    override = refused(queue, {}, [parse_set(f"{path}=x")], resource_args_model=DockerArgs)
    assert list(override) == [path]


def test_a_compiled_queue_is_reused_but_never_shared_with_a_caller() -> None:
    # resolve_job compiles each distinct queue config once; a caller that changes its
    # dict afterwards, or a job that changes its resolved copy, must not reach the cache.
    queue = {"env": {"TEAM": "ml"}, "resource_args": {"local-process": {"timeout_seconds": 5}}}
    first = resolve_job(queue, {"command": ["true"]})
    first.env["TEAM"] = "changed by the caller"
    first.resource_args["local-process"]["timeout_seconds"] = 99
    again = resolve_job(queue, {"command": ["true"]})
    assert again.env == {"TEAM": "ml"}
    assert again.resource_args == {"local-process": {"timeout_seconds": 5}}
    queue["env"]["TEAM"] = "research"
    assert resolve_job(queue, {"command": ["true"]}).env == {"TEAM": "research"}


PROGRAM_CHANGED = (
    "would change the program the job runs, which the queue fixes in {}; "
    "only an admin can change it"
)
FIXED_PROGRAM: dict[str, dict[str, Any]] = {
    "entry_point locked": {"entry_point": ["python", "approved.py"], "locked": ["entry_point"]},
    "command locked": {"command": ["python", "approved.py"], "locked": ["command"]},
    "entry_point templated": {
        "entry_point": ["python", "{{script}}"],
        "template_variables": {"script": {"type": "string", "options": ["a.py", "b.py"]}},
    },
    "one word of command locked": {"command": ["python", "approved.py"], "locked": ["command.0"]},
}


@pytest.mark.parametrize("queue", list(FIXED_PROGRAM))
@pytest.mark.parametrize("other", ["command", "entry_point"])
def test_fixing_command_or_entry_point_fixes_the_program(queue: str, other: str) -> None:
    # command wins over entry_point in job_argv: a free one would run instead of the fixed one.
    config = {"resource": "local-process", **FIXED_PROGRAM[queue]}
    fixed = "command" if "command" in config else "entry_point"
    variables = {"script": "a.py"} if "template_variables" in config else {}
    job = {other: ["sh", "-c", "cat /etc/passwd"]}
    problems = refused(config, job, [], variables)
    assert list(problems) == [other]
    if other != fixed:
        assert problems[other] == PROGRAM_CHANGED.format(fixed)
    via_set = refused(config, {}, [parse_set(f"{other}=[sh]")], variables)
    assert list(via_set) == [other]


def test_args_stay_the_submitters_where_only_the_program_is_fixed() -> None:
    queue = {"entry_point": ["python", "approved.py"], "locked": ["entry_point"]}
    resolved = resolve_job(queue, {"args": ["--epochs", "3"]})
    assert (resolved.entry_point, resolved.args) == (["python", "approved.py"], ["--epochs", "3"])


def test_locking_args_locks_the_program_too() -> None:
    # Locked args run as the arguments of the submitter's own program otherwise.
    queue = {"args": ["-v"], "locked": ["args"]}
    for key, value in (("command", ["mine"]), ("entry_point", "mine.py")):
        with pytest.raises(ConfigError) as caught:
            resolve_job(queue, {key: value})
        assert [(e.path, e.message) for e in caught.value.errors] == [
            (
                key,
                "would change the program the job runs, which the queue fixes in args; "
                "only an admin can change it",
            )
        ]

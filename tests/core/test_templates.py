"""Queue templates (``{{var}}`` typed by template_variables) and launch macros (``${run_id}``)."""

from __future__ import annotations

from typing import Any

import pytest

from launchplane.core.config.macros import agent_env_references, expand_macros
from launchplane.core.config.queue_check import check_queue_config
from launchplane.core.config.templates import (
    find_placeholders,
    resolve_template_values,
    substitute,
)
from launchplane.core.errors import ConfigError
from launchplane.core.spec import TemplateVariable

SAGEMAKER_QUEUE: dict[str, Any] = {
    "resource": "sagemaker",
    "resource_args": {
        "sagemaker": {
            "RoleArn": "arn:aws:iam::123456789:role/SageMakerRole",
            "ResourceConfig": {
                "InstanceType": "{{instance_type}}",
                "InstanceCount": 1,
                "VolumeSizeInGB": "{{volume_size}}",
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": "{{max_runtime}}"},
        }
    },
    "template_variables": {
        "instance_type": {
            "type": "string",
            "default": "ml.p3.2xlarge",
            "options": ["ml.p3.2xlarge", "ml.p3.8xlarge", "ml.p3.16xlarge"],
        },
        "volume_size": {"type": "integer", "default": 100, "min": 50, "max": 500},
        "max_runtime": {"type": "float", "default": 86400, "min": 3600, "max": 259200},
    },
}

SCHEMA = {
    name: TemplateVariable.model_validate(spec)
    for name, spec in SAGEMAKER_QUEUE["template_variables"].items()
}


def problems(exc: ConfigError) -> dict[str, str]:
    return {error.path: error.message for error in exc.errors}


# --- placeholders ---------------------------------------------------------------------


def test_find_placeholders() -> None:
    found = find_placeholders(
        {
            "a": {"b": "{{x}}", "c": "pre-{{ y }}-{{z-1}}", "{{k}}": "plain"},
            "list": ["{{ w_2 }}", 3, None],
            "not": "{{ no spaces allowed }} {{}} {x}",
        }
    )
    assert found == {
        ("a", "b"): {"x"},
        ("a", "c"): {"y", "z-1"},
        ("list", 0): {"w_2"},
    }


# --- queue config check ---------------------------------------------------------------


def test_reference_queue_is_valid() -> None:
    queue, warnings = check_queue_config(SAGEMAKER_QUEUE)
    assert queue.resource == "sagemaker"
    assert warnings == []


def test_every_problem_of_a_queue_config_at_once() -> None:
    raw = {
        "resource": "kubernetes",
        "secrets": {"TOKEN": "{{token}}"},
        "env": {"{{name}}": "x", "SIZE": "{{volum_size}}"},
        "resource_args": {"kubernetes": {"image": "{{tag}}"}},
        "template_variable": {},
        "template_variables": {
            "volume_size": {"type": "integer", "default": 1000, "min": 50, "max": 500},
            "tag": {"type": "string", "default": "c", "options": ["a", "b"]},
            "bad": {"type": "integer", "default": "many"},
            "range": {"type": "float", "min": 10, "max": 1},
            "opts": {"type": "integer", "options": ["one", 2, 900], "max": 100},
            "flag": {"type": "boolean", "min": 0},
            "empty": {"type": "string", "options": []},
            "bad name": {"type": "string", "default": "x"},
        },
        "locked": ['a."b'],
    }
    with pytest.raises(ConfigError) as caught:
        check_queue_config(raw)
    assert problems(caught.value) == {
        "locked.0": "'a.\"b': unterminated quote (at column 3)",
        "template_variable": "unknown key (did you mean 'template_variables'?)",
        "secrets.TOKEN": "'secrets' is a queue setting: it cannot hold placeholders",
        "env.SIZE": (
            "uses template variable 'volum_size', which is not declared in template_variables "
            "(did you mean 'volume_size'?); declare it, e.g. template_variables: "
            "{volum_size: {type: string}}"
        ),
        "env.{{name}}": "a mapping key cannot hold a placeholder",
        "template_variables.volume_size.default": (
            "1000 is above the maximum 500 (an integer from 50 to 500)"
        ),
        "template_variables.tag.default": "'c' is not one of the allowed options: a, b",
        "template_variables.bad.default": "'many' is not an integer (an integer)",
        "template_variables.range.max": "max 1 is below min 10",
        "template_variables.opts.options.0": (
            "'one' is not an integer (an integer <= 100, one of: one, 2, 900)"
        ),
        "template_variables.opts.options.2": (
            "900 is above the maximum 100 (an integer <= 100, one of: one, 2, 900)"
        ),
        "template_variables.flag": "min/max apply to integer and float variables, not boolean",
        "template_variables.empty.options": "options is empty; remove it or list values",
        "template_variables.bad name": "variable names use letters, digits, '_' and '-'",
    }


def test_warnings() -> None:
    raw = {
        "env": {"A": "{{ used }}", "B": "{{ not a placeholder }}", "C": "{{.Values.x}}"},
        "template_variables": {
            "used": {"default": "x"},
            "spare": {"type": "integer", "default": 1},
            "needed": {"type": "string"},
        },
    }
    _, warnings = check_queue_config(raw)
    assert warnings == [
        "env.B: '{{ not a placeholder }}' is not a placeholder and stays as text "
        "(variable names use letters, digits, '_' and '-')",
        "env.C: '{{.Values.x}}' is not a placeholder and stays as text "
        "(variable names use letters, digits, '_' and '-')",
        "template_variables.spare: declared but no field uses {{spare}}",
        "template_variables.needed: declared but no field uses {{needed}}; "
        "without a default, every job must still pass it",
    ]


def test_queue_config_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="a queue config must be a mapping of keys, not a list"):
        check_queue_config([])  # type: ignore[arg-type]


def test_queue_config_is_normalised_first() -> None:
    queue, _ = check_queue_config(
        {"resource_args": {"builder": {"accelerator": {"base_image": "tf:gpu"}}, "docker": {}}}
    )
    assert queue.builder is not None and queue.builder.accelerator is not None
    assert queue.builder.accelerator.base_image == "tf:gpu"
    assert "builder" not in queue.resource_args


# --- values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, {"instance_type": "ml.p3.2xlarge", "volume_size": 100, "max_runtime": 86400}),
        ({"volume_size": "200"}, {"volume_size": 200}),
        ({"volume_size": " 200 "}, {"volume_size": 200}),
        ({"volume_size": 200.0}, {"volume_size": 200}),
        ({"max_runtime": "7200"}, {"max_runtime": 7200}),
        ({"max_runtime": "7.2e3"}, {"max_runtime": 7200.0}),
        ({"max_runtime": 4000.5}, {"max_runtime": 4000.5}),
        ({"instance_type": "ml.p3.8xlarge"}, {"instance_type": "ml.p3.8xlarge"}),
    ],
)
def test_values_are_coerced_and_defaulted(given: dict[str, Any], expected: dict[str, Any]) -> None:
    values = resolve_template_values(SCHEMA, given)
    for name, value in expected.items():
        assert values[name] == value
        assert type(values[name]) is type(value)


def test_float_variables_keep_whole_numbers_integral() -> None:
    # SageMaker's MaxRuntimeInSeconds is an integer field; 86400.0 would be refused.
    assert resolve_template_values(SCHEMA, {})["max_runtime"] == 86400
    assert isinstance(resolve_template_values(SCHEMA, {})["max_runtime"], int)


def test_floats_from_text() -> None:
    lr = {"lr": TemplateVariable(type="float")}
    assert resolve_template_values(lr, {"lr": "1e-3"}) == {"lr": 0.001}
    assert resolve_template_values(lr, {"lr": ".5"}) == {"lr": 0.5}


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("FALSE", False), (" True ", True), (False, False)]
)
def test_booleans(raw: Any, expected: bool) -> None:
    flag = {"flag": TemplateVariable(type="boolean")}
    assert resolve_template_values(flag, {"flag": raw}) == {"flag": expected}


def test_strings_accept_scalars_as_text() -> None:
    name = {"name": TemplateVariable(type="string")}
    assert resolve_template_values(name, {"name": 7}) == {"name": "7"}
    assert resolve_template_values(name, {"name": True}) == {"name": "true"}


@pytest.mark.parametrize(
    ("given", "path", "message"),
    [
        (
            {"volum_size": 3},
            "template_variables.volum_size",
            "unknown template variable (did you mean 'volume_size'?); this queue declares: "
            "instance_type, max_runtime, volume_size",
        ),
        (
            {"volume_size": "big"},
            "template_variables.volume_size",
            "'big' is not an integer (an integer from 50 to 500)",
        ),
        (
            {"volume_size": True},
            "template_variables.volume_size",
            "true is not an integer (an integer from 50 to 500)",
        ),
        (
            {"volume_size": "1.5"},
            "template_variables.volume_size",
            "'1.5' is not an integer (an integer from 50 to 500)",
        ),
        (
            {"volume_size": 10},
            "template_variables.volume_size",
            "10 is below the minimum 50 (an integer from 50 to 500)",
        ),
        (
            {"volume_size": "501"},
            "template_variables.volume_size",
            "501 is above the maximum 500 (an integer from 50 to 500)",
        ),
        (
            {"max_runtime": "forever"},
            "template_variables.max_runtime",
            "'forever' is not a number (a number from 3600 to 259200)",
        ),
        (
            {"max_runtime": "inf"},
            "template_variables.max_runtime",
            "'inf' is not a number (a number from 3600 to 259200)",
        ),
        (
            {"max_runtime": 1e9},
            "template_variables.max_runtime",
            "1000000000.0 is above the maximum 259200 (a number from 3600 to 259200)",
        ),
        (
            {"instance_type": "ml.p4d.24xlarge"},
            "template_variables.instance_type",
            "'ml.p4d.24xlarge' is not one of the allowed options: "
            "ml.p3.2xlarge, ml.p3.8xlarge, ml.p3.16xlarge",
        ),
        (
            {"instance_type": ["ml.p3.2xlarge"]},
            "template_variables.instance_type",
            "['ml.p3.2xlarge'] is not a string (a string, one of: ml.p3.2xlarge, "
            "ml.p3.8xlarge, ml.p3.16xlarge)",
        ),
    ],
)
def test_constraint_errors(given: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_template_values(SCHEMA, given)
    assert problems(caught.value) == {path: message}


def test_boolean_errors() -> None:
    flag = {"flag": TemplateVariable(type="boolean")}
    with pytest.raises(ConfigError) as caught:
        resolve_template_values(flag, {"flag": "yes"})
    assert problems(caught.value) == {
        "template_variables.flag": "'yes' is not true or false (true or false)"
    }
    with pytest.raises(ConfigError, match="1 is not true or false"):
        resolve_template_values(flag, {"flag": 1})


def test_boolean_options_do_not_match_numbers() -> None:
    count = {"count": TemplateVariable(type="float", options=[1, 2])}
    assert resolve_template_values(count, {"count": "1"}) == {"count": 1}
    with pytest.raises(ConfigError, match="is not a number"):
        resolve_template_values(count, {"count": True})


def test_missing_required_variable() -> None:
    schema = {"tag": TemplateVariable(type="string", options=["a", "b"])}
    with pytest.raises(ConfigError) as caught:
        resolve_template_values(schema, {})
    assert problems(caught.value) == {
        "template_variables.tag": (
            "required: the queue gives no default; pass --var tag=VALUE (a string, one of: a, b)"
        )
    }


def test_none_means_use_the_default() -> None:
    assert resolve_template_values(SCHEMA, {"volume_size": None})["volume_size"] == 100


def test_all_value_errors_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_template_values(
            SCHEMA, {"volume_size": "0", "max_runtime": "x", "instance_type": "y", "z": 1}
        )
    assert len(caught.value.errors) == 4


def test_a_value_may_not_reach_into_the_agent_environment() -> None:
    schema = {"name": TemplateVariable(type="string")}
    with pytest.raises(ConfigError) as caught:
        resolve_template_values(schema, {"name": "x-${AWS_SECRET_ACCESS_KEY}"})
    assert problems(caught.value) == {
        "template_variables.name": (
            "'x-${AWS_SECRET_ACCESS_KEY}' refers to the agent's environment "
            "(${AWS_SECRET_ACCESS_KEY}), which only a queue config may do; "
            "write $$ for a literal dollar sign"
        )
    }
    assert resolve_template_values(schema, {"name": "run-${run_id}-$${HOME}"}) == {
        "name": "run-${run_id}-$${HOME}"
    }


# --- substitution ---------------------------------------------------------------------


def test_whole_string_placeholders_keep_their_type() -> None:
    values = {"volume_size": 100, "lr": 0.001, "flag": True, "name": "big"}
    result = substitute(
        {
            "size": "{{volume_size}}",
            "spaced": "{{ lr }}",
            "flag": "{{flag}}",
            "text": "vol-{{volume_size}}-{{flag}}-{{ lr }}",
            "list": ["{{name}}", 1, None, "{{name}}-x"],
            "{{name}}": "keys are not substituted",
        },
        values,
    )
    assert result == {
        "size": 100,
        "spaced": 0.001,
        "flag": True,
        "text": "vol-100-true-0.001",
        "list": ["big", 1, None, "big-x"],
        "{{name}}": "keys are not substituted",
    }


def test_values_are_not_rescanned() -> None:
    assert substitute("{{a}}{{b}}", {"a": "{{b}}", "b": "x"}) == "{{b}}x"


def test_substitute_does_not_touch_its_input() -> None:
    source = {"a": ["{{x}}"]}
    result = substitute(source, {"x": 1})
    assert source == {"a": ["{{x}}"]} and result == {"a": [1]}


def test_substitute_without_a_value() -> None:
    with pytest.raises(ConfigError, match="template variable 'x' has no value"):
        substitute("{{x}}", {})


# --- macros ---------------------------------------------------------------------------

MACROS = {"run_id": "r-1", "job_id": "j-1", "queue": "gpu", "image_uri": "img@sha256:0"}


def test_macros_expand_everywhere_in_the_structure() -> None:
    job = {
        "env": {"WANDB_RUN_NAME": "arr-coc-8gpu-${run_id}", "PORT": 29500},
        "output_artifacts": [{"name": "arr-coc-checkpoint-${run_id}"}],
        "command": ["run", "--job=${job_id}", "--queue=${queue}", "--image=${image_uri}"],
    }
    assert expand_macros(job, MACROS) == {
        "env": {"WANDB_RUN_NAME": "arr-coc-8gpu-r-1", "PORT": 29500},
        "output_artifacts": [{"name": "arr-coc-checkpoint-r-1"}],
        "command": ["run", "--job=j-1", "--queue=gpu", "--image=img@sha256:0"],
    }


def test_agent_environment_references() -> None:
    env = {"KEY": "${SERVICE_ACCOUNT_KEY}", "MIX": "${HOME}/runs/${run_id}"}
    agent = {"SERVICE_ACCOUNT_KEY": "s3cr3t", "HOME": "/home/agent"}
    assert expand_macros(env, MACROS, agent) == {"KEY": "s3cr3t", "MIX": "/home/agent/runs/r-1"}
    assert expand_macros(env, MACROS) == {
        "KEY": "${SERVICE_ACCOUNT_KEY}",
        "MIX": "${HOME}/runs/r-1",
    }
    with pytest.raises(ConfigError) as caught:
        expand_macros(env, MACROS, {"HOME": "/h"})
    assert str(caught.value) == "env: ${SERVICE_ACCOUNT_KEY} is not set in the agent's environment"


def test_escapes_and_text_that_is_not_a_reference() -> None:
    agent = {"HOME": "/h", "A": "a"}
    assert expand_macros("$${HOME} $$$${HOME} $$", MACROS, agent) == "${HOME} $${HOME} $"
    assert expand_macros("$HOME ${ HOME } ${1A} ${A:-b} $", MACROS, agent) == (
        "$HOME ${ HOME } ${1A} ${A:-b} $"
    )


def test_reserved_macro_names_never_read_the_agent_environment() -> None:
    assert expand_macros("${entity}/${project}", {}, {"entity": "leak"}) == "${entity}/${project}"


def test_expanded_values_are_not_rescanned() -> None:
    assert expand_macros("${run_id}", {"run_id": "${HOME}"}, {"HOME": "/h"}) == "${HOME}"
    assert expand_macros("${A}", {}, {"A": "$${run_id}"}) == "$${run_id}"


def test_non_strings_and_keys_are_untouched() -> None:
    data = {"${run_id}": [1, 2.5, None, True]}
    assert expand_macros(data, MACROS) == data


def test_agent_env_references_ignore_macros_and_escapes() -> None:
    assert agent_env_references("${HOME} ${run_id} $${USER} ${PATH}x $NOPE") == ["HOME", "PATH"]
    assert agent_env_references("plain") == []

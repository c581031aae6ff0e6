"""W&B's macro names, and the agent-environment rule in ``resource_args`` (issue 11).

W&B expands the agent's environment in a submitter's ``resource_args``; launchplane
does not: ``${NAME}`` stays admin-only (a queue config), in ``resource_args`` as in
env/command/args, and no template value a submitter picks can become one. The
refusal is checked where users meet it too: at submit, through a real server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from launchplane.core.client import LaunchplaneClient, ValidationFailed
from launchplane.core.config import parse_resource_args, parse_set, resolve_job
from launchplane.core.config.macros import (
    MACRO_NAMES,
    agent_env_references,
    expand_macros,
    literal_text,
)
from launchplane.core.errors import ConfigError
from launchplane.server.embedded import EmbeddedServer

SECRET = "${AWS_SECRET_ACCESS_KEY}"
REFUSED = (
    "${AWS_SECRET_ACCESS_KEY} would read the agent's environment, which only a queue config "
    "may do; write $${AWS_SECRET_ACCESS_KEY} for the literal text, or ask an admin to provide "
    "it (queue env, secrets or passthrough_env)"
)
KUBERNETES: dict[str, Any] = {"resource": "kubernetes"}


def refused(*args: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        resolve_job(*args, **kwargs)
    return {error.path: error.message for error in caught.value.errors}


# --- the names ------------------------------------------------------------------------


def test_wandb_macro_names_are_macros_not_agent_references() -> None:
    assert {"project_name", "entity_name", "run_name", "author"} <= MACRO_NAMES
    text = "${project_name}/${entity_name}/${run_name}/${author}/${run_id}/${image_uri}"
    assert agent_env_references(text) == []
    # Not supplied: left as written, never read from the agent's environment.
    assert expand_macros("${author}", {}, {"author": "leak"}) == "${author}"


def test_macros_in_a_submitters_resource_args_are_fine() -> None:
    job = {
        "resource_args": {
            "kubernetes": {"metadata": {"name": "${project_name}-${run_id}", "x": "$${HOME}"}}
        }
    }
    resolved = resolve_job(KUBERNETES, job)
    assert resolved.resource_args["kubernetes"]["metadata"]["name"] == "${project_name}-${run_id}"


# --- ${NAME} in resource_args: admin only -------------------------------------------------


@pytest.mark.parametrize(
    ("layers", "path", "origin"),
    [
        (
            [{"resource_args": {"kubernetes": {"spec": {"env": [{"value": SECRET}]}}}}],
            "resource_args.kubernetes.spec.env.0.value",
            "",
        ),
        (
            [{}, parse_set(f"resource_args.kubernetes.metadata.name='{SECRET}'")],
            "resource_args.kubernetes.metadata.name",
            f" (from --set resource_args.kubernetes.metadata.name='{SECRET}')",
        ),
        (
            [{}, parse_resource_args(json.dumps({"sagemaker": {"Environment": {"K": SECRET}}}))],
            "resource_args.sagemaker.Environment.K",
            " (from --resource-args)",
        ),
    ],
)
def test_agent_references_in_a_submitters_resource_args_are_refused(
    layers: list[dict[str, Any]], path: str, origin: str
) -> None:
    problems = refused(KUBERNETES, layers[0], layers[1:])
    assert problems[path] == REFUSED + origin


def test_agent_references_in_a_queues_resource_args_are_allowed() -> None:
    queue = {**KUBERNETES, "resource_args": {"kubernetes": {"metadata": {"name": SECRET}}}}
    assert resolve_job(queue, {}).resource_args["kubernetes"]["metadata"]["name"] == SECRET


def test_a_missing_agent_variable_in_resource_args_stays_as_w_and_b_leaves_it() -> None:
    args = {"kubernetes": {"command": ["sh", "-c", "echo ${CONTAINER_VAR} ${HOME}"]}}
    assert expand_macros(args, {}, {"HOME": "/agent"}, keep_missing=True) == {
        "kubernetes": {"command": ["sh", "-c", "echo ${CONTAINER_VAR} /agent"]}
    }
    with pytest.raises(ConfigError, match=r"^command: \$\{CONTAINER_VAR\} is not set"):
        expand_macros(args["kubernetes"]["command"], {}, {}, where="command")


# --- template values never become agent references ----------------------------------------

TEMPLATED: dict[str, Any] = {
    **KUBERNETES,
    "env": {"JOINED": "{{a}}{{b}}", "WHOLE": "{{a}}"},
    "resource_args": {"kubernetes": {"metadata": {"name": "run-{{a}}"}}},
    "hyperparameters": {"note": "{{a}}"},
    "template_variables": {"a": {"default": "x"}, "b": {"default": "y"}},
}


def test_a_template_value_naming_an_agent_variable_is_refused() -> None:
    # launchplane submit --var a='${AWS_SECRET_ACCESS_KEY}'
    problems = refused(TEMPLATED, {}, [], {"a": SECRET})
    assert problems == {
        "template_variables.a": (
            "'${AWS_SECRET_ACCESS_KEY}' refers to the agent's environment "
            "(${AWS_SECRET_ACCESS_KEY}), which only a queue config may do; write $$ for a "
            "literal dollar sign"
        )
    }


def test_template_values_that_spell_a_reference_together_stay_text() -> None:
    job = resolve_job(TEMPLATED, {}, [], {"a": "$", "b": "{AWS_SECRET_ACCESS_KEY}"})
    agent = {"AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    env = expand_macros(job.env, {}, agent)
    assert env == {"JOINED": SECRET, "WHOLE": "$"}
    args = expand_macros(job.resource_args, {}, agent, keep_missing=True)
    assert args["kubernetes"]["metadata"]["name"] == "run-$"
    assert job.hyperparameters == {"note": "$"}  # not expanded by the agent: not escaped


def test_a_template_value_completing_the_queues_text_into_a_reference_is_refused() -> None:
    queue = {
        **KUBERNETES,
        "env": {"PICK": "${{{var}}}"},
        "template_variables": {"var": {"default": "HOME"}},
    }
    with pytest.raises(ConfigError) as caught:
        resolve_job(queue, {}, [], {"var": "AWS_SECRET_ACCESS_KEY"})
    assert str(caught.value) == (
        "env.PICK: the value of template variable 'var' would make ${AWS_SECRET_ACCESS_KEY} "
        "here, which reads the agent's environment - only the queue config may do that; "
        "pick another value"
    )


def test_macros_in_a_template_value_still_expand() -> None:
    job = resolve_job(TEMPLATED, {}, [], {"a": "${run_name}-$5"})
    assert expand_macros(job.env["WHOLE"], {"run_name": "r"}, {}) == "r-$5"


@pytest.mark.parametrize(
    "text",
    ["plain", "$", "$$", "${HOME}", "$${HOME}", "a$b", "${run_id}x$", "${ HOME }", "$$$"],
)
def test_literal_text_comes_back_from_expansion_as_written(text: str) -> None:
    macros = {"run_id": "${run_id}"}  # a macro expands to itself: the text comes back whole
    assert expand_macros(literal_text(text), macros, {"HOME": "/agent"}) == text


# --- at submit, through a real server ------------------------------------------------


@pytest.fixture
async def submitter(tmp_path: Path) -> AsyncIterator[LaunchplaneClient]:
    async with EmbeddedServer(data_dir=tmp_path / "data") as server:
        await server.ensure_queue("k8s", TEMPLATED)
        token = await server.create_token("submitter", name="wandb-macros")
        async with LaunchplaneClient(server.url, token, retries=0) as client:
            yield client


@pytest.mark.anyio
async def test_a_submitters_resource_args_secret_reference_is_refused_at_submit(
    submitter: LaunchplaneClient,
) -> None:
    # launch_add(resource_args=...) with a W&B launch spec as config.
    spec = {"overrides": {"entry_point": ["python", "train.py"]}, "resource": "kubernetes"}
    leak = {"resource_args": {"kubernetes": {"metadata": {"labels": {"k": SECRET}}}}}
    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job("k8s", spec, overrides=[leak])
    assert caught.value.status == 422
    assert caught.value.errors == [
        {
            "path": "resource_args.kubernetes.metadata.labels.k",
            "message": f"{REFUSED} (in override 1)",
        }
    ]
    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job("k8s", {}, template_variables={"a": SECRET})
    assert [error["path"] for error in caught.value.errors] == ["template_variables.a"]
    # The same job without the reference is queued.
    fine = {"resource_args": {"kubernetes": {"metadata": {"labels": {"k": "${author}"}}}}}
    job = await submitter.submit_job("k8s", spec, overrides=[fine])
    assert job["state"] == "queued"

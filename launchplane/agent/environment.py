"""The ``prepare`` stage's environment: what a job's process gets, and its launch-time macros.

The resolved job's ``env`` is expanded here, at launch, in one pass per value: macros
(``${run_id}``, ``${image_uri}``, W&B's ``${project_name}``, ...) and ``${NAME}`` of the
agent's environment. Only a queue config can hold ``${NAME}`` or ``null`` (inherit)
values - resolution refuses them in a submitter's layers - and admins own queue configs,
so the agent fills them here. The other expanded fields (``command``, ``args``,
``entry_point``, and ``resource_args`` of every runner, as W&B expands them) are expanded
in the job ``Runner.submit`` receives (:func:`launched_job`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from launchplane.core.config.macros import EXPANDED_FIELDS, expand_macros
from launchplane.core.interfaces import Image
from launchplane.core.spec import ResolvedJob

AGENT_CREDENTIALS = frozenset({"LAUNCHPLANE_TOKEN"})
"""The agent's own credentials: never in what a job can inherit or expand (``${NAME}``,
``null`` values, ``passthrough_env``), even when a queue config names them."""


def inheritable_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The agent's environment as jobs may draw on it: without :data:`AGENT_CREDENTIALS`."""
    return {name: value for name, value in environ.items() if name not in AGENT_CREDENTIALS}


LAUNCH_FIELDS = tuple(name for name in EXPANDED_FIELDS if name != "env")
"""Fields of the job that get their macros expanded before ``Runner.submit`` (``env`` is
expanded into ``JobContext.env`` at ``prepare``)."""


def launch_macros(
    job: ResolvedJob, *, run_id: str, job_id: str, queue: str, image: Image | None
) -> dict[str, str]:
    """``${name}`` values of one launch; ``image_uri`` is the built image, else the declared one.

    W&B's names are here too: ``project_name``, ``entity_name``, ``run_name`` (the job's
    ``name``) and ``author``; a value the job lacks is "" (W&B would write "None").
    ``run_id`` is launchplane's run id, in W&B documents as well.
    """
    declared = job.docker.image if job.docker is not None else None
    return {
        "run_id": run_id,
        "job_id": job_id,
        "queue": queue,
        "project": job.project or "",
        "entity": job.entity or "",
        "image_uri": image.ref if image is not None else (declared or ""),
        "project_name": job.project or "",
        "entity_name": job.entity or "",
        "run_name": job.name or "",
        "author": job.author or "",
    }


def job_environment(
    job: ResolvedJob,
    macros: Mapping[str, str],
    agent_env: Mapping[str, str],
    secrets: Mapping[str, str],
    launch_vars: Mapping[str, str],
) -> dict[str, str]:
    """Resolved env (expanded) + passthrough names + secret values + ``LAUNCHPLANE_*``.

    Raises ``ConfigError`` naming a ``${NAME}`` the agent's environment lacks.
    """
    declared = {name: value for name, value in job.env.items() if value is not None}
    env: dict[str, str] = expand_macros(declared, macros, agent_env)
    inherited = [*job.passthrough_env, *(n for n, v in job.env.items() if v is None)]
    for name in inherited:
        if name not in declared and name in agent_env:
            env[name] = agent_env[name]
    env.update(secrets)
    env.update(launch_vars)
    return env


def launch_variables(
    job: ResolvedJob, *, job_id: str, run_id: str, attempt: int, queue: str, output_dir: Path
) -> dict[str, str]:
    """The ``LAUNCHPLANE_*`` variables every job gets."""
    return {
        "LAUNCHPLANE_JOB_ID": job_id,
        "LAUNCHPLANE_RUN_ID": run_id,
        "LAUNCHPLANE_ATTEMPT": str(attempt),
        "LAUNCHPLANE_QUEUE": queue,
        "LAUNCHPLANE_OUTPUT_DIR": str(output_dir),
        "LAUNCHPLANE_HYPERPARAMETERS": json.dumps(job.hyperparameters, sort_keys=True),
    }


def with_built_image(
    env: dict[str, str], job: ResolvedJob, macros: Mapping[str, str], agent_env: Mapping[str, str]
) -> None:
    """Expand again, from the job's raw text, the env values that name ``${image_uri}``.

    At ``prepare`` only the declared image was known; the builder's image is
    known now. Each value is expanded from its raw form, never from an expanded
    one (a second pass would turn an escaped ``$${HOME}`` into a reference).
    """
    for name, raw in job.env.items():
        if raw is not None and "${image_uri}" in raw and name in env:
            env[name] = expand_macros(raw, macros, agent_env)


def launched_job(
    job: ResolvedJob, macros: Mapping[str, str], agent_env: Mapping[str, str]
) -> ResolvedJob:
    """The job ``Runner.submit`` receives: :data:`LAUNCH_FIELDS` expanded.

    In ``resource_args`` a ``${NAME}`` the agent's environment lacks stays as written,
    as W&B leaves it (a manifest's shell text meant for the container); elsewhere it
    is a ConfigError naming the field. Only a queue config can hold ``${NAME}`` there.
    """
    update = {
        key: expand_macros(value, macros, agent_env, where=key, keep_missing=key == "resource_args")
        for key in LAUNCH_FIELDS
        if (value := getattr(job, key))
    }
    return job.model_copy(update=update) if update else job

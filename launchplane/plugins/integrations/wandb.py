"""The W&B integration: a run gets what W&B's launch agent gives it, so ``wandb.init()`` just works.

Off unless a queue turns it on::

    integrations:
      wandb: {project: mnist, entity: acme, mode: offline}
    secrets:
      WANDB_API_KEY: env:WANDB_API_KEY   # online runs: the key, only as a queue secret

Then an unmodified training script's ``wandb.init()`` logs to the job's
``project``/``entity`` (the options are the defaults for jobs without them),
under launchplane's run id, with ``wandb.config`` equal to the job's
``hyperparameters``. The variables are the ones W&B's launch agent sets
(``LaunchProject.get_env_vars_dict`` in ``wandb/sdk/launch/_project_spec.py``),
with the same encodings; :func:`wandb_environment` lists them. As in W&B, the
values the integration sets win over the same names in the job's ``env``; it
sets a name only when it has a value for it (no ``project`` anywhere: no
``WANDB_PROJECT``, so an ``env`` value stays).

Deliberate differences from W&B's agent, each for a reason:

* ``WANDB_RUN_ID`` is launchplane's run id (``<job id>-<attempt>``), or the job's
  ``wandb_run_id`` when it sets one. A re-run attempt is a new W&B run, unless
  the job pinned ``wandb_run_id``: then attempt 2 onwards gets
  ``WANDB_RESUME=allow`` (W&B's ``_resume_count`` rule).
* ``WANDB_API_KEY`` comes only from the queue's ``secrets:`` (masked in logs),
  never from the agent's environment or its ``wandb login``: W&B's agent hands
  every run its own key. A key in plain ``env`` (a submitter's, or a queue's
  ``null`` passthrough) is refused, since ``env`` values are not masked.
  ``mode: online`` without the secret is refused at launch, before anything runs.
* ``WANDB_BASE_URL`` is the ``base_url`` option; without it the SDK's own default
  (W&B's cloud) applies and a ``WANDB_BASE_URL`` in the job's ``env`` is removed:
  either way a submitter cannot send the queue's key to another host.
* ``WANDB_DIR`` is the run's output directory where the job sees it (the host
  path on the local-process runner, ``/launchplane/output`` in a docker
  container), so an offline run's files stay in the run directory and the
  record lists them (``integrations.wandb.offline_run_dirs``). Runners whose
  output directory is not on the agent host (kubernetes, sagemaker) keep W&B's
  default (the job's working directory).
* ``WANDB_DOCKER`` is the job's declared ``docker.image`` only: the image a
  builder makes is not known yet when the environment is prepared.
* ``WANDB_LAUNCH_TRACE_ID`` is the launchplane job id (W&B: its run queue item);
  ``WANDB_LAUNCH_QUEUE_ENTITY`` is not set (launchplane queues have no entity).
* ``WANDB_ARTIFACTS`` maps the job's ``wandb-artifact://`` inputs and its
  slotted ones (W&B's ``overrides.artifacts``, ``entity/project/name``), by
  ``slot`` (else the artifact's name), to ``entity/project/name:alias``; inputs
  from the queue's own store are not W&B artifacts and are not listed.

``wandb`` itself is not imported here: the job's environment needs it, the
agent does not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from launchplane import hookimpl
from launchplane.core.config.resolve import model_errors
from launchplane.core.config.wandb_spec import chunked_variables
from launchplane.core.interfaces import JobContext, PluginError
from launchplane.core.spec import ResolvedJob
from launchplane.core.wandb_artifacts import SCHEME, is_wandb_artifact, parse_wandb_artifact
from launchplane.plugins.runners import docker

NAME = "wandb"
API_KEY = "WANDB_API_KEY"
MAX_ENV_LENGTH = 32670
"""W&B's longest environment value before ``WANDB_CONFIG`` is split into ``WANDB_CONFIG_0..n``
(``MAX_ENV_LENGTHS`` in ``wandb/sdk/launch/utils.py``)."""
MAX_ENV_LENGTHS: Mapping[str, int] = {"sagemaker": 512}
"""Runners with a shorter limit, as in W&B (its SageMaker runner: 512)."""
_CONFIG_NAME = re.compile(r"WANDB_CONFIG(_[0-9]+)?")
LOCAL_RUNNER = "local-process"
"""The runner whose job sees the agent host's paths, so ``WANDB_DIR`` can be the output dir."""
MOUNTED_OUTPUT_DIRS: Mapping[str, str] = {"docker": docker.OUTPUT_DIR}
"""Runners that mount the run's output directory into the workload: where it sees it."""


class WandbOptions(BaseModel):
    """``integrations.wandb`` of a queue config."""

    model_config = ConfigDict(extra="forbid")

    project: str | None = Field(default=None, min_length=1)
    """``WANDB_PROJECT`` for jobs that set no ``project``."""
    entity: str | None = Field(default=None, min_length=1)
    """``WANDB_ENTITY`` for jobs that set no ``entity``."""
    mode: Literal["online", "offline", "disabled"] | None = None
    """``WANDB_MODE``; unset: W&B's default (online), or the job's ``env``."""
    base_url: str | None = None
    """``WANDB_BASE_URL``: the W&B server (a self-hosted one's ``https://wandb.example.com``);
    unset: the SDK's default (W&B's cloud; which host that is depends on the wandb version)."""

    @field_validator("project", "entity")
    @classmethod
    def _one_segment(cls, value: str | None) -> str | None:
        if value is not None and ("/" in value or value != value.strip()):
            raise ValueError(f"{value!r} is not a W&B project or entity name (no '/' or spaces)")
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")) or len(value.split("//", 1)[1]) == 0:
            raise ValueError(f"{value!r} is not a URL; give https://host[:port]")
        return value.rstrip("/")


def options_of(job: ResolvedJob) -> WandbOptions | None:
    """The queue's W&B options, or None when the queue does not turn W&B on.

    Raises :class:`PluginError` with the field path for options the queue check
    did not see (a queue stored before the plugin was installed).
    """
    if NAME not in job.integrations:
        return None
    try:
        return WandbOptions.model_validate(job.integrations[NAME])
    except ValidationError as exc:
        errors = model_errors(WandbOptions, job.integrations[NAME], ("integrations", NAME))
        raise PluginError("; ".join(map(str, errors)) or str(exc)) from None


def wandb_environment(job: ResolvedJob, ctx: JobContext, options: WandbOptions) -> dict[str, str]:
    """The ``WANDB_*`` variables of one run: W&B's launch agent's names and encodings."""
    output_dir = wandb_dir(job, ctx)
    env: dict[str, str] = {
        "WANDB_LAUNCH": "True",
        "WANDB_RUN_ID": run_id(job, ctx),
        "WANDB_LAUNCH_QUEUE_NAME": ctx.queue,
        "WANDB_LAUNCH_TRACE_ID": ctx.job_id,
        "WANDB_ARTIFACTS": json.dumps(input_artifacts(job)),
    }
    optional = {
        "WANDB_BASE_URL": options.base_url,
        "WANDB_PROJECT": job.project or options.project,
        "WANDB_ENTITY": job.entity or options.entity,
        "WANDB_MODE": options.mode,
        "WANDB_NAME": job.name,
        "WANDB_USERNAME": job.author,
        "WANDB_SWEEP_ID": job.sweep_id,
        "WANDB_DOCKER": job.docker.image if job.docker is not None else None,
        "WANDB_RESUME": "allow" if job.wandb_run_id and ctx.attempt > 1 else None,
        "WANDB_DIR": output_dir[0] if output_dir else None,
    }
    env.update({name: value for name, value in optional.items() if value})
    env.update(config_variables(job.hyperparameters, MAX_ENV_LENGTHS.get(job.resource)))
    return env


def run_id(job: ResolvedJob, ctx: JobContext) -> str:
    """The W&B run id: the job's ``wandb_run_id``, else launchplane's run id."""
    return job.wandb_run_id or ctx.run_id


def wandb_dir(job: ResolvedJob, ctx: JobContext) -> tuple[str, Path] | None:
    """The run's output directory as the job sees it and on the agent host, for a runner
    that keeps it on the agent host; else None (W&B's default applies)."""
    host = ctx.env.get("LAUNCHPLANE_OUTPUT_DIR")
    if host is None:
        return None
    if job.resource == LOCAL_RUNNER:
        return host, Path(host)
    if job.resource in MOUNTED_OUTPUT_DIRS:
        return MOUNTED_OUTPUT_DIRS[job.resource], Path(host)
    return None


def config_variables(hyperparameters: Any, max_length: int | None = None) -> dict[str, str]:
    """``WANDB_CONFIG`` (JSON), or ``WANDB_CONFIG_0..n`` chunks when longer than W&B's limit.

    The SDK reads ``WANDB_CONFIG`` first and joins the chunks only without it
    (``_handle_launch_config`` in ``wandb/sdk/wandb_init.py``).
    """
    return chunked_variables(
        "WANDB_CONFIG", json.dumps(hyperparameters), max_length or MAX_ENV_LENGTH
    )


def input_artifacts(job: ResolvedJob) -> dict[str, str]:
    """The job's W&B input artifacts: slot (else name) -> ``entity/project/name:alias``."""
    found: dict[str, str] = {}
    for index, ref in enumerate(job.input_artifacts):
        name = ref.name
        if ref.slot is not None and not is_wandb_artifact(name):
            name = SCHEME + name  # W&B's overrides.artifacts: entity/project/name
        if not is_wandb_artifact(name):
            continue
        try:
            artifact = parse_wandb_artifact(name, ref.alias)
        except ValueError as exc:
            raise PluginError(f"input_artifacts[{index}]: {exc}") from None
        found[ref.slot or artifact.name] = artifact.qualified
    return found


def check_api_key(ctx: JobContext, options: WandbOptions) -> None:
    """The key only as a queue secret; ``mode: online`` needs it."""
    fix = f"give it as a queue secret: secrets: {{{API_KEY}: <reference>}} (env:{API_KEY}, ...)"
    if API_KEY in ctx.env and API_KEY not in ctx.secret_names:
        raise PluginError(
            f"integrations.wandb: {API_KEY} is set in env:, where its value is not masked "
            f"in logs; remove it from env: and {fix}"
        )
    has_key = API_KEY in ctx.env or API_KEY in ctx.native_secrets
    if options.mode == "online" and not has_key:
        raise PluginError(f"integrations.wandb: mode: online needs {API_KEY}; {fix}")


FACTS = {
    "run_id": "WANDB_RUN_ID",
    "project": "WANDB_PROJECT",
    "entity": "WANDB_ENTITY",
    "mode": "WANDB_MODE",
    "base_url": "WANDB_BASE_URL",
}
"""Record key -> the variable whose final value the record shows."""


def run_facts(run_dir: Path, root: Path | None, env: Mapping[str, str | None]) -> dict[str, Any]:
    """``integrations.wandb`` of the record: the W&B run, and its offline directories found.

    ``env`` holds the run's effective ``WANDB_*`` values (:data:`FACTS`). W&B writes
    an offline run to ``<WANDB_DIR>/wandb/offline-run-<time>-<run id>``; with
    ``root`` the ``WANDB_DIR`` the integration set, on the agent host (None: it set
    none, and no host path is searched), each one found is listed relative to the
    run directory.
    """
    found: list[str] = []
    if root is not None:
        found = sorted(
            path.relative_to(run_dir).as_posix()
            for path in (root / "wandb").glob(f"offline-run-*-{env['WANDB_RUN_ID']}")
            if path.is_dir() and path.is_relative_to(run_dir)
        )
    facts: dict[str, Any] = {key: env.get(name) for key, name in FACTS.items()}
    return {**facts, "offline_run_dirs": found}


@hookimpl
def launchplane_integration_options() -> Mapping[str, type[BaseModel] | None]:
    return {NAME: WandbOptions}


@hookimpl
def launchplane_prepare_job(job: ResolvedJob, ctx: JobContext) -> None:
    """Add the ``WANDB_*`` variables when the job's queue turns W&B on; else nothing."""
    options = options_of(job)
    if options is None:
        return
    check_api_key(ctx, options)
    variables = wandb_environment(job, ctx, options)
    # An env-given WANDB_CONFIG(_n) would be read instead of ours; an env-given server
    # would receive the queue's key.
    for name in [n for n in ctx.env if _CONFIG_NAME.fullmatch(n) or n == "WANDB_BASE_URL"]:
        del ctx.env[name]
    ctx.env.update(variables)
    seen = {name: ctx.env.get(name) for name in FACTS.values()}
    output_dir = wandb_dir(job, ctx)
    ctx.record_facts[NAME] = partial(run_facts, ctx.workdir, output_dir and output_dir[1], seen)

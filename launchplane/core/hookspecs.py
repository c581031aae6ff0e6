"""Every hook a launchplane plugin can implement.

Hooks register; they do not construct. A plugin module implements any of
these functions, decorated with ``launchplane.hookimpl``, and is found through
the ``launchplane`` entry point group (or ``--plugins``). Keep this set small:
add a hook only when a real plugin needs it. Each hook is documented for
plugin authors in ``entrypoints.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

from launchplane.core.interfaces import Builder, JobContext, Runner, SecretProvider
from launchplane.core.spec import ResolvedJob

PROJECT_NAME = "launchplane"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def launchplane_register_builders(register: Callable[[type[Builder]], None]) -> None:
    """Register builder classes: ``register(DockerBuilder)``, keyed by ``DockerBuilder.name``."""


@hookspec
def launchplane_register_runners(register: Callable[[type[Runner]], None]) -> None:
    """Register runner classes: ``register(SlurmRunner)``, keyed by ``SlurmRunner.name``."""


@hookspec
def launchplane_register_secret_providers(
    register: Callable[[type[SecretProvider]], None],
) -> None:
    """Register secret provider classes, keyed by their ``scheme`` (``vault``, ``aws-sm``...)."""


@hookspec
def launchplane_prepare_job(job: ResolvedJob, ctx: JobContext) -> None:
    """Adjust a job just before it is built and run, on the agent.

    Add environment variables or labels by mutating ``ctx.env`` / ``ctx.labels``
    (a W&B integration injects ``WANDB_*`` here). Raise ``PluginError`` to refuse
    the job; the message becomes the job's failure reason.
    """


@hookspec
def launchplane_job_event(job_id: str, state: str, details: dict[str, Any]) -> None:
    """Observe a job's state change on the agent (metrics, notifications).

    ``state`` is one of claimed, resolving, building, running, succeeded,
    failed, cancelled. An exception raised here is logged and ignored: an
    observer never breaks a launch.
    """

"""Every hook a launchplane plugin can implement.

Hooks register; they do not construct. A plugin module implements any of
these functions, decorated with ``launchplane.hookimpl``, and is found through
the ``launchplane`` entry point group (or ``--plugins``). Keep this set small:
add a hook only when a real plugin needs it. Each hook is documented for
plugin authors in ``entrypoints.md``.

The four registration hooks receive a ``register`` callable, typed
:data:`RegisterBuilder`, :data:`RegisterRunner`, :data:`RegisterSecretProvider`
and :data:`RegisterArtifactStore` (also importable from ``launchplane``), and
pass it classes, never instances. ``register()`` raises ``PluginError``, and
the whole plugin is skipped, for a class that is not a subclass of the kind's
base class, lacks its key attribute (``name``, or ``scheme``), or is still
abstract (the message names the missing methods). A name registered earlier
(built-ins load first) is kept and the later plugin fails. The registry
instantiates a class on first use, once per name and options:
``cls(options=...)`` with its validated ``options_model`` when it has one,
else ``cls()``; it calls ``aclose()`` on each instance when the agent stops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import pluggy
from pydantic import BaseModel

from launchplane.core.interfaces import ArtifactStore, Builder, JobContext, Runner, SecretProvider
from launchplane.core.spec import ResolvedJob

PROJECT_NAME = "launchplane"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

RegisterBuilder: TypeAlias = Callable[[type[Builder]], None]
"""The ``register`` argument of :func:`launchplane_register_builders`."""
RegisterRunner: TypeAlias = Callable[[type[Runner]], None]
"""The ``register`` argument of :func:`launchplane_register_runners`."""
RegisterSecretProvider: TypeAlias = Callable[[type[SecretProvider]], None]
"""The ``register`` argument of :func:`launchplane_register_secret_providers`."""
RegisterArtifactStore: TypeAlias = Callable[[type[ArtifactStore]], None]
"""The ``register`` argument of :func:`launchplane_register_artifact_stores`."""


@hookspec
def launchplane_register_builders(register: RegisterBuilder) -> None:
    """Register builder classes: ``register(BuildahBuilder)``, keyed by ``BuildahBuilder.name``.

    A queue's ``builder.type`` names the builder; ``builder.options`` are its options.
    """


@hookspec
def launchplane_register_runners(register: RegisterRunner) -> None:
    """Register runner classes: ``register(SlurmRunner)``, keyed by ``SlurmRunner.name``.

    A queue's ``resource:`` names the runner; ``resource_args.<name>`` is
    validated by its ``resource_args_model``.
    """


@hookspec
def launchplane_register_secret_providers(register: RegisterSecretProvider) -> None:
    """Register secret provider classes, keyed by their ``scheme`` (``vault``, ``aws-sm``...).

    A secret reference's scheme (``vault:kv/app#token``) names the provider; a
    queue's ``secret_providers.<scheme>`` (over the agent config's) are its options.
    """


@hookspec
def launchplane_register_artifact_stores(register: RegisterArtifactStore) -> None:
    """Register artifact store classes: ``register(GcsStore)``, keyed by ``GcsStore.name``.

    A queue's ``artifact_store.type`` names the store; ``artifact_store.options``
    are its options.
    """


@hookspec
def launchplane_prepare_job(job: ResolvedJob, ctx: JobContext) -> None:
    """Adjust a job just before it is built and run, on the agent.

    Add environment variables or labels by mutating ``ctx.env`` / ``ctx.labels``
    (a W&B integration injects ``WANDB_*`` here). Raise ``PluginError`` to refuse
    the job; the message becomes the job's failure reason.
    """


@hookspec
def launchplane_integration_options() -> Mapping[str, type[BaseModel] | None]:
    """The integrations this plugin implements: name -> the pydantic model of its options.

    A queue turns one on with ``integrations: {<name>: {options}}``; ``queue
    create``/``update`` and ``plan`` validate the options with this model (None: it
    takes none), so bad options are refused before any job is submitted. The
    plugin's ``launchplane_prepare_job`` acts only on a job whose
    ``job.integrations`` names it, and validates the options again there.
    """


@hookspec
def launchplane_job_event(job_id: str, state: str, details: dict[str, Any]) -> None:
    """Observe a job's state change on the agent (metrics, notifications).

    ``state`` is one of claimed, resolving, building, running, succeeded,
    failed, cancelled. An exception raised here is logged and ignored: an
    observer never breaks a launch.
    """

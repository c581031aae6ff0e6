"""The configuration engine: loading, layering and guarding job and queue configs.

The semantics (``docs/configuration.md`` explains them to users):

* files are YAML or JSON, loaded safely (:mod:`launchplane.core.yamlsafe`);
  ``base_config:`` names a file, relative to the including file, whose
  content the including file overrides; chains are followed, cycles refused;
* one merge rule everywhere (:func:`deep_merge`): mappings merge key by key,
  lists and scalars are replaced;
* layers: queue config < job config < runtime overrides (``--set
  path=value``, ``--resource-args JSON``, Python dicts), each in order;
* W&B spellings are normalised *before* any check (``job: {docker: ...}`` is
  ``docker:``, ``resource_args.builder`` is ``builder``), so a lock cannot be
  bypassed by spelling a key differently;
* guardrails (:func:`resolve_job`): a submitter's layers may not hold
  ``secrets``, agent-environment references (``${HOME}``) where the agent
  expands them, ``null`` env values outside the queue's ``passthrough_env``,
  env names of the deny-list, host paths and local git remotes outside the
  queue's ``guardrails``, nor change a path that the queue fills from a
  template variable or lists in ``locked``.

One concern per module, imported in this order (each only from those above it):

==============  ==========================================================
``keypath``     the path grammar (``a."b.c".d``): parse, format, walk
``merge``       the merge rule, and which layer last set each path
``macros``      ``${run_id}`` and ``${NAME}`` expansion at launch
``wandb_job``   a downloaded W&B job (directory or ``wandb-job.json``) -> a job layer
``wandb_queue`` W&B runner names, queue bodies, local-container flags, template schemas
``wandb_spec``  a W&B launch spec's keys (``overrides``, ``docker.docker_image``, ...)
``normalise``   W&B spellings to launchplane's; "not a launch config" hints
``templates``   ``{{var}}`` placeholders, typed values, substitution
``queue_check`` the check a queue config gets when it is created
``envnames``    env names a submitter may not set (the deny-list)
``host_guards`` what a submitter's layer may reach on the agent's host
``artifacts``   where input/output artifacts come from and go (store, mount, variable)
``guards``      the guardrails of a submitter's layers
``overrides``   ``--set``, ``--resource-args``, ``--var``
``files``       job and queue files, ``base_config`` chains, local workdirs
``resolve``     :func:`resolve_job`, composing all of the above
==============  ==========================================================

This package never imports PyYAML itself: the agent and the server resolve
jobs that arrive as JSON, and importing the YAML loader cost every agent
~15-20 ms of start-up. The loader's names below are imported on first use.
"""

from __future__ import annotations

from typing import Any

from launchplane.core.config.files import load_job_file, load_queue_file, resolve_local_workdir
from launchplane.core.config.keypath import PathKey as PathKey  # public, not in __all__
from launchplane.core.config.keypath import format_path, parse_path
from launchplane.core.config.merge import deep_merge
from launchplane.core.config.normalise import canonical_path as canonical_path  # likewise
from launchplane.core.config.normalise import normalise_layer
from launchplane.core.config.overrides import (
    Layer,
    command_line_layers,
    parse_resource_args,
    parse_set,
    parse_var,
)
from launchplane.core.config.resolve import resolve_job

_YAMLSAFE_NAMES = frozenset(
    {"DEFAULT_LIMITS", "Limits", "dump_document", "format_size", "load_document"}
)


def __getattr__(name: str) -> Any:
    """``config.load_document`` / ``config.dump_document`` (re-exported) without an eager import."""
    if name in _YAMLSAFE_NAMES:
        from launchplane.core import yamlsafe

        return getattr(yamlsafe, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Layer",
    "command_line_layers",
    "deep_merge",
    "dump_document",
    "format_path",
    "load_document",
    "load_job_file",
    "load_queue_file",
    "normalise_layer",
    "parse_path",
    "parse_resource_args",
    "parse_set",
    "parse_var",
    "resolve_job",
    "resolve_local_workdir",
]

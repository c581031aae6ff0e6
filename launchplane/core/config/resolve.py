"""The one final job: queue config < job config < overrides, guarded and templated.

:func:`resolve_job` is what the server runs at submit (and ``plan`` on a
submitter's machine): it composes the other modules of this package -
normalisation, guardrails, template values, the merge - and validates the
result as a :class:`~launchplane.core.spec.ResolvedJob`, then with the
runner's own ``resource_args`` model when that runner is installed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from launchplane.core.config.artifacts import artifact_errors
from launchplane.core.config.guards import (
    Guard,
    guard_tree,
    null_env_errors,
    submitter_layer,
    track_nulls,
)
from launchplane.core.config.keypath import PathKey, format_path
from launchplane.core.config.merge import merge_into, merge_tracked
from launchplane.core.config.queue_check import inspect_queue_config
from launchplane.core.config.templates import resolve_template_values, split_words, substitute
from launchplane.core.errors import (
    ConfigError,
    FieldError,
    from_validation_error,
    join_path,
    without_runner_label,
)
from launchplane.core.interfaces import PluginError, admin_only_fields
from launchplane.core.spec import QUEUE_ONLY_KEYS, QueueConfig, ResolvedJob


@dataclass
class _Queue:
    """What resolution needs from a queue config, computed once per call."""

    config: QueueConfig
    job_defaults: dict[str, Any]
    guards: Guard
    passthrough: frozenset[str]


def resolve_job(
    queue_config: QueueConfig | Mapping[str, Any],
    job: Mapping[str, Any],
    overrides: Sequence[Mapping[str, Any]] = (),
    variables: Mapping[str, Any] | None = None,
    *,
    queue_name: str | None = None,
    resource_args_model: type[BaseModel] | None = None,
    trusted: bool = False,
) -> ResolvedJob:
    """The one final job: queue config < job < overrides, guarded and templated.

    Stage 1 checks what the submitter sent - each layer's shape, the
    guardrails, the template variable values (``job["template_variables"]``,
    then those of each override layer, then ``variables``; later wins).
    Stage 2 substitutes the values into the queue config, merges the layers,
    validates the result as a :class:`ResolvedJob` and, when given, validates
    ``resource_args[<resource>]`` with ``resource_args_model`` (the queue's
    runner's :attr:`~launchplane.core.interfaces.Runner.resource_args_model`),
    whose fields also suggest the key meant by a misspelt one. Unless ``trusted``
    (an admin's own submission), each layer's env names, workdir and git remote
    must be ones the queue's ``guardrails`` allow (:mod:`.host_guards`). A failing stage
    raises one ConfigError that lists every problem of that stage; a problem
    with a value an override layer set says so (``(from --set a.b=1)``).

    The result still holds ``${run_id}``-style macros and, in ``env``,
    ``${NAME}`` references and ``null`` values from the queue config; the
    agent expands them at launch (:func:`~launchplane.core.config.macros.expand_macros`).
    """
    queue = _compile_queue(queue_config)
    layers: list[tuple[dict[str, Any], str | None]] = []
    errors: list[FieldError] = []
    given: dict[str, Any] = {}
    nulls: dict[str, str | None] = {}
    admin_only = admin_only_fields(resource_args_model) if resource_args_model else frozenset()
    for index, raw in enumerate([job, *overrides]):
        origin = None if index == 0 else _origin(raw, index)
        rules = None if trusted else queue.config.guardrails
        layer = submitter_layer(raw, queue.guards, origin, errors, rules)
        errors += _admin_only_errors(layer, queue.config.resource, admin_only, origin)
        tv = layer.pop("template_variables", None)
        if isinstance(tv, Mapping):
            given.update(tv)
        track_nulls(layer.get("env"), origin, nulls)
        layers.append((layer, origin))
    errors += null_env_errors(nulls, queue.passthrough)
    given.update(variables or {})
    try:
        values = resolve_template_values(queue.config.template_variables, given)
    except ConfigError as exc:
        errors += exc.errors
    if errors:
        raise ConfigError(errors)
    merged = substitute(queue.job_defaults, values)
    origins: dict[PathKey, str] = {}
    for layer, origin in layers:
        if origin is None:
            merge_into(merged, layer)
        else:
            merge_tracked(merged, layer, origin, origins)
    merged.update(
        resource=queue.config.resource,
        secrets=dict(queue.config.secrets),
        secret_providers=dict(queue.config.secret_providers),
        artifact_store=queue.config.artifact_store,
        integrations={name: dict(options) for name, options in queue.config.integrations.items()},
        passthrough_env=list(queue.config.passthrough_env),
        template_values=values,
    )
    if queue_name is not None:
        merged["queue"] = queue_name
    return _validate_resolved(merged, resource_args_model, origins)


def _admin_only_errors(
    layer: Mapping[str, Any], runner: str, admin_only: frozenset[str], origin: str | None
) -> list[FieldError]:
    """A submitter's layer may not set the runner's fields that reach the agent's host.

    Checked per layer, whatever the spelling (W&B's ``local-container`` flags arrive here
    as ``resource_args.docker`` fields): only the queue config may mount host paths,
    pick the host's network or the OCI runtime (fields marked ``ADMIN_ONLY``).
    """
    if not admin_only:
        return []
    resource_args = layer.get("resource_args")
    args = resource_args.get(runner) if isinstance(resource_args, Mapping) else None
    if not isinstance(args, Mapping):
        return []
    suffix = f" ({origin})" if origin else ""
    return [
        FieldError(
            format_path(("resource_args", runner, str(key))),
            "reaches the agent's host, so only the queue config (an admin) may set it; "
            "ask an admin to set it on the queue" + suffix,
            None,
            origin,
        )
        for key in args
        if key in admin_only
    ]


def resource_args_errors(
    resolved: ResolvedJob, resource_args_model: type[BaseModel]
) -> list[FieldError]:
    """The problems ``resource_args_model`` finds in ``resource_args[<resource>]``.

    Each at its full path (``resource_args.docker.memory``); see :func:`model_errors`.
    """
    runner = resolved.resource
    return model_errors(
        resource_args_model,
        resolved.resource_args.get(runner, {}),
        ("resource_args", runner),
        runner=runner,
    )


def model_errors(
    model: type[BaseModel],
    value: Any,
    path: PathKey,
    *,
    runner: str | None = None,
    judged: Callable[[Any], bool] | None = None,
) -> list[FieldError]:
    """What a plugin's model (``resource_args_model``, ``options_model``) says of ``value``.

    Each problem at its full path below ``path``, an unknown key with the
    closest field of the model. A validator of the model may raise
    ``ConfigError`` (its paths are taken as relative to ``value``) or
    ``PluginError`` as well as ``ValueError``. The path names the runner, so
    a message of ``runner`` that starts ``runner 'NAME': `` loses that label.
    ``judged(item)`` keeps only some of pydantic's error items (e.g. not the
    missing fields of a partial layer).
    """
    prefix = format_path(path)

    def at(error_path: str) -> str:
        return f"{prefix}.{error_path}" if error_path else prefix

    try:
        model.model_validate(value)
    except ValidationError as exc:
        errors = from_validation_error(exc, model=model, keep=judged)
    except ConfigError as exc:
        errors = exc.errors
    except PluginError as exc:
        errors = [FieldError("", str(exc))]
    else:
        return []
    if runner is not None:
        errors = [FieldError(e.path, without_runner_label(runner, e.message)) for e in errors]
    return [FieldError(at(e.path), e.message) for e in errors]


def _origin(layer: Any, index: int) -> str:
    """``from --set a.b=1`` for a labelled :class:`~.overrides.Layer`, else ``in override 2``."""
    label = getattr(layer, "origin", None)
    return f"from {label}" if label else f"in override {index}"


def _compile_queue(queue_config: QueueConfig | Mapping[str, Any]) -> _Queue:
    """Check the queue config and build the tree of paths its submitters may not change.

    Compiled once per distinct config (by its JSON text), not once per job: the
    server resolves every submit against one of a few queue versions, and the
    check was two fifths of a resolution. A config JSON cannot hold exactly
    (tuples, non-string keys) is compiled each time.
    """
    raw = (
        queue_config.model_dump(exclude_unset=True)
        if isinstance(queue_config, QueueConfig)
        else queue_config
    )
    try:
        text = json.dumps(raw)
    except (TypeError, ValueError):
        return _compile(raw)
    if json.loads(text) != raw:
        return _compile(raw)
    return _compiled(text)


@functools.lru_cache(maxsize=256)
def _compiled(text: str) -> _Queue:
    """The compiled queue of a config's JSON text: from a private copy, never shared
    with a caller who could change it (nothing that reads a ``_Queue`` mutates it)."""
    return _compile(json.loads(text))


def _compile(raw: Mapping[str, Any]) -> _Queue:
    try:
        checked = inspect_queue_config(raw)
    except ConfigError as exc:
        raise ConfigError(exc.errors, source="queue config") from None
    job_defaults = {k: v for k, v in checked.data.items() if k not in QUEUE_ONLY_KEYS}
    split_words(job_defaults)  # a template value stays one argv word
    return _Queue(
        checked.config,
        job_defaults,
        guard_tree(checked),
        frozenset(checked.config.passthrough_env),
    )


def _validate_resolved(
    merged: dict[str, Any],
    resource_args_model: type[BaseModel] | None,
    origins: Mapping[PathKey, str],
) -> ResolvedJob:
    try:
        resolved = ResolvedJob.model_validate(merged)
    except ValidationError as exc:
        errors = from_validation_error(exc, model=ResolvedJob)
        raise ConfigError(_labelled(errors, origins)) from None
    errors = _resource_key_errors(resolved) + artifact_errors(resolved)
    if resource_args_model is not None:
        errors += resource_args_errors(resolved, resource_args_model)
    if errors:
        raise ConfigError(_labelled(errors, origins))
    return resolved


def _labelled(errors: list[FieldError], origins: Mapping[PathKey, str]) -> list[FieldError]:
    """Each error at a path an override layer set, with that layer named (``(from --set ...)``)."""
    if not origins:
        return errors
    # Paths as from_validation_error spells them; an error at or below one was caused by it.
    spelled = {join_path(*path): origin for path, origin in origins.items()}
    result = []
    for error in errors:
        matches = [p for p in spelled if error.path == p or error.path.startswith(p + ".")]
        if not matches:
            result.append(error)
            continue
        origin = spelled[max(matches, key=len)]
        result.append(FieldError(error.path, f"{error.message} ({origin})", error.line, origin))
    return result


def _resource_key_errors(resolved: ResolvedJob) -> list[FieldError]:
    """``resource_args.Kubernetes`` on a kubernetes queue is a typo the runner would ignore."""

    def canon(name: str) -> str:
        return name.lower().replace("-", "").replace("_", "")

    return [
        FieldError(
            format_path(("resource_args", key)),
            f"this queue runs '{resolved.resource}'; did you mean "
            f"resource_args.{resolved.resource}? (keys are case-sensitive)",
        )
        for key in resolved.resource_args
        if key != resolved.resource and canon(key) == canon(resolved.resource)
    ]

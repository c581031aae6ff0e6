"""The guardrails of a submitter's layers (the job config and each override).

A queue config is the admin's; a submitter's layers may not hold
``secrets``, queue settings, ``${NAME}`` references to the agent's
environment where the agent expands them (``resource_args`` included),
``null`` env values outside the queue's ``passthrough_env``, nor change a
path that the queue fills from a template variable or lists in ``locked``
(locking any one of ``command``, ``entry_point`` or ``args`` locks what runs:
both ``command`` and ``entry_point``, and containers' own ``command``/``args``
in ``resource_args``), nor reach the agent's host beyond the queue's
``guardrails`` (:mod:`.host_guards`: env names, workdir, git remote).
A ``resource`` (W&B launch specs carry one) may only name the queue's own
runner: the queue decides it. The protected paths form a tree
(:class:`Guard`), built once per queue config; each layer is checked against
it after normalisation, so no spelling gets around a lock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from launchplane.core.config.host_guards import container_program_errors, host_errors
from launchplane.core.config.keypath import PathKey, format_path, parse_path, strings
from launchplane.core.config.macros import EXPANDED_FIELDS, agent_env_references
from launchplane.core.config.normalise import normalise_layer, with_not_a_launch_config_hint
from launchplane.core.config.queue_check import CheckedQueue
from launchplane.core.config.wandb_queue import WANDB_RUNNERS
from launchplane.core.config.wandb_spec import as_written
from launchplane.core.errors import FieldError, from_validation_error, kind_of
from launchplane.core.spec import QUEUE_ONLY_KEYS, Guardrails, JobSpec


@dataclass
class Guard:
    """A node of the tree of paths a submitter may not change."""

    children: dict[str | int, Guard] = field(default_factory=dict)
    reason: str | None = None
    """Why this exact path is protected (None: only something below it is)."""
    mergeable: bool = True
    """The queue holds a mapping (or nothing) here, so a mapping merges instead of replacing."""
    runner: str | None = None
    """At the root: the queue's runner, the one ``resource`` a submitter's layer may name."""

    def first_protected(self, path: PathKey) -> tuple[PathKey, str]:
        """A protected path below this node (at ``path``) and why: for "replacing" errors."""
        node, found = self, path
        while node.reason is None:
            key, node = next(iter(node.children.items()))
            found = (*found, key)
        assert node.reason is not None
        return found, node.reason


def guard_tree(checked: CheckedQueue) -> Guard:
    """The paths of a checked queue config that its submitters may not change."""
    data = checked.data
    root = Guard(runner=checked.config.resource)
    # A valid config has placeholders in job fields only, so all of them are protected.
    for path, names in checked.placeholders.items():
        variables = ", ".join(f"'{name}'" for name in sorted(names))
        hint = " ".join(f"--var {name}=..." for name in sorted(names))
        noun = "template variable" if len(names) == 1 else "template variables"
        _protect(
            root, path, data, f"is set by the queue from {noun} {variables}; pass {hint} instead"
        )
    for entry in checked.config.locked:
        _protect(
            root,
            parse_path(entry),
            data,
            "is locked by the queue config; only an admin can change it",
        )
    _protect_patch(root, data)
    _protect_program(root, data)
    return root


_PROGRAM = ("command", "entry_point")
"""Either one chooses the program a job runs (``command`` wins when both are set)."""
_RUNS = (*_PROGRAM, "args")
"""What runs: locking any one of these fixes the program (:func:`fixes_program`)."""


def _protect_program(root: Guard, data: Mapping[str, Any]) -> None:
    """Locking any one of ``command``, ``entry_point`` or ``args`` locks what runs.

    Where the queue fixes one of them (locked or templated, in whole or in
    part), ``command`` and ``entry_point`` are fixed too: else a submitter's
    ``command`` would run instead of the queue's ``entry_point``, or run the
    queue's locked ``args`` as arguments of the submitter's own program.
    ``args`` stay free when only the program is fixed: they are its arguments.
    """
    fixed = [key for key in _RUNS if key in root.children]
    if not fixed:
        return
    for other in _PROGRAM:
        if other not in root.children:
            _protect(
                root,
                (other,),
                data,
                f"would change the program the job runs, which the queue fixes in {fixed[0]}; "
                "only an admin can change it",
            )


def fixes_program(guards: Guard) -> bool:
    """Whether the queue fixes what a job runs (see :func:`_protect_program`)."""
    return any(key in guards.children for key in _RUNS)


_PINNED_CODE = ("repository", "branch", "commit")


def _protect_patch(root: Guard, data: Mapping[str, Any]) -> None:
    """A patch is code: where the queue pins ``git.commit`` (or the repository or branch),
    a submitter may not add a ``git.patch`` that changes what that commit runs."""
    git = root.children.get("git")
    if git is None or "patch" in git.children:
        return
    pinned = [key for key in _PINNED_CODE if key in git.children]
    if pinned:
        where = ", ".join(f"git.{key}" for key in pinned)
        _protect(
            root,
            ("git", "patch"),
            data,
            f"would change the code the queue pins ({where}); only an admin can patch it",
        )


def _protect(root: Guard, path: PathKey, data: Mapping[str, Any], reason: str) -> None:
    """Add ``path`` to the guard tree, noting along it where the queue holds a mapping."""
    node, value = root, data
    for key in path:
        value = _child(value, key)
        node = node.children.setdefault(key, Guard())
        node.mergeable = value is None or isinstance(value, Mapping)
    if node.reason is None:
        node.reason = reason


def _child(value: Any, key: str | int) -> Any:
    """``value[key]`` for a mapping key or list index; None when there is no such child."""
    if isinstance(value, Mapping):
        return value.get(key)
    if isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
        return value[key]
    return None


def submitter_layer(
    raw: Any,
    guards: Guard,
    origin: str | None,
    errors: list[FieldError],
    rules: Guardrails | None = None,
) -> dict[str, Any]:
    """Normalise one job or override layer and append every problem with it to ``errors``.

    ``origin`` names an override layer (``from --set a=1``) in its errors; None
    for the job config. ``rules`` are the queue's ``guardrails`` of what a
    submitter may reach on the agent's host (:func:`~.host_guards.host_errors`);
    None for an admin's own submission. The result keeps ``template_variables``
    (values, in a job).
    """
    suffix = f" ({origin})" if origin else ""
    if not isinstance(raw, Mapping):
        errors.append(
            FieldError(
                "", f"a job or override must be a mapping, not {kind_of(raw)}{suffix}", None, origin
            )
        )
        return {}
    spelled: dict[str, str] = {}
    layer, problems = normalise_layer(raw, spelled=spelled)
    problems += _resource_errors(layer, guards.runner)
    problems += _queue_only_keys(layer)
    if layer.get("base_config") is not None:
        problems.append(
            FieldError(
                "base_config",
                "is read by the file loader (launchplane submit/plan); it cannot be resolved here",
            )
        )
    # template_variables is a queue-only key, but in a job it carries values.
    shape = {
        k: v for k, v in layer.items() if k not in QUEUE_ONLY_KEYS or k == "template_variables"
    }
    checked: list[FieldError] = _shape_errors(shape) + _reference_errors(layer)
    _check_guards(layer, guards, (), checked)
    if rules is not None and not problems and not checked:
        # On a layer that is otherwise valid: a malformed one gets its own errors first.
        checked += host_errors(layer, rules)
    if fixes_program(guards):
        checked += container_program_errors(layer)
    problems += as_written(checked, spelled)
    errors += [FieldError(p.path, p.message + suffix, p.line, origin) for p in problems]
    return {k: v for k, v in shape.items() if k != "base_config"}


def _queue_only_keys(layer: Mapping[str, Any]) -> list[FieldError]:
    errors = []
    for key in layer:
        if key == "secrets":
            errors.append(
                FieldError(
                    "secrets",
                    "secrets belong to the queue config, which only admins can change; "
                    "ask an admin to add them there (the job gets them as env variables)",
                )
            )
        elif key in QUEUE_ONLY_KEYS and key not in ("template_variables", "resource"):
            errors.append(FieldError(key, "is a queue setting that only an admin can change"))
    return errors


def _resource_errors(layer: Mapping[str, Any], runner: str | None) -> list[FieldError]:
    """A ``resource`` that names the queue's runner (W&B specs carry one) is fine; else refused.

    Null is dropped by normalisation; W&B's runner names are launchplane's by
    then (``local-container`` is ``docker``).
    """
    if "resource" not in layer or layer["resource"] == runner:
        return []
    asked = layer["resource"]
    shown = f"'{asked}'" if isinstance(asked, str) else kind_of(asked)
    wandb_names = {ours: theirs for theirs, ours in WANDB_RUNNERS.items() if ours != theirs}
    if asked in wandb_names:
        shown += f" (W&B's {wandb_names[asked]})"
    here = f"this queue runs '{runner}', not {shown}" if runner else f"not {shown}"
    return [
        FieldError("resource", f"the queue decides the runner; submit to another queue ({here})")
    ]


def _shape_errors(layer: Mapping[str, Any]) -> list[FieldError]:
    """JobSpec errors of a partial layer: wrong keys and types, not missing fields.

    A layer may set only ``git.commit`` and inherit ``git.repository`` from
    the queue; required fields are checked on the resolved job.
    """
    try:
        JobSpec.model_validate(layer)
    except ValidationError as exc:
        errors = from_validation_error(
            exc, model=JobSpec, keep=lambda item: item["type"] != "missing"
        )
        return with_not_a_launch_config_hint(errors, layer)
    return []


def track_nulls(env: Any, origin: str | None, nulls: dict[str, str | None]) -> None:
    """Follow which env names the submitter's layers leave ``null``, and which layer did it.

    Checked on the result of all submitter layers, not per layer: a job's
    ``CUDA_HOME:`` that ``--set env.CUDA_HOME=/usr/cuda`` fills is fine.
    """
    if not isinstance(env, Mapping):
        return
    for name, value in env.items():
        if value is None:
            nulls[str(name)] = origin
        else:
            nulls.pop(str(name), None)


def null_env_errors(
    nulls: Mapping[str, str | None], passthrough: frozenset[str]
) -> list[FieldError]:
    """``null`` env values are allowed only for the queue's passthrough names."""
    allowed = ", ".join(sorted(passthrough)) or "none"
    return [
        FieldError(
            format_path(("env", name)),
            "null (inherit from the agent) is allowed only for names in the queue's "
            f"passthrough_env (here: {allowed}); give a value, or ask an admin to add "
            f"{name} to passthrough_env" + (f" ({origin})" if origin else ""),
            None,
            origin,
        )
        for name, origin in nulls.items()
        if name not in passthrough
    ]


def _may_refer(value: Any) -> bool:
    """Whether ``value`` may hold a ``${...}`` at all: one C-speed scan of its JSON text,
    so a large ``resource_args`` without one is not walked string by string."""
    try:
        return "${" in json.dumps(value)
    except (TypeError, ValueError):
        return True


def _reference_errors(layer: Mapping[str, Any]) -> list[FieldError]:
    """``${NAME}`` of the agent's environment, wherever the agent expands it, is admin-only."""
    errors = []
    for key in EXPANDED_FIELDS:
        value = layer.get(key)
        if value is None or not _may_refer(value):
            continue
        for path, text in strings(value, (key,)):
            errors += [
                FieldError(
                    format_path(path),
                    f"${{{name}}} would read the agent's environment, which only a queue config "
                    f"may do; write $${{{name}}} for the literal text, or ask an admin to provide "
                    "it (queue env, secrets or passthrough_env)",
                )
                for name in agent_env_references(text)
            ]
    return errors


def _check_guards(
    value: Mapping[str, Any], node: Guard, path: PathKey, errors: list[FieldError]
) -> None:
    """Refuse setting a protected path, anything under it, or replacing a parent of it."""
    for key, child_value in value.items():
        child = node.children.get(key)
        if child is None:
            continue
        child_path = (*path, key)
        if child.reason is not None:
            errors.append(FieldError(format_path(child_path), child.reason))
        elif isinstance(child_value, Mapping) and child.mergeable:
            _check_guards(child_value, child, child_path, errors)
        else:
            protected, reason = child.first_protected(child_path)
            errors.append(
                FieldError(
                    format_path(child_path),
                    f"replacing this would change {format_path(protected)}, which {reason}",
                )
            )

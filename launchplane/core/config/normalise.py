"""Two dialects, one spelling: W&B Launch forms rewritten to launchplane's before any check.

``job: {git|artifact|docker: ...}`` moves to the top level,
``resource_args.builder`` to ``builder``, and a W&B launch spec's keys
(``overrides``, ``docker.docker_image``, ``git.repo``, ``uri``, ...) to
launchplane's (:mod:`launchplane.core.config.wandb_spec`); ``locked:``
entries get the same rewrite, so a guardrail cannot be dodged by spelling a
key the W&B way. Also here: the hint for a document that is not a launch
config at all (a sweep config, a conda environment file).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from launchplane.core.config.keypath import PathKey, format_path, parse_path
from launchplane.core.config.wandb_queue import canonical_runner_path, normalise_runner_args
from launchplane.core.config.wandb_spec import translate_launch_spec, wandb_paths
from launchplane.core.errors import ConfigError, FieldError, suggest

JOB_SOURCE_KEYS = ("git", "artifact", "docker")
"""What W&B's ``job:`` mapping may hold; launchplane keeps them at the top level."""

_NOT_LAUNCH_CONFIGS: tuple[tuple[frozenset[str], str], ...] = (
    (
        frozenset({"method", "parameters"}),
        "this looks like a W&B sweep config (method/metric/parameters), not a launch config; "
        "a sweep controller submits one job per run - give launchplane those job configs",
    ),
    (
        frozenset({"scheduler", "parameters"}),
        "this looks like a W&B sweep-on-launch config (wandb launch-sweep: scheduler/"
        "parameters), not a launch config; a sweep controller submits one job per run - "
        "give launchplane those job configs",
    ),
    (
        frozenset({"channels", "dependencies"}),
        "this looks like a conda environment file, not a launch config; install it in the "
        "job's image (builder) and give launchplane a job config",
    ),
)


def normalise_layer(
    raw: Mapping[str, Any], *, queue: bool = False, spelled: dict[str, str] | None = None
) -> tuple[dict[str, Any], list[FieldError]]:
    """Rewrite W&B spellings to launchplane's; return the layer and any conflicts.

    ``job: {git|artifact|docker: ...}`` moves to the top level,
    ``resource_args.builder`` to ``builder``, W&B launch-spec keys to
    launchplane's (:func:`~.wandb_spec.translate_launch_spec`); setting the
    same thing both ways is an error. In a queue config, ``locked`` entries
    get the same rewrite (``job.docker.image`` and ``docker.docker_image``
    lock ``docker.image``). The input is not modified. ``spelled`` receives
    the W&B path behind each translated launchplane path
    (:func:`~.wandb_spec.as_written`).
    """
    data = dict(raw)
    errors: list[FieldError] = []
    job = data.get("job")
    if isinstance(job, Mapping):
        del data["job"]
        for key, value in job.items():
            path = format_path(("job", str(key)))
            if key not in JOB_SOURCE_KEYS:
                errors.append(
                    FieldError(
                        path,
                        f"unknown key{suggest(str(key), JOB_SOURCE_KEYS)}; job: as a mapping "
                        "holds the code source: git, artifact or docker",
                    )
                )
            elif key in data:
                errors.append(_twice(path, key))
            else:
                data[key] = value
    resource_args = data.get("resource_args")
    if isinstance(resource_args, Mapping) and "builder" in resource_args:
        resource_args = dict(resource_args)
        builder = resource_args.pop("builder")
        data["resource_args"] = resource_args
        if "builder" in data:
            errors.append(_twice("resource_args.builder", "builder"))
        else:
            data["builder"] = builder
    # W&B's runner spellings (local-container flags, resource_args.<runner>.builder),
    # then the launch spec's keys (overrides, docker.docker_image, git.repo, uri, ...).
    normalise_runner_args(data, errors, queue=queue)
    translate_launch_spec(data, errors, queue=queue, spelled=spelled)
    if queue and isinstance(data.get("locked"), list):
        data["locked"] = _canonical_locked(data["locked"], errors)
    return data, errors


def canonical_path(path: PathKey) -> PathKey:
    """The launchplane spelling of a path written the W&B way (``job.docker.image``).

    For a W&B path that names two things (``git.version``), the first of
    :func:`canonical_paths`.
    """
    return canonical_paths(path)[0]


def canonical_paths(path: PathKey) -> list[PathKey]:
    """Every launchplane path a path written the W&B way stands for (one, mostly)."""
    if len(path) > 1 and path[0] == "job" and path[1] in JOB_SOURCE_KEYS:
        path = path[1:]
    if path[:2] == ("resource_args", "builder"):
        path = ("builder", *path[2:])
    return wandb_paths(path) or [canonical_runner_path(path)]


def with_not_a_launch_config_hint(
    errors: list[FieldError], layer: Mapping[str, Any]
) -> list[FieldError]:
    """Say, once, what the document looks like when it is not a launch config at all."""
    for signature, hint in _NOT_LAUNCH_CONFIGS:
        if not signature <= set(layer):
            continue
        for index, error in enumerate(errors):
            if error.path in signature:
                errors[index] = FieldError(error.path, f"{error.message}; {hint}", error.line)
                return errors
    return errors


def _twice(path: str, key: str) -> FieldError:
    return FieldError(path, f"also set as top-level '{key}'; set it once, as top-level '{key}'")


def _canonical_locked(entries: list[Any], errors: list[FieldError]) -> list[Any]:
    result: list[Any] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, str):
            result.append(entry)  # the model reports the type
            continue
        try:
            path = parse_path(entry, where=f"locked.{index}")
        except ConfigError as exc:
            errors.extend(exc.errors)
            continue
        result += [format_path(canonical) for canonical in canonical_paths(path)]
    return result

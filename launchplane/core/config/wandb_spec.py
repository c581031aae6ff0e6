"""W&B launch specs in launchplane's spelling, before any guardrail sees them.

A W&B launch spec - ``wandb launch -c spec.json``, ``launch_add(config=...)``,
the run spec W&B stores for a queued run - names a job's parts its own way.
:func:`translate_launch_spec` rewrites them into launchplane's fields, so
every check after it (shape, locks, templated paths, the agent-environment
rule) sees one spelling and a lock cannot be dodged by writing the W&B one:

==============================  ==============================================
W&B                             launchplane
==============================  ==============================================
``overrides.run_config``        ``hyperparameters`` (key by key)
``overrides.args``              ``args``
``overrides.entry_point``       ``entry_point``
``overrides.artifacts``         ``input_artifacts`` entries with ``slot``
``overrides.files``             env ``WANDB_LAUNCH_FILE_OVERRIDES`` (the JSON
                                text W&B gives the run, ``$`` kept literal)
``overrides.dockerfile``        ``docker.dockerfile``
``overrides.working_dir``       ``workdir``
``docker.docker_image``         ``docker.image``
``image_uri``                   ``docker.image``
``git.repo``                    ``git.repository``
``git.version``                 ``git.commit`` (7 to 40 hex digits), else
                                ``git.branch`` (a branch or a tag)
``uri``                         ``git.repository`` (a git URL) or ``workdir``
                                (a local path); a W&B run URL is refused
``run_id``                      ``wandb_run_id`` (launchplane's ``${run_id}``
                                stays its own)
``resource``                    dropped when null or the queue's runner (after
                                :data:`~.wandb_queue.WANDB_RUNNERS`); any other runner
                                is refused by the guardrails, naming both
==============================  ==============================================

``name``, ``author``, ``sweep_id``, ``priority``, ``template_variables``,
``builder``, ``resource_args``, ``entity``, ``project`` and ``job`` are
launchplane fields already. Setting one thing both ways (``docker.image``
and ``docker.docker_image``) is an error that names both, unless the values
agree. Keys of W&B's other documents written in a job's top level (a
Kubernetes manifest's ``namespace``, SageMaker's ``ResourceConfig``, a
``docker run`` flag) get a hint saying where they belong instead of a
misleading "did you mean" (``namespace`` is not ``name``).

Pure functions on plain data; the input is never modified.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from launchplane.core.config.keypath import PathKey, format_path
from launchplane.core.config.wandb_queue import runner_name
from launchplane.core.errors import FieldError, kind_of, suggest
from launchplane.core.spec import JobSpec, QueueConfig

OVERRIDE_KEYS = (
    "args",
    "run_config",
    "entry_point",
    "artifacts",
    "files",
    "dockerfile",
    "working_dir",
)
"""What W&B's ``overrides`` mapping holds."""

FILE_OVERRIDES_ENV = "WANDB_LAUNCH_FILE_OVERRIDES"
"""The variable W&B gives a run its ``overrides.files`` in (``wandb.sdk.launch.inputs``)."""


def chunked_variables(name: str, text: str, limit: int) -> dict[str, str]:
    """``{name: text}``, or ``name_0..n`` chunks of ``limit`` characters when it is longer.

    W&B's encoding for a value over a runner's limit (SageMaker: 512 per value):
    its SDK reads ``name`` first and joins the chunks only without it
    (``_inject_wandb_config_env_vars`` / ``_inject_file_overrides_env_vars`` in
    ``wandb/sdk/launch/_project_spec.py``, and their readers).
    """
    if len(text) <= limit:
        return {name: text}
    return {f"{name}_{i // limit}": text[i : i + limit] for i in range(0, len(text), limit)}


_COMMIT_RE = re.compile(r"[0-9a-fA-F]{7,40}")
_WANDB_GIT_HOST_RE = re.compile(r"git|bitbucket|dev\.azure\.com|\.visualstudio\.com")
"""What W&B's ``_is_git_uri`` looks for in a URI (after a first character that is not a
path's ``/``, ``~`` or ``.``)."""
_WANDB_RUN_URL_RE = re.compile(
    r"https?://(?:(?:api\.)?wandb\.[^/]*/|[^/]+/[^/]+/[^/]+/runs/[^/?#]+)", re.IGNORECASE
)
_SCHEME_RE = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://")
_SCP_LIKE_RE = re.compile(r"[\w.-]+@[\w.-]+:")

_FIELDS = frozenset(JobSpec.model_fields) | frozenset(QueueConfig.model_fields)

_K8S = "a Kubernetes manifest key: put it under resource_args.kubernetes"
_SAGEMAKER = "a SageMaker CreateTrainingJob key: put it under resource_args.sagemaker"
_VERTEX = "a Vertex AI body key: put it under resource_args.gcp-vertex"
_DOCKER_FLAG = "a docker run flag (W&B's local-container): put it under resource_args.docker"
_RUNNER_BODY_HINTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "apiVersion",
            "kind",
            "metadata",
            "namespace",
            "template",
            "containers",
            "initContainers",
            "nodeSelector",
            "tolerations",
            "affinity",
            "volumes",
            "serviceAccountName",
            "imagePullSecrets",
            "backoffLimit",
            "ttlSecondsAfterFinished",
            "activeDeadlineSeconds",
            "restartPolicy",
            "priorityClassName",
            "labels",
            "annotations",
        ),
        _K8S,
    ),
    "spec": (
        "a Kubernetes manifest or Vertex AI body key: put it under resource_args.kubernetes "
        "(or resource_args.gcp-vertex)"
    ),
    "run": _VERTEX,
    **dict.fromkeys(
        (
            "AlgorithmSpecification",
            "RoleArn",
            "role_arn",
            "ResourceConfig",
            "StoppingCondition",
            "OutputDataConfig",
            "InputDataConfig",
            "HyperParameters",
            "TrainingJobName",
            "VpcConfig",
            "Tags",
            "Environment",
            "EnableNetworkIsolation",
            "EnableManagedSpotTraining",
            "EnableInterContainerTrafficEncryption",
            "CheckpointConfig",
            "RetryStrategy",
            "EcrRepoName",
        ),
        _SAGEMAKER,
    ),
    **dict.fromkeys(
        ("gpus", "volume", "memory", "shm-size", "shm_size", "cpus", "network", "ulimit"),
        _DOCKER_FLAG,
    ),
}
"""Keys of W&B's runner bodies (queue configs), which a job holds under ``resource_args``."""

_HINTS: dict[str, str] = {
    **_RUNNER_BODY_HINTS,
    "docker_image": "an image: write docker: {image: ...} (W&B: docker.docker_image)",
    "image": "an image: write docker: {image: ...} (W&B: docker.docker_image or image_uri)",
    "dockerfile": "write docker: {dockerfile: ...} (W&B: overrides.dockerfile)",
    "repo": "a git key: write git: {repository: ...} (W&B: git.repo)",
    "repository": "a git key: write git: {repository: ...} (W&B: git.repo)",
    "version": "a git key: write git: {commit: ...} or git: {branch: ...} (W&B: git.version)",
    "commit": "a git key: write git: {commit: ...} (W&B: git.version)",
    "branch": "a git key: write git: {branch: ...} (W&B: git.version)",
    "run_config": "the run's config: write hyperparameters: {...} (W&B: overrides.run_config)",
    "config": "the run's config: write hyperparameters: {...} (W&B: overrides.run_config)",
    "parameters": (
        "the run's config is hyperparameters: {...} (W&B: overrides.run_config); "
        "sweep parameters belong to a W&B sweep config"
    ),
    "artifacts": (
        "input artifacts: write input_artifacts: [...] or overrides: {artifacts: {slot: name}}"
    ),
    "files": "W&B's file overrides: write overrides: {files: {...}}",
    "working_dir": "write workdir: ... (W&B: overrides.working_dir)",
    "docker_args": (
        "W&B's legacy docker_args (W&B ignores them): docker run flags go under "
        "resource_args.docker (W&B: resource_args.local-container)"
    ),
    "run_name": "the run's name: write name: ...",
    "queue_name": "write queue: ...",
    "_wandb_api_key": (
        "a W&B API key cannot travel in a job: an admin puts WANDB_API_KEY in the queue's secrets"
    ),
    "_resume_count": "set by W&B's server for a resumed run; launchplane counts attempts itself",
    "python_version": (
        "W&B's build Python version: launchplane's builder takes Python from the image "
        "(builder.base_image)"
    ),
    "additional_services": (
        "W&B's Kubernetes additional_services are not supported: launchplane runs one "
        "workload per job"
    ),
}
"""Where a W&B key that is not a launchplane field belongs, for a key found at the top level."""


def translate_launch_spec(
    data: dict[str, Any],
    errors: list[FieldError],
    *,
    queue: bool,
    spelled: dict[str, str] | None = None,
) -> None:
    """Rewrite the W&B launch-spec keys of one layer (``data``, a copy) into launchplane's.

    Appends a problem per key that cannot be translated, naming the key as the
    user wrote it and the fix. Nested mappings of ``data`` may be shared with
    the caller's input: they are copied before they change. A queue config
    (``queue``) keeps its ``resource`` (it is the queue's runner) and gets
    ``--type`` in the hint for a runner body written at its top level.
    ``spelled`` receives, for each launchplane path set from a W&B key, the
    path the user wrote (``docker.image`` -> ``image_uri``), so a later
    check's error can name it (:func:`as_written`).
    """
    _translate(_Translation(data, errors, {} if spelled is None else spelled), queue=queue)


def as_written(errors: list[FieldError], spelled: Mapping[str, str]) -> list[FieldError]:
    """``errors`` at a path a W&B key set say so: ``... (written as docker.docker_image)``."""
    if not spelled:
        return errors
    result = []
    for error in errors:
        found = [p for p in spelled if error.path == p or error.path.startswith(p + ".")]
        if found:
            where = spelled[max(found, key=len)]
            error = FieldError(
                error.path, f"{error.message} (written as {where})", error.line, error.origin
            )
        result.append(error)
    return result


@dataclass
class _Translation:
    """One layer being translated: the data (a copy), its problems, what was moved where."""

    data: dict[str, Any]
    errors: list[FieldError]
    spelled: dict[str, str]
    """launchplane path -> the W&B path the user wrote (:func:`as_written`)."""


def _translate(t: _Translation, *, queue: bool) -> None:
    data, errors = t.data, t.errors
    _hint_misplaced(data, errors, queue=queue)
    overrides = data.pop("overrides", None)
    if isinstance(overrides, Mapping):
        _translate_overrides(t, overrides)
    elif overrides is not None:
        errors.append(
            FieldError(
                "overrides",
                f"must be a mapping of W&B overrides ({', '.join(OVERRIDE_KEYS)}), "
                f"not {kind_of(overrides)}",
            )
        )
    _translate_docker(t)
    _translate_git(t)
    if "uri" in data:
        _translate_uri(t, data.pop("uri"))
    if "run_id" in data:
        _put(t, ("wandb_run_id",), data.pop("run_id"), "run_id")
    if not queue and "resource" in data:
        resource = data.pop("resource")
        if resource is not None:
            data["resource"] = runner_name(resource) if isinstance(resource, str) else resource
    _hint_resource_args_keys(data, errors)
    for key in ("git", "docker"):
        if data.get(key) == {}:
            del data[key]  # W&B writes git: {} and docker: {} when a spec has neither


def wandb_paths(path: PathKey) -> list[PathKey] | None:
    """launchplane's paths for a W&B path (a ``locked`` entry), or None if it is not one.

    ``git.version`` and ``uri`` each name two things, so they lock both.
    """
    head, rest = (path[0], path[1:]) if path else (None, ())
    if head == "overrides" and rest:
        target = {
            "run_config": ("hyperparameters",),
            "args": ("args",),
            "entry_point": ("entry_point",),
            "artifacts": ("input_artifacts",),
            "files": ("env", FILE_OVERRIDES_ENV),
            "dockerfile": ("docker", "dockerfile"),
            "working_dir": ("workdir",),
        }.get(str(rest[0]))
        if target is None:
            return None
        return [(*target, *rest[1:])] if rest[0] == "run_config" else [target]
    if head == "overrides":
        return [
            ("hyperparameters",),
            ("args",),
            ("entry_point",),
            ("input_artifacts",),
            ("env", FILE_OVERRIDES_ENV),
            ("docker", "dockerfile"),
            ("workdir",),
        ]
    if head == "image_uri" or path == ("docker", "docker_image"):
        return [("docker", "image")]
    if path == ("git", "repo"):
        return [("git", "repository")]
    if path == ("git", "version"):
        return [("git", "commit"), ("git", "branch")]
    if path == ("uri",):
        return [("git", "repository"), ("workdir",)]
    if path == ("run_id",):
        return [("wandb_run_id",)]
    return None


# --- the translations -------------------------------------------------------------------


def _translate_overrides(t: _Translation, overrides: Mapping[str, Any]) -> None:
    errors = t.errors
    for key, value in overrides.items():
        where = format_path(("overrides", str(key)))
        if value is None or (key in ("args", "entry_point") and value in ([], "")):
            continue  # W&B overrides only with a non-empty list: [] keeps the job's
        if key == "run_config":
            _merge_run_config(t, value)
        elif key == "args":
            if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
                errors.append(FieldError(where, "must be a list of strings (the run's arguments)"))
            else:
                _put(t, ("args",), value, where)
        elif key == "entry_point":
            if isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(a, str) for a in value)
            ):
                _put(t, ("entry_point",), value, where)
            else:
                errors.append(
                    FieldError(where, "must be a list of strings (the command: [python, x.py])")
                )
        elif key == "artifacts":
            _add_artifacts(t, value)
        elif key == "files":
            if not isinstance(value, Mapping):
                errors.append(
                    FieldError(where, "must be a mapping of file names to their overrides")
                )
                continue
            # The agent expands ${...} in env: doubled, every $ reaches the run as written.
            text = json.dumps(value).replace("$", "$$")
            _put(t, ("env", FILE_OVERRIDES_ENV), text, where)
        elif key == "dockerfile":
            _put_text(t, ("docker", "dockerfile"), value, where)
        elif key == "working_dir":
            _put_text(t, ("workdir",), value, where)
        else:
            errors.append(
                FieldError(
                    where,
                    f"unknown key{suggest(str(key), OVERRIDE_KEYS)}; W&B's overrides hold: "
                    + ", ".join(OVERRIDE_KEYS),
                )
            )


def _merge_run_config(t: _Translation, value: Any) -> None:
    data, errors = t.data, t.errors
    if not isinstance(value, Mapping):
        errors.append(
            FieldError(
                "overrides.run_config", f"must be a mapping (the run config), not {kind_of(value)}"
            )
        )
        return
    current = data.get("hyperparameters")
    if current is not None and not isinstance(current, Mapping):
        return  # the model reports hyperparameters' type; nothing to merge into
    merged = dict(current or {})
    for key, item in value.items():
        if key in merged and merged[key] != item:
            errors.append(
                _twice(
                    format_path(("overrides", "run_config", str(key))),
                    format_path(("hyperparameters", str(key))),
                )
            )
        else:
            merged[key] = item
            t.spelled[format_path(("hyperparameters", str(key)))] = format_path(
                ("overrides", "run_config", str(key))
            )
    data["hyperparameters"] = merged


def _add_artifacts(t: _Translation, value: Any) -> None:
    data, errors = t.data, t.errors
    if not isinstance(value, Mapping):
        errors.append(
            FieldError(
                "overrides.artifacts",
                "must map artifact slots to artifact names, e.g. {dataset: entity/project/data:v3}",
            )
        )
        return
    current = data.get("input_artifacts")
    if current is not None and not isinstance(current, list):
        return  # the model reports input_artifacts' type
    artifacts = list(current or [])
    taken = {a.get("slot") for a in artifacts if isinstance(a, Mapping)}
    for slot, name in value.items():
        where = format_path(("overrides", "artifacts", str(slot)))
        if isinstance(name, str):
            entry: dict[str, Any] = {"name": name, "slot": str(slot)}
        elif isinstance(name, Mapping) and "name" in name:
            entry = {**name, "slot": str(slot)}
        else:
            errors.append(
                FieldError(
                    where,
                    f"must be an artifact name (entity/project/name:alias), not {kind_of(name)}",
                )
            )
            continue
        if slot in taken:
            errors.append(FieldError(where, "also set in input_artifacts (slot); set it once"))
            continue
        t.spelled[format_path(("input_artifacts", len(artifacts)))] = where
        artifacts.append(entry)
    data["input_artifacts"] = artifacts


def _translate_docker(t: _Translation) -> None:
    data, errors = t.data, t.errors
    docker = data.get("docker")
    image_uri = data.pop("image_uri", None)
    if isinstance(docker, Mapping) and ("docker_image" in docker or "user_id" in docker):
        docker = dict(docker)
        data["docker"] = docker
        if "user_id" in docker:
            del docker["user_id"]
            errors.append(
                FieldError(
                    "docker.user_id",
                    "W&B's uid for the user of a built image has no launchplane equivalent: "
                    "the image (builder.base_image) decides its user; remove it",
                )
            )
        if "docker_image" in docker:
            image = docker.pop("docker_image")
            _put_text(t, ("docker", "image"), image, "docker.docker_image")
    if image_uri is not None:
        _put_text(t, ("docker", "image"), image_uri, "image_uri")


def _translate_git(t: _Translation) -> None:
    data, errors = t.data, t.errors
    git = data.get("git")
    if not isinstance(git, Mapping) or not ({"repo", "version"} & set(git)):
        return
    git = dict(git)
    repo, version = git.pop("repo", None), git.pop("version", None)
    data["git"] = git
    _put_text(t, ("git", "repository"), repo, "git.repo")
    if version is None:
        return
    if not isinstance(version, str):
        errors.append(
            FieldError("git.version", f"must be a branch, tag or commit, not {kind_of(version)}")
        )
        return
    target = "commit" if _COMMIT_RE.fullmatch(version) else "branch"
    _put(t, ("git", target), version, "git.version")


def _translate_uri(t: _Translation, uri: Any) -> None:
    """W&B's ``uri``: a git repository, a local directory, or (refused) a W&B run."""
    errors = t.errors
    if uri is None:
        return
    if not isinstance(uri, str) or not uri.strip():
        errors.append(FieldError("uri", "must be a git repository URL or a local directory"))
        return
    uri = uri.strip()
    scheme = _SCHEME_RE.match(uri)
    if _WANDB_RUN_URL_RE.match(uri):
        reason = (
            "a W&B run URL: launchplane does not fetch a run's code from W&B; launch the "
            "run's job instead (job: entity/project/name:alias) or give its git repository "
            "(git.repository)"
        )
    elif uri.startswith("placeholder"):
        reason = (
            "W&B's sweep-scheduler placeholder: launchplane does not run W&B sweep schedulers; "
            "submit one job per sweep run (sweep_id: ...)"
        )
    elif _SCP_LIKE_RE.match(uri) or (
        scheme is not None
        and (
            scheme[1].lower() in ("ssh", "git", "file")
            or uri.endswith(".git")
            or _WANDB_GIT_HOST_RE.search(uri[len(scheme[0]) :])
        )
    ):
        _put(t, ("git", "repository"), uri, "uri")
        return
    elif scheme is not None:
        reason = (
            "not a git repository URL (W&B takes github, gitlab, bitbucket or Azure DevOps "
            "URLs, or one ending in .git) nor a local directory"
        )
    elif "." in uri.split("/", 1)[0] and "/" in uri and _WANDB_GIT_HOST_RE.search(uri):
        reason = f"a git host without a scheme: write it as a URL, e.g. https://{uri}"
    else:
        _put(t, ("workdir",), uri, "uri")
        return
    errors.append(FieldError("uri", reason))


# --- hints ------------------------------------------------------------------------------


def _hint_misplaced(data: dict[str, Any], errors: list[FieldError], *, queue: bool) -> None:
    """Take out the top-level keys that are W&B's but belong elsewhere, saying where."""
    for key in [k for k in data if k not in _FIELDS and k in _HINTS]:
        if key == "parameters" and ({"method", "scheduler"} & set(data)):
            continue  # a sweep config: normalise's "not a launch config" hint says so
        hint = _HINTS[key]
        if queue and key in _RUNNER_BODY_HINTS:
            hint += " (or create the queue from the body with --type RUNNER -f body.yaml)"
        errors.append(FieldError(key, hint))
        del data[key]


def _hint_resource_args_keys(data: dict[str, Any], errors: list[FieldError]) -> None:
    """``resource_args`` is keyed by runner: a manifest key right under it is misplaced."""
    resource_args = data.get("resource_args")
    if not isinstance(resource_args, Mapping):
        return
    misplaced = [k for k in resource_args if k in _RUNNER_BODY_HINTS]
    if not misplaced:
        return
    data["resource_args"] = {k: v for k, v in resource_args.items() if k not in misplaced}
    for key in misplaced:
        errors.append(
            FieldError(
                format_path(("resource_args", key)),
                f"resource_args is keyed by runner; this is {_RUNNER_BODY_HINTS[key]}",
            )
        )


# --- moving values ----------------------------------------------------------------------


def _put_text(t: _Translation, target: PathKey, value: Any, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        t.errors.append(FieldError(where, f"must be a string, not {kind_of(value)}"))
        return
    _put(t, target, value, where)


def _put(t: _Translation, target: PathKey, value: Any, where: str) -> None:
    """Set ``target`` to the value the user wrote at ``where``; both set (differently): an error."""
    node, errors = t.data, t.errors
    for depth, key in enumerate(target[:-1], start=1):
        child = node.get(key)
        if child is None:
            child = {}
        elif not isinstance(child, Mapping):
            errors.append(_twice(where, format_path(target[:depth])))
            return
        node[key] = child = dict(child)
        node = child
    last = target[-1]
    if last in node and node[last] is not None and node[last] != value:
        errors.append(_twice(where, format_path(target)))
        return
    node[last] = value
    t.spelled[format_path(target)] = where


def _twice(where: str, launchplane: str) -> FieldError:
    return FieldError(
        where, f"also set as {launchplane}, which is the same thing; set it once, as {launchplane}"
    )

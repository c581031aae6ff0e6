"""W&B Launch queue configs in launchplane's spelling: runner names, bodies, flags, variables.

W&B stores a queue as a runner type plus one body for that runner (a
Kubernetes manifest, a SageMaker ``CreateTrainingJob`` request, a Vertex
``{spec, run}``, ``docker run`` flags for ``local-container``), sometimes
wrapped as ``{"resource_args": {type: body}}``, and its template variables
as JSON schemas. This module rewrites all of that to a launchplane queue
config before any check runs, so a guardrail sees one spelling:

* :data:`WANDB_RUNNERS`: W&B's runner names -> launchplane's
  (``local-container`` is the ``docker`` runner);
* ``resource_args.<runner>.builder`` (W&B's place for
  ``accelerator.base_image``, legacy ``cuda.base_image``) is the top-level
  ``builder``, not a runner argument;
* ``resource_args.local-container``: ``docker run`` flags, named like W&B
  names them (``--shm-size``, ``shm_size``, ``e``), become
  ``resource_args.docker`` fields. A submitter (job, overrides) gets W&B's
  allow-list of resource-shaping flags; a queue config (an admin's) also the
  flags that change what the container can reach (``volume``, ``network``,
  ``user``, ...). A bare ``env`` name (``-e NAME``: pass the agent's value
  through) is the queue's ``passthrough_env``, and refused to a submitter;
* W&B template-variable declarations (``{schema: {type: number, minimum}}``,
  or the list ``[{name, schema}]`` W&B's API returns) become launchplane's
  ``{type: float, min}``.

Pure functions: no I/O, nothing beyond the standard library and the spec.
Errors name the key the user wrote, in W&B's stored-form path
(``resource_args.local-container.privileged``), and say what to do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from launchplane.core.config.keypath import PathKey, format_path
from launchplane.core.errors import ConfigError, FieldError, kind_of, suggest

WANDB_RUNNERS: Mapping[str, str] = {
    "local-process": "local-process",
    "local-container": "docker",
    "kubernetes": "kubernetes",
    "sagemaker": "sagemaker",
    "gcp-vertex": "gcp-vertex",
}
"""W&B's runner (resource) names -> launchplane's runner names: the one table."""

RESOURCE_ARGS_ALIASES: Mapping[str, str] = {"vertex": "gcp-vertex"}
"""``resource_args`` keys W&B reads for a runner besides its type name: W&B's Vertex
runner reads ``resource_args.vertex`` first, then ``resource_args.gcp-vertex``."""

LOCAL_CONTAINER = "local-container"
DOCKER = WANDB_RUNNERS[LOCAL_CONTAINER]


def runner_name(name: str) -> str:
    """launchplane's name of a runner W&B calls ``name``; any other name unchanged."""
    return WANDB_RUNNERS.get(name, name)


# --- local-container: docker run flags ---------------------------------------------------


@dataclass(frozen=True)
class _Flag:
    """How one ``docker run`` flag maps onto the docker runner's ``resource_args``."""

    field: str | None
    """The docker runner's field; None: accepted and needs nothing (``rm``)."""
    admin: bool = False
    """Only a queue config may set it: it changes what the container can reach."""
    repeatable: bool = False
    """May be given as a list (``env: [A=1, B=2]``), like a repeated flag."""
    boolean: bool = False
    """A switch (``rm: true``) rather than a flag with a value."""


_FLAGS: Mapping[str, _Flag] = {
    # W&B's allow-list for submitters (utils.py _DOCKER_ALLOWED_RESOURCE_ARGS).
    "env": _Flag("env", repeatable=True),
    "gpus": _Flag("gpus"),
    "memory": _Flag("memory"),
    "memory-reservation": _Flag("memory_reservation"),
    "memory-swap": _Flag("memory_swap"),
    "shm-size": _Flag("shm_size"),
    "cpus": _Flag("cpus"),
    "cpu-shares": _Flag("cpu_shares"),
    "cpu-period": _Flag("cpu_period"),
    "cpu-quota": _Flag("cpu_quota"),
    "cpuset-cpus": _Flag("cpuset_cpus"),
    "cpuset-mems": _Flag("cpuset_mems"),
    "pids-limit": _Flag("pids_limit"),
    "platform": _Flag("platform"),
    "ulimit": _Flag("ulimits", repeatable=True),
    "workdir": _Flag("workdir"),
    # A queue config's (admin) flags besides those.
    "volume": _Flag("volumes", admin=True, repeatable=True),
    "network": _Flag("network", admin=True),
    "user": _Flag("user", admin=True),
    "label": _Flag("labels", admin=True, repeatable=True),
    "runtime": _Flag("runtime", admin=True),
    "add-host": _Flag("extra_hosts", admin=True, repeatable=True),
    "init": _Flag("init", admin=True, boolean=True),
    "rm": _Flag(None, admin=True, boolean=True),
}

_ALIASES: Mapping[str, str] = {
    "e": "env",
    "m": "memory",
    "w": "workdir",
    "c": "cpu-shares",
    "v": "volume",
    "net": "network",
    "u": "user",
    "l": "label",
    # W&B allows "cpu", which docker run does not know (it fails at launch); the count
    # of CPUs is what every W&B example means by it.
    "cpu": "cpus",
}

_REFUSED: Mapping[str, str] = {
    "command": "docker run has no --command flag (W&B passes it on and docker refuses it); "
    "set the job's entry_point or command",
    "name": "launchplane names the container lp-<run id> so a restarted agent finds it "
    "again; use label (queue config) to tag it",
}

SUBMITTER_FLAGS = frozenset(
    [name for name, flag in _FLAGS.items() if not flag.admin]
    + [alias for alias, name in _ALIASES.items() if not _FLAGS[name].admin]
)
"""The ``docker run`` flags a job or override may use (W&B's allow-list, less refused ones)."""

QUEUE_FLAGS = frozenset([*_FLAGS, *_ALIASES])
"""The ``docker run`` flags a queue config may use."""


def docker_flag_name(raw: Any) -> str:
    """A flag as W&B compares it: ``--Shm_Size`` -> ``shm-size``."""
    return str(raw).strip().lstrip("-").replace("_", "-").lower()


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def local_container_args(
    body: Any, *, queue: bool, path: PathKey = ("resource_args", LOCAL_CONTAINER)
) -> tuple[dict[str, Any], list[str], list[FieldError]]:
    """``docker run`` flags -> (``resource_args.docker``, passthrough names, errors).

    ``queue`` says whose layer it is: an admin's queue config may use
    :data:`QUEUE_FLAGS` and bare ``env`` names (passed through from the
    agent: the second item); anyone else only :data:`SUBMITTER_FLAGS` and
    ``NAME=value``. Each flag takes one value (a string or a number),
    ``env``/``ulimit``/``volume``/``label``/``add-host`` also a list, ``rm``/``init``
    a boolean.
    """
    where = format_path(path)
    if not isinstance(body, Mapping):
        message = f"must be a mapping of docker run flags (e.g. {{gpus: all}}), not {kind_of(body)}"
        return {}, [], [FieldError(where, message)]
    args: dict[str, Any] = {}
    passthrough: list[str] = []
    errors: list[FieldError] = []
    given: dict[str, str] = {}
    for raw, value in body.items():
        at = format_path((*path, str(raw)))
        name = docker_flag_name(raw)
        canonical = _ALIASES.get(name, name)
        flag = _FLAGS.get(canonical)
        if name in _REFUSED:
            errors.append(FieldError(at, f"'{name}': {_REFUSED[name]}"))
            continue
        allowed = QUEUE_FLAGS if queue else SUBMITTER_FLAGS
        if flag is None:
            errors.append(
                FieldError(
                    at,
                    f"unsupported docker run flag '{name}'{suggest(name, allowed)}; "
                    f"supported: {', '.join(sorted(allowed))}",
                )
            )
            continue
        if flag.admin and not queue:
            errors.append(
                FieldError(
                    at,
                    f"docker run flag '{name}' changes what the container can reach: only the "
                    "queue config (an admin) may set it; a job may use: "
                    + ", ".join(sorted(SUBMITTER_FLAGS)),
                )
            )
            continue
        if canonical in given:
            errors.append(
                FieldError(at, f"also given as '{given[canonical]}'; give each flag once")
            )
            continue
        given[canonical] = str(raw)
        problem = _value_problem(name, flag, value)
        if problem:
            errors.append(FieldError(at, problem))
            continue
        if flag.field is None:
            continue
        if canonical == "env":
            if env := _env(value, at, queue, passthrough, errors):
                args["env"] = env
        elif canonical == "label":
            args["labels"] = dict(_pairs(value, "="))
        elif flag.repeatable:
            args[flag.field] = [str(item) for item in _items(value)]
        else:
            # A switch written without a value (``init:``) is on, as ``--init`` is.
            args[flag.field] = True if flag.boolean and value is None else value
    return args, passthrough, errors


def _value_problem(name: str, flag: _Flag, value: Any) -> str | None:
    if flag.boolean:
        if value is None or isinstance(value, bool):
            return None
        return f"'{name}' is a switch: true or false, not {kind_of(value)}"
    if flag.repeatable and isinstance(value, list | tuple):
        if not value:
            return f"'{name}' needs a value; leave it out for none"
        if all(_scalar(item) for item in value):
            return None
        return f"'{name}' takes a list of strings or numbers"
    if _scalar(value):
        return None
    hint = " or a list of them" if flag.repeatable else ""
    return f"'{name}' takes one string or number{hint}, not {kind_of(value)}"


def _items(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _pairs(value: Any, sep: str) -> list[tuple[str, str]]:
    return [(key, text) for key, _, text in (str(item).partition(sep) for item in _items(value))]


def _env(
    value: Any, at: str, queue: bool, passthrough: list[str], errors: list[FieldError]
) -> dict[str, str]:
    """``[NAME=value, NAME]`` -> ``{NAME: value}``; a bare NAME passes the agent's through."""
    env: dict[str, str] = {}
    for index, item in enumerate(_items(value)):
        name, sep, text = str(item).partition("=")
        if not name:
            errors.append(FieldError(f"{at}.{index}", f"{item!r} is not NAME=value or NAME"))
        elif not sep and "{{" in name:
            # W&B substitutes "-e {{var}}" and lets the value name an agent variable: no.
            errors.append(
                FieldError(
                    f"{at}.{index}",
                    f"{name!r}: a template variable cannot choose which of the agent's "
                    "variables the container gets; write NAME={{var}} (the variable gives "
                    "the value), or list the agent variable's name itself",
                )
            )
        elif sep:
            env[name] = text
        elif queue:
            passthrough.append(name)
        else:
            errors.append(
                FieldError(
                    f"{at}.{index}",
                    f"'{name}' without a value reads the agent's environment, which only a "
                    f"queue config may do; write {name}=VALUE, or ask an admin to pass "
                    f"{name} through (the queue's passthrough_env)",
                )
            )
    return env


# --- a layer's resource_args (called by normalise_layer) ---------------------------------


def normalise_runner_args(data: dict[str, Any], errors: list[FieldError], *, queue: bool) -> None:
    """Rewrite a layer's W&B runner spellings in place; append conflicts to ``errors``.

    ``data`` is normalise_layer's copy of the layer; nested mappings are
    copied before they change. ``resource_args.local-container`` becomes
    ``resource_args.docker`` (see :func:`local_container_args`),
    ``resource_args.vertex`` becomes ``resource_args.gcp-vertex``, each
    ``resource_args.<runner>.builder`` block joins the top-level ``builder``,
    and in a queue config ``resource: local-container`` names ``docker``.
    """
    if queue and isinstance(data.get("resource"), str):
        data["resource"] = runner_name(data["resource"])
    resource_args = data.get("resource_args")
    if not isinstance(resource_args, Mapping):
        return
    result: dict[str, Any] = {}
    for key, body in resource_args.items():
        if isinstance(body, Mapping) and "builder" in body:
            body = dict(body)
            block = body.pop("builder")
            _join_builder(data, block, ("resource_args", key, "builder"), errors)
        if key in RESOURCE_ARGS_ALIASES:
            name = RESOURCE_ARGS_ALIASES[key]
            if name in resource_args:
                errors.append(_named_twice(key, name))
                continue
            key = name
        if key != LOCAL_CONTAINER:
            result[key] = body
            continue
        if DOCKER in resource_args:
            errors.append(_named_twice(key, DOCKER))
            continue
        args, passthrough, problems = local_container_args(body, queue=queue)
        errors += problems
        result[DOCKER] = args
        if passthrough:
            names = data.get("passthrough_env")
            names = list(names) if isinstance(names, list) else []
            data["passthrough_env"] = names + [n for n in passthrough if n not in names]
    data["resource_args"] = result


def _named_twice(wandb_key: str, name: str) -> FieldError:
    return FieldError(
        format_path(("resource_args", wandb_key)),
        f"W&B's name for resource_args.{name}, which is also set; set one",
    )


_BUILDER_KEYS = ("type", "base_image", "accelerator", "options")
"""launchplane's builder keys (spec.BuilderSpec), which a W&B builder block may also hold."""

_ACCELERATOR_KEYS = ("accelerator", "cuda")
"""Where W&B reads the accelerator base image from, in its order (``cuda`` is legacy)."""


def _join_builder(
    data: dict[str, Any], block: Any, path: PathKey, errors: list[FieldError]
) -> None:
    """Merge one ``resource_args.<runner>.builder`` block into the layer's ``builder``."""
    where = format_path(path)
    if not isinstance(block, Mapping):
        errors.append(
            FieldError(
                where,
                "must be a mapping, e.g. builder: {accelerator: {base_image: IMAGE}}, "
                f"not {kind_of(block)}",
            )
        )
        return
    if all(key in block for key in _ACCELERATOR_KEYS):
        errors.append(
            FieldError(
                f"{where}.cuda", "also set as accelerator (cuda is its legacy name); set one"
            )
        )
    translated: dict[str, Any] = {}
    for key, value in block.items():
        if key in _ACCELERATOR_KEYS:
            translated.setdefault("accelerator", value)
        elif key in _BUILDER_KEYS:
            translated[key] = value
        else:
            known = (*_BUILDER_KEYS, "cuda")
            errors.append(
                FieldError(
                    f"{where}.{key}",
                    f"unknown builder key{suggest(str(key), known)}; W&B's builder block holds "
                    "accelerator.base_image (legacy: cuda.base_image)",
                )
            )
    builder = data.get("builder")
    if not translated:
        return
    if builder is None:
        data["builder"] = translated
        return
    if not isinstance(builder, Mapping):
        errors.append(FieldError(where, "also set as top-level 'builder'; set it once there"))
        return
    merged = dict(builder)
    for key, value in translated.items():
        current = merged.get(key)
        if key not in merged:
            merged[key] = value
        elif isinstance(current, Mapping) and isinstance(value, Mapping):
            twice = sorted(set(current) & set(value))
            if twice:
                shown = ", ".join(f"builder.{key}.{name}" for name in twice)
                errors.append(FieldError(f"{where}.{key}", f"also set as {shown}; set it once"))
            merged[key] = {**current, **value}
        else:
            errors.append(FieldError(f"{where}.{key}", f"also set as builder.{key}; set it once"))
    data["builder"] = merged


def canonical_runner_path(path: PathKey) -> PathKey:
    """The launchplane spelling of a ``resource_args`` path written the W&B way.

    ``resource_args.kubernetes.builder.cuda.base_image`` ->
    ``builder.accelerator.base_image``; ``resource_args.local-container.shm_size``
    -> ``resource_args.docker.shm_size`` (for ``locked:`` entries).
    """
    if len(path) < 2 or path[0] != "resource_args":
        return path
    if len(path) == 2:
        return ("resource_args", DOCKER) if path[1] == LOCAL_CONTAINER else path
    if path[2] == "builder":
        rest = path[3:]
        if rest and rest[0] == "cuda":
            rest = ("accelerator", *rest[1:])
        return ("builder", *rest)
    if path[1] != LOCAL_CONTAINER:
        return path
    name = docker_flag_name(path[2])
    flag = _FLAGS.get(_ALIASES.get(name, name))
    if flag is None or flag.field is None:
        return ("resource_args", DOCKER, *path[2:])  # the model reports the unknown key
    return ("resource_args", DOCKER, flag.field, *path[3:])


# --- a queue body as W&B stores it ---------------------------------------------------------


def unwrap_stored_form(resource_type: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The runner body of W&B's stored form ``{"resource_args": {type: body}}``, else ``body``.

    ``{type: body}`` alone is unwrapped too: W&B's docs print queue bodies that way
    (the Kubeflow PyTorchJob under ``kubernetes:``); no runner body has its type as a key.
    """
    if set(body) == {resource_type} and isinstance(body[resource_type], Mapping):
        return body[resource_type]
    if set(body) != {"resource_args"} or not isinstance(body["resource_args"], Mapping):
        return body
    inner = body["resource_args"]
    if set(inner) == {resource_type}:
        found = inner[resource_type]
        if not isinstance(found, Mapping):
            raise ConfigError(
                [
                    FieldError(
                        format_path(("resource_args", resource_type)),
                        f"must be a mapping (the {resource_type} body), not {kind_of(found)}",
                    )
                ]
            )
        return found
    others = ", ".join(sorted(map(str, inner))) or "nothing"
    raise ConfigError(
        [
            FieldError(
                "resource_args",
                f"W&B's stored form holds one body, keyed by the queue's type; this queue's "
                f"type is {resource_type}, the file has: {others}",
            )
        ]
    )


def queue_config_from_wandb(
    resource_type: str, body: Any, template_variables: Any = None
) -> dict[str, Any]:
    """A launchplane queue config from a W&B queue: its type, body and template variables.

    ``body`` is what W&B's UI holds for the type (a Kubernetes manifest, a
    SageMaker request, ``{spec, run}``, ``docker run`` flags), or the stored
    form ``{"resource_args": {type: body}}``. ``template_variables`` is W&B's
    declaration (``{name: {schema: ...}}`` or ``[{name, schema}]``), or
    launchplane's. The body goes to ``resource_args.<runner>`` as is, except
    its ``builder`` block (the queue's ``builder``) and, for
    ``local-container``, the flags (``resource_args.docker`` fields).
    ConfigError lists every problem, by the W&B key.
    """
    if resource_type not in WANDB_RUNNERS:
        raise ConfigError(
            f"unknown W&B queue type {resource_type!r}{suggest(resource_type, WANDB_RUNNERS)}; "
            f"W&B's types: {', '.join(WANDB_RUNNERS)}"
        )
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise ConfigError(f"a {resource_type} queue body must be a mapping, not {kind_of(body)}")
    if "resource" in body:
        raise ConfigError(
            [
                FieldError(
                    "resource",
                    "this is a launchplane queue config (it names its runner): create it "
                    "without --type",
                )
            ]
        )
    runner_body = unwrap_stored_form(resource_type, body)
    data: dict[str, Any] = {
        "resource": runner_name(resource_type),
        "resource_args": {resource_type: dict(runner_body)},
    }
    errors: list[FieldError] = []
    normalise_runner_args(data, errors, queue=True)
    if template_variables is not None:
        data["template_variables"] = template_variables_from_wandb(template_variables, errors)
    if errors:
        raise ConfigError(errors)
    return data


def stored_form_runner(config: Mapping[str, Any]) -> str | None:
    """The W&B type a config without ``resource`` seems written for (for a ``--type`` hint).

    A config whose ``resource_args`` holds exactly one key, a W&B runner name
    that is not the default runner, most likely is W&B's stored form.
    """
    if "resource" in config:
        return None
    resource_args = config.get("resource_args")
    if not isinstance(resource_args, Mapping):
        return None
    keys = [key for key in resource_args if key != "builder"]
    if len(keys) == 1 and keys[0] in WANDB_RUNNERS and keys[0] != "local-process":
        return str(keys[0])
    return None


# --- template variables ------------------------------------------------------------------

_SCHEMA_TYPES: Mapping[str, str] = {"integer": "integer", "number": "float", "string": "string"}
"""W&B's (JSON schema) variable types -> launchplane's."""

_SCHEMA_KEYS: Mapping[str, str] = {
    "type": "type",
    "minimum": "min",
    "maximum": "max",
    "enum": "options",
    "default": "default",
    "description": "description",
}


def template_variables_from_wandb(declared: Any, errors: list[FieldError]) -> Any:
    """Template variable declarations in launchplane's form, whichever form they came in.

    W&B's mapping ``{name: {schema: {...}, description}}``, W&B's list
    ``[{name, schema}]`` (``schema`` may be JSON text, as W&B's API returns
    it) and launchplane's ``{name: {type, min, ...}}`` may be mixed: each
    entry with a ``schema`` is W&B's. Anything else is returned unchanged
    for the queue model to report. Problems are appended to ``errors``.
    """
    if isinstance(declared, list):
        entries: dict[str, Any] = {}
        for index, entry in enumerate(declared):
            at = f"template_variables.{index}"
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                errors.append(
                    FieldError(at, "a W&B template variable is {name: ..., schema: {...}}")
                )
            elif entry["name"] in entries:
                errors.append(FieldError(f"{at}.name", f"'{entry['name']}' is declared twice"))
            else:
                rest = {key: value for key, value in entry.items() if key != "name"}
                entries[entry["name"]] = _wandb_variable(rest, at, errors, listed=True)
        return entries
    if not isinstance(declared, Mapping):
        return declared
    return {
        name: (
            _wandb_variable(entry, f"template_variables.{name}", errors, listed=False)
            if isinstance(entry, Mapping) and "schema" in entry
            else entry
        )
        for name, entry in declared.items()
    }


def _wandb_variable(
    entry: Mapping[str, Any], at: str, errors: list[FieldError], *, listed: bool
) -> dict[str, Any]:
    """One W&B declaration ``{schema, description?}`` as launchplane's ``{type, min, ...}``."""
    schema = entry.get("schema")
    for key in entry:
        if key not in ("schema", "description"):
            errors.append(
                FieldError(
                    f"{at}.{key}",
                    f"unknown key{suggest(str(key), ('schema', 'description'))}; a W&B template "
                    "variable holds schema (and description)",
                )
            )
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            errors.append(FieldError(f"{at}.schema", f"is not valid JSON: {exc}"))
            return {}
    if schema is None and listed:
        schema = {}
    if not isinstance(schema, Mapping):
        errors.append(
            FieldError(
                f"{at}.schema",
                f"must be a mapping such as {{type: integer, minimum: 1}}, not {kind_of(schema)}",
            )
        )
        return {}
    variable: dict[str, Any] = {}
    if "description" in entry:
        variable["description"] = entry["description"]
    for key, value in schema.items():
        if key not in _SCHEMA_KEYS:
            errors.append(
                FieldError(
                    f"{at}.schema.{key}",
                    f"unknown schema key{suggest(str(key), _SCHEMA_KEYS)}; W&B's template "
                    f"variable schemas use: {', '.join(_SCHEMA_KEYS)}",
                )
            )
        elif key == "type":
            if value not in _SCHEMA_TYPES:
                errors.append(
                    FieldError(
                        f"{at}.schema.type",
                        f"{value!r} is not a W&B template variable type; use one of: "
                        + ", ".join(_SCHEMA_TYPES),
                    )
                )
            else:
                variable["type"] = _SCHEMA_TYPES[value]
        else:
            variable[_SCHEMA_KEYS[key]] = value
    # W&B's default type: no coercion of the value, i.e. a string.
    variable.setdefault("type", "string")
    return variable

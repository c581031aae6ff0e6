"""Loading, layering and guarding job and queue configs; resolving the final job.

The configuration semantics (``docs/configuration.md`` explains them to users):

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
  nor change a path that the queue fills from a template variable or lists
  in ``locked``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from launchplane.core import templates
from launchplane.core.errors import ConfigError, FieldError, from_validation_error, suggest
from launchplane.core.spec import QUEUE_ONLY_KEYS, JobSpec, QueueConfig, ResolvedJob

if TYPE_CHECKING:
    from launchplane.core.yamlsafe import Limits

# The YAML loader (PyYAML and launchplane.core.yamlsafe) is imported on first use:
# the agent and the server only resolve jobs that arrive as JSON, and never parse YAML,
# so importing it with this module cost every agent ~15-20 ms of start-up.
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
    "dump_document",  # noqa: F822 (module __getattr__: imported on first use)
    "format_path",
    "load_document",  # noqa: F822
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

PathKey = templates.PathKey

_JOB_SOURCE_KEYS = ("git", "artifact", "docker")
"""What W&B's ``job:`` mapping may hold; launchplane keeps them at the top level."""

_NOT_LAUNCH_CONFIGS: tuple[tuple[frozenset[str], str], ...] = (
    (
        frozenset({"method", "parameters"}),
        "this looks like a W&B sweep config (method/metric/parameters), not a launch config; "
        "a sweep controller submits one job per run - give launchplane those job configs",
    ),
    (
        frozenset({"channels", "dependencies"}),
        "this looks like a conda environment file, not a launch config; install it in the "
        "job's image (builder) and give launchplane a job config",
    ),
)


# --- files ------------------------------------------------------------------------------


def load_job_file(path: str | os.PathLike[str], *, limits: Limits | None = None) -> dict[str, Any]:
    """A job file as one normalised job layer, its ``base_config`` chain merged in.

    Each file is normalised on its own before merging, so a base written in
    W&B spelling merges with a child written in launchplane spelling. The
    result has no ``base_config`` key. ``limits``: size and depth limits of the
    safe loader [``yamlsafe.DEFAULT_LIMITS``].
    """
    return _load_chain(Path(path), queue=False, limits=limits)


def load_queue_file(
    path: str | os.PathLike[str], *, limits: Limits | None = None
) -> dict[str, Any]:
    """A queue config file, normalised, its ``base_config`` chain merged in.

    Not validated: pass the result to :func:`templates.check_queue_config`
    (queue creation does) to get every problem and the warnings.
    """
    return _load_chain(Path(path), queue=True, limits=limits)


def _load_chain(path: Path, *, queue: bool, limits: Limits | None) -> dict[str, Any]:
    from launchplane.core.yamlsafe import DEFAULT_LIMITS

    limits = limits if limits is not None else DEFAULT_LIMITS
    layers: list[dict[str, Any]] = []
    seen: dict[Path, int] = {}
    shown: list[str] = []
    current, referrer = path, None
    while True:
        display = os.path.normpath(current)
        real = current.resolve()
        if real in seen:
            chain = " -> ".join([*shown[seen[real] :], display])
            raise ConfigError(
                [FieldError("base_config", f"base_config chain has a cycle: {chain}")],
                source=shown[-1],
            )
        seen[real] = len(shown)
        shown.append(display)
        data = _read_mapping(current, display, referrer, limits)
        layer, errors = normalise_layer(data, queue=queue)
        base = layer.pop("base_config", None)
        if errors:
            raise ConfigError(errors, source=display)
        layers.append(layer)
        if base is None:
            break
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(
                [FieldError("base_config", "must be a file path (relative to this file)")],
                source=display,
            )
        current, referrer = current.parent / base, (display, base)
    merged: dict[str, Any] = {}
    for layer in reversed(layers):
        merged = deep_merge(merged, layer)
    return merged


def _read_mapping(
    path: Path, display: str, referrer: tuple[str, str] | None, limits: Limits
) -> dict[str, Any]:
    """Read and parse one config file; it must hold a mapping (an empty file is ``{}``)."""
    from launchplane.core.yamlsafe import format_size, load_document

    try:
        size = path.stat().st_size
        if path.is_dir():
            raise ConfigError("a directory, not a config file", source=display)
        if size > limits.max_bytes:
            raise ConfigError(
                f"the file is {format_size(size)} ({size} bytes), over the limit of "
                f"{format_size(limits.max_bytes)} ({limits.max_bytes} bytes)",
                source=display,
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _missing_file(display, referrer) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", source=display) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", source=display) from None
    data = load_document(text, source=display, limits=limits)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"a config file must hold a mapping of keys (queue, git, resource_args, ...), "
            f"not {templates.kind_of(data)}",
            source=display,
        )
    return data


def _missing_file(display: str, referrer: tuple[str, str] | None) -> ConfigError:
    """File not found; for a base_config, said in the including file, with a likely fix."""
    if referrer is None:
        return ConfigError("file not found", source=display)
    parent, base = referrer
    hint = ""
    including_dir = Path(parent).parent
    for ancestor in list(including_dir.resolve().parents)[:5]:
        if (ancestor / base).is_file():
            relative = os.path.relpath(ancestor / base, including_dir.resolve())
            hint = f"; did you mean '{relative}'?"
            break
    return ConfigError(
        [
            FieldError(
                "base_config",
                f"'{base}' not found: no file {display} (a base_config path is relative "
                f"to the file that names it){hint}",
            )
        ],
        source=parent,
    )


# --- merge ------------------------------------------------------------------------------


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``: mappings merge key by key, anything else is replaced.

    Lists are replaced, not appended (so a job can shorten a queue's list);
    ``null`` replaces too (it does not delete). Neither input is mutated and
    the result shares no container with them, so it is safe to modify.
    """
    result = _copy_mapping(base)
    _merge_into(result, override)
    return result


def _merge_into(target: dict[str, Any], override: Mapping[str, Any]) -> None:
    for key, value in override.items():
        current = target.get(key)
        if isinstance(value, dict | Mapping) and isinstance(current, dict):
            _merge_into(current, value)
        else:
            target[key] = _copy(value)


def _copy_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _copy(item) for key, item in value.items()}


def _copy(value: Any) -> Any:
    if isinstance(value, str | int | float | None):  # the common case, before the ABC check
        return value
    if isinstance(value, dict | Mapping):
        return _copy_mapping(value)
    if isinstance(value, list | tuple):
        return [_copy(item) for item in value]
    return value


# --- override grammar -------------------------------------------------------------------

_SET_EXAMPLE = 'e.g. --set resource_args.kubernetes.requests."nvidia.com/gpu"=4'


class Layer(dict[str, Any]):
    """An override layer that remembers where it came from, for error messages.

    A plain ``dict`` to everyone else; :func:`resolve_job` says ``(from --set
    docker.image=x)`` instead of ``(in override 2)``.
    """

    def __init__(self, data: Mapping[str, Any], origin: str) -> None:
        super().__init__(data)
        self.origin = origin


def parse_set(expr: str) -> Layer:
    """``--set PATH=VALUE`` as a one-key-path layer (a nested dict).

    PATH is keys separated by dots; a double-quoted segment may contain dots,
    ``=`` and spaces (``\\"`` and ``\\\\`` escape a quote and a backslash).
    VALUE is YAML: ``4`` is an int, ``"4"`` a string, ``[a, b]`` a list,
    ``null`` None; an empty VALUE is the empty string. Segments are always
    mapping keys (lists are replaced whole: ``--set 'args=[--lr, "3e-4"]'``).
    """
    segments, end = _scan_path(expr, "--set", allow_value=True)
    if end >= len(expr):
        raise ConfigError(
            [FieldError("--set", f"{expr!r} has no '='; write PATH=VALUE, {_SET_EXAMPLE}")]
        )
    value = _parse_value(expr, expr[end + 1 :])
    for segment in reversed(segments[1:]):
        value = {segment: value}
    return Layer({segments[0]: value}, f"--set {expr}")


def parse_path(text: str, *, where: str = "path") -> PathKey:
    """A dotted path with optional double-quoted segments (the ``--set`` and ``locked`` grammar)."""
    segments, _ = _scan_path(text, where, allow_value=False)
    return tuple(segments)


def format_path(path: Sequence[str | int]) -> str:
    """The inverse of :func:`parse_path`: quote segments that need it."""
    return ".".join(_format_segment(str(segment)) for segment in path)


def _format_segment(segment: str) -> str:
    plain = segment and segment == segment.strip() and not any(c in segment for c in '."=\\')
    if plain:
        return segment
    return '"' + segment.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scan_path(text: str, where: str, *, allow_value: bool) -> tuple[list[str], int]:
    """Segments of the path at the start of ``text`` and the index where it ends ('=' or end)."""
    segments: list[str] = []
    index, length = 0, len(text)
    while True:
        start = index
        while index < length and text[index] in " \t":
            index += 1
        if index < length and text[index] == '"':
            segment, index = _scan_quoted(text, index, where)
            while index < length and text[index] in " \t":
                index += 1
        else:
            index = start
            while index < length and text[index] not in '.="':
                index += 1
            if index < length and text[index] == '"':
                raise _grammar_error(
                    where, text, index, "a quote may only open a segment; quote the whole key"
                )
            segment = text[start:index].strip()
            if not segment:
                raise _grammar_error(where, text, start, "empty key; write keys between the dots")
        segments.append(segment)
        if index >= length:
            return segments, index
        if text[index] == "=":
            if not allow_value:
                raise _grammar_error(where, text, index, "'=' in a key; quote the key")
            return segments, index
        if text[index] != ".":
            raise _grammar_error(where, text, index, "expected '.' or '=' after a quoted key")
        index += 1


def _scan_quoted(text: str, index: int, where: str) -> tuple[str, int]:
    """The content of the quoted segment opening at ``index`` and the index after its quote."""
    chars: list[str] = []
    position = index + 1
    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text) and text[position + 1] in '"\\':
            chars.append(text[position + 1])
            position += 2
        elif char == '"':
            return "".join(chars), position + 1
        else:
            chars.append(char)
            position += 1
    raise _grammar_error(where, text, index, "unterminated quote")


def _grammar_error(where: str, text: str, index: int, problem: str) -> ConfigError:
    return ConfigError([FieldError(where, f"{text!r}: {problem} (at column {index + 1})")])


def _parse_value(expr: str, text: str) -> Any:
    if not text.strip():
        return ""
    from launchplane.core.yamlsafe import load_document

    try:
        return load_document(text, source="--set")
    except ConfigError as exc:
        reason = "; ".join(error.message for error in exc.errors)
        raise ConfigError(
            [
                FieldError(
                    "--set",
                    f"{expr!r}: the value is not valid YAML ({reason}); "
                    "quote it to pass text, e.g. KEY='\"@value\"'",
                )
            ]
        ) from None


def parse_var(expr: str) -> dict[str, str]:
    """``--var NAME=VALUE`` as ``{NAME: VALUE}``; the queue's variable type coerces VALUE later."""
    name, sep, value = expr.partition("=")
    if not sep or not name.strip():
        raise ConfigError(
            [FieldError("--var", f"{expr!r}: write NAME=VALUE, e.g. --var volume_size=200")]
        )
    return {name.strip(): value}


def parse_resource_args(json_text: str) -> Layer:
    """W&B's ``--resource-args JSON`` as a layer: ``{"resource_args": {...}}``."""
    from launchplane.core.yamlsafe import load_document

    try:
        data = load_document(json_text, source="--resource-args", syntax="json")
    except ConfigError as exc:
        raise ConfigError(
            [FieldError("--resource-args", e.message, e.line) for e in exc.errors]
        ) from None
    if not isinstance(data, dict):
        example = '{"kubernetes": {"requests": {"memory": "64Gi"}}}'
        message = f"must be a JSON object keyed by runner, e.g. {example}, not "
        raise ConfigError([FieldError("--resource-args", message + templates.kind_of(data))])
    return Layer({"resource_args": data}, "--resource-args")


def command_line_layers(
    sets: Sequence[str] = (), resource_args: str | None = None, variables: Sequence[str] = ()
) -> tuple[list[Layer], dict[str, str]]:
    """Parse every ``--set``, ``--resource-args`` and ``--var`` of a command at once.

    ``plan``, ``submit`` and ``run`` share this so they accept the same
    grammar, and a user sees every malformed flag in one error, not one per run.
    ``resource_args`` is inline JSON or the path of a ``.json`` file (as in W&B).
    """
    errors: list[FieldError] = []
    overrides: list[Layer] = []
    values: dict[str, str] = {}
    for expr in sets:
        try:
            overrides.append(parse_set(expr))
        except ConfigError as exc:
            errors += exc.errors
    if resource_args is not None:
        try:
            overrides.append(parse_resource_args(_resource_args_text(resource_args)))
        except ConfigError as exc:
            errors += exc.errors
    for expr in variables:
        try:
            values.update(parse_var(expr))
        except ConfigError as exc:
            errors += exc.errors
    if errors:
        raise ConfigError(errors)
    return overrides, values


def _resource_args_text(value: str) -> str:
    """The JSON text of --resource-args: inline, or read from a ``*.json`` file."""
    text = value.strip()
    if text.startswith("{") or not text.lower().endswith(".json"):
        return value
    try:
        return Path(text).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [FieldError("--resource-args", f"cannot read {text}: {exc.strerror or exc}")]
        ) from None


def resolve_local_workdir(job: dict[str, Any], job_file: Path) -> dict[str, Any]:
    """Make a relative ``workdir:`` absolute against the job file's directory.

    A job file names its local code relative to itself (``workdir: .``), so
    the same file works from any current directory. Done by the commands that
    read a job file (``plan``, ``submit``, ``run``), not by :func:`load_job_file`,
    because inside a git checkout ``workdir`` is relative to the checkout.
    The path must exist where the agent runs (true for ``launchplane run``
    and for an agent on the submitter's machine); remote agents need ``git:``.
    """
    workdir = job.get("workdir")
    if job.get("git") or not isinstance(workdir, str) or Path(workdir).is_absolute():
        return job
    return {**job, "workdir": str((job_file.resolve().parent / workdir).resolve())}


# --- normalisation ----------------------------------------------------------------------


def normalise_layer(
    raw: Mapping[str, Any], *, queue: bool = False
) -> tuple[dict[str, Any], list[FieldError]]:
    """Rewrite W&B spellings to launchplane's; return the layer and any conflicts.

    ``job: {git|artifact|docker: ...}`` moves to the top level and
    ``resource_args.builder`` to ``builder``; setting the same thing both
    ways is an error. In a queue config, ``locked`` entries get the same
    rewrite (``job.docker.image`` locks ``docker.image``). The input is not
    modified.
    """
    data = dict(raw)
    errors: list[FieldError] = []
    job = data.get("job")
    if isinstance(job, Mapping):
        del data["job"]
        for key, value in job.items():
            path = format_path(("job", str(key)))
            if key not in _JOB_SOURCE_KEYS:
                errors.append(
                    FieldError(
                        path,
                        f"unknown key{suggest(str(key), _JOB_SOURCE_KEYS)}; job: as a mapping "
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
    if queue and isinstance(data.get("locked"), list):
        data["locked"] = _canonical_locked(data["locked"], errors)
    return data, errors


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
        result.append(format_path(canonical_path(path)))
    return result


def canonical_path(path: PathKey) -> PathKey:
    """The launchplane spelling of a path written the W&B way (``job.docker.image``)."""
    if len(path) > 1 and path[0] == "job" and path[1] in _JOB_SOURCE_KEYS:
        return path[1:]
    if path[:2] == ("resource_args", "builder"):
        return ("builder", *path[2:])
    return path


# --- resolution -------------------------------------------------------------------------


@dataclass
class _Guard:
    """A node of the tree of paths a submitter may not change."""

    children: dict[str | int, _Guard] = field(default_factory=dict)
    reason: str | None = None
    """Why this exact path is protected (None: only something below it is)."""
    mergeable: bool = True
    """The queue holds a mapping (or nothing) here, so a mapping merges instead of replacing."""

    def first_protected(self, path: PathKey) -> tuple[PathKey, str]:
        """A protected path below this node (at ``path``) and why: for "replacing" errors."""
        node, found = self, path
        while node.reason is None:
            key, node = next(iter(node.children.items()))
            found = (*found, key)
        assert node.reason is not None
        return found, node.reason


@dataclass
class _Queue:
    """What resolution needs from a queue config, computed once per call."""

    config: QueueConfig
    job_defaults: dict[str, Any]
    guards: _Guard
    passthrough: frozenset[str]


def resolve_job(
    queue_config: QueueConfig | Mapping[str, Any],
    job: Mapping[str, Any],
    overrides: Sequence[Mapping[str, Any]] = (),
    variables: Mapping[str, Any] | None = None,
    *,
    queue_name: str | None = None,
    runner_validator: Callable[[str, dict[str, Any]], Any] | None = None,
) -> ResolvedJob:
    """The one final job: queue config < job < overrides, guarded and templated.

    Stage 1 checks what the submitter sent - each layer's shape, the
    guardrails, the template variable values (``job["template_variables"]``,
    then those of each override layer, then ``variables``; later wins).
    Stage 2 substitutes the values into the queue config, merges the layers,
    validates the result as a :class:`ResolvedJob` and, when given, calls
    ``runner_validator(resource, resource_args[resource])``. A failing stage
    raises one ConfigError that lists every problem of that stage.

    The result still holds ``${run_id}``-style macros and, in ``env``,
    ``${NAME}`` references and ``null`` values from the queue config; the
    agent expands them at launch (:func:`templates.expand_macros`).
    """
    queue = _compile_queue(queue_config)
    layers: list[dict[str, Any]] = []
    errors: list[FieldError] = []
    given: dict[str, Any] = {}
    nulls: dict[str, str] = {}
    for index, raw in enumerate([job, *overrides]):
        origin = "" if index == 0 else _origin(raw, index)
        layer = _submitter_layer(raw, queue, origin, errors)
        tv = layer.pop("template_variables", None)
        if isinstance(tv, Mapping):
            given.update(tv)
        _track_nulls(layer.get("env"), origin, nulls)
        layers.append(layer)
    errors += _null_env_errors(nulls, queue.passthrough)
    given.update(variables or {})
    try:
        values = templates.resolve_template_values(queue.config.template_variables, given)
    except ConfigError as exc:
        errors += exc.errors
    if errors:
        raise ConfigError(errors)
    merged = templates.substitute(queue.job_defaults, values)
    for layer in layers:
        _merge_into(merged, layer)
    merged.update(
        resource=queue.config.resource,
        secrets=dict(queue.config.secrets),
        secret_providers=dict(queue.config.secret_providers),
        passthrough_env=list(queue.config.passthrough_env),
        template_values=values,
    )
    if queue_name is not None:
        merged["queue"] = queue_name
    return _validate_resolved(merged, runner_validator)


def _origin(layer: Any, index: int) -> str:
    """`` (from --set a.b=1)`` for a labelled :class:`Layer`, else `` (in override 2)``."""
    label = getattr(layer, "origin", None)
    return f" (from {label})" if label else f" (in override {index})"


def _compile_queue(queue_config: QueueConfig | Mapping[str, Any]) -> _Queue:
    """Check the queue config and build the tree of paths its submitters may not change."""
    raw = (
        queue_config.model_dump(exclude_unset=True)
        if isinstance(queue_config, QueueConfig)
        else queue_config
    )
    try:
        checked = templates.inspect_queue_config(raw)
    except ConfigError as exc:
        raise ConfigError(exc.errors, source="queue config") from None
    config, data = checked.config, checked.data
    job_defaults = {key: value for key, value in data.items() if key not in QUEUE_ONLY_KEYS}
    guards = _Guard()
    # A valid config has placeholders in job fields only, so all of them are protected.
    for path, names in checked.placeholders.items():
        variables = ", ".join(f"'{name}'" for name in sorted(names))
        hint = " ".join(f"--var {name}=..." for name in sorted(names))
        noun = "template variable" if len(names) == 1 else "template variables"
        _protect(
            guards, path, data, f"is set by the queue from {noun} {variables}; pass {hint} instead"
        )
    for entry in config.locked:
        _protect(
            guards,
            parse_path(entry),
            data,
            "is locked by the queue config; only an admin can change it",
        )
    return _Queue(config, job_defaults, guards, frozenset(config.passthrough_env))


def _protect(root: _Guard, path: PathKey, data: Mapping[str, Any], reason: str) -> None:
    """Add ``path`` to the guard tree, noting along it where the queue holds a mapping."""
    node, value = root, data
    for key in path:
        value = _child(value, key)
        node = node.children.setdefault(key, _Guard())
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


def _submitter_layer(
    raw: Any, queue: _Queue, origin: str, errors: list[FieldError]
) -> dict[str, Any]:
    """Normalise one job or override layer and append every problem with it to ``errors``."""
    if not isinstance(raw, Mapping):
        errors.append(
            FieldError(
                "", f"a job or override must be a mapping, not {templates.kind_of(raw)}{origin}"
            )
        )
        return {}
    layer, problems = normalise_layer(raw)
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
    problems += _shape_errors(shape)
    problems += _reference_errors(layer)
    _check_guards(layer, queue.guards, (), problems)
    errors += [FieldError(p.path, p.message + origin, p.line) for p in problems]
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
        elif key == "resource":
            errors.append(
                FieldError("resource", "the queue decides the runner; submit to another queue")
            )
        elif key in QUEUE_ONLY_KEYS and key != "template_variables":
            errors.append(FieldError(key, "is a queue setting that only an admin can change"))
    return errors


def _shape_errors(layer: Mapping[str, Any]) -> list[FieldError]:
    """JobSpec errors of a partial layer: wrong keys and types, not missing fields.

    A layer may set only ``git.commit`` and inherit ``git.repository`` from
    the queue; required fields are checked on the resolved job.
    """
    try:
        JobSpec.model_validate(layer)
    except ValidationError as exc:
        return _with_hint(from_validation_error(_WithoutMissing(exc), model=JobSpec), layer)
    return []


class _WithoutMissing:
    """A ValidationError view without ``missing`` errors (see :func:`_shape_errors`)."""

    def __init__(self, exc: ValidationError) -> None:
        self._errors = [e for e in exc.errors() if e["type"] != "missing"]

    def errors(self) -> list[dict[str, Any]]:
        return self._errors


def _with_hint(errors: list[FieldError], layer: Mapping[str, Any]) -> list[FieldError]:
    """Say, once, what the document looks like when it is not a launch config at all."""
    for signature, hint in _NOT_LAUNCH_CONFIGS:
        if not signature <= set(layer):
            continue
        for index, error in enumerate(errors):
            if error.path in signature:
                errors[index] = FieldError(error.path, f"{error.message}; {hint}", error.line)
                return errors
    return errors


def _track_nulls(env: Any, origin: str, nulls: dict[str, str]) -> None:
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


def _null_env_errors(nulls: Mapping[str, str], passthrough: frozenset[str]) -> list[FieldError]:
    """``null`` env values are allowed only for the queue's passthrough names."""
    allowed = ", ".join(sorted(passthrough)) or "none"
    return [
        FieldError(
            format_path(("env", name)),
            "null (inherit from the agent) is allowed only for names in the queue's "
            f"passthrough_env (here: {allowed}); give a value, or ask an admin to add "
            f"{name} to passthrough_env{origin}",
        )
        for name, origin in nulls.items()
        if name not in passthrough
    ]


def _reference_errors(layer: Mapping[str, Any]) -> list[FieldError]:
    """``${NAME}`` of the agent's environment, wherever the agent expands it, is admin-only."""
    errors = []
    for key in templates.EXPANDED_FIELDS:
        for path, text in templates.strings(layer.get(key), (key,)):
            errors += [
                FieldError(
                    format_path(path),
                    f"${{{name}}} would read the agent's environment, which only a queue config "
                    f"may do; write $${{{name}}} for the literal text, or ask an admin to provide "
                    "it (queue env, secrets or passthrough_env)",
                )
                for name in templates.agent_env_references(text)
            ]
    return errors


def _check_guards(
    value: Mapping[str, Any], node: _Guard, path: PathKey, errors: list[FieldError]
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


def _validate_resolved(
    merged: dict[str, Any], runner_validator: Callable[[str, dict[str, Any]], Any] | None
) -> ResolvedJob:
    try:
        resolved = ResolvedJob.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(from_validation_error(exc, model=ResolvedJob)) from None
    errors = _resource_key_errors(resolved)
    if runner_validator is not None:
        errors += _runner_errors(runner_validator, resolved)
    if errors:
        raise ConfigError(errors)
    return resolved


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


def _runner_errors(
    validator: Callable[[str, dict[str, Any]], Any], resolved: ResolvedJob
) -> list[FieldError]:
    prefix = format_path(("resource_args", resolved.resource))
    try:
        validator(resolved.resource, resolved.resource_args.get(resolved.resource, {}))
    except ConfigError as exc:
        return [
            FieldError(f"{prefix}.{e.path}" if e.path else prefix, e.message) for e in exc.errors
        ]
    except ValidationError as exc:
        model = _resource_args_model(validator)
        errors = from_validation_error(exc, model=model)
        return [FieldError(f"{prefix}.{e.path}" if e.path else prefix, e.message) for e in errors]
    return []


def _resource_args_model(validator: Any) -> Any:
    """The runner's model behind a validator, if it shows one, for key suggestions.

    A bound ``Runner.validate_resource_args`` has it on ``__self__``; any
    callable may carry a ``resource_args_model`` attribute.
    """
    model = getattr(validator, "resource_args_model", None)
    return model or getattr(getattr(validator, "__self__", None), "resource_args_model", None)

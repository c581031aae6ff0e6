"""W&B's ``launch_add`` keywords and ``wandb launch`` flags as launchplane's submit layers.

One home for the translation that ``launchplane submit`` (and its alias
``launchplane launch``) and :func:`launchplane.submit` share, so a flag and
its keyword always mean the same thing. What comes out is what
:meth:`~launchplane.core.client.LaunchplaneClient.submit_job` takes: override
layers (lowest first) and template variable values. The server resolves them
against the queue like any other layers, so every guardrail applies.

* Each flag or keyword sets its field in the job layer, over the job file
  (and over a downloaded W&B job, ``--job-dir``). Flags this module maps are
  written in launchplane's spelling; the ones whose meaning the config
  engine decides (``uri``, ``git.version``, ``resource``) keep W&B's, so
  that decision has one home.
* The W&B launch spec (``-c/--config``, ``config=``) is an override layer
  above the job, passed on as written: the config engine translates its W&B
  keys (``overrides.*``, ``docker.docker_image``, ``git.repo``, ...) like any
  layer's. ``-R``/``resource_args=`` is the layer above it. So a field set
  both by a flag and in the spec takes the spec's value (W&B: the flag's),
  as ``submit(config=...)`` always layered ``config`` over the job.
* W&B's client-side rule is kept: a launch spec with both ``resource_args``
  (its own, or ``-R``/``resource_args=``) and ``template_variables`` loses
  its ``resource_args``, with W&B's warning.
* ``--set-var`` is parsed as W&B parses it (exactly one ``=``).
* What launchplane does not do (build on the submitter's machine, push to a
  registry the submitter names, create W&B job artifacts) is refused with
  one line saying what to do instead; never silently dropped.

``-c``/``-R`` documents are read as W&B reads them (:func:`read_launch_document`):
a ``.json`` file, a ``.yaml``/``.yml`` file read as YAML 1.1, or inline JSON.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from launchplane.core.config.merge import deep_merge
from launchplane.core.config.overrides import Layer
from launchplane.core.errors import ConfigError, FieldError, kind_of

STRIP_WARNING = (
    "Launch spec contains both resource_args and template_variables, "
    "only one can be set. Using template_variables."
)
"""W&B's own words (``utils.strip_resource_args_and_template_vars``), so a search finds both."""

SET_VAR_MESSAGE = '--set-var value must be in the format "--set-var key1=value1", instead got: {}'
"""W&B's message for a ``--set-var`` without exactly one ``=``."""


class LaunchSpecWarning(UserWarning):
    """A W&B rule launchplane applied to what was submitted (e.g. resource_args dropped)."""


@dataclass(frozen=True)
class LaunchArgs:
    """What a W&B user passes: ``wandb launch`` flags or ``launch_add`` keywords.

    Field names are ``launch_add``'s; ``dockerfile``, ``base_image``,
    ``build_context`` and ``job_name`` are flags only ``wandb launch`` has,
    ``job_dir`` is launchplane's (a downloaded W&B job). ``config`` and
    ``resource_args`` are already parsed documents; ``config_origin`` names
    where the spec came from in errors (``-c spec.yaml``).
    """

    uri: str | None = None
    job: str | None = None
    job_dir: str | None = None
    config: Mapping[str, Any] | None = None
    config_origin: str = "config="
    template_variables: Mapping[str, Any] | None = None
    project: str | None = None
    entity: str | None = None
    resource: str | None = None
    entry_point: str | Sequence[str] | None = None
    name: str | None = None
    version: str | None = None
    docker_image: str | None = None
    project_queue: str | None = None
    resource_args: Mapping[str, Any] | None = None
    run_id: str | None = None
    build: bool = False
    repository: str | None = None
    sweep_id: str | None = None
    author: str | None = None
    priority: str | int | None = None
    dockerfile: str | None = None
    base_image: str | None = None
    build_context: str | None = None
    job_name: str | None = None


# field -> (the wandb launch flag, the launch_add keyword): how errors name what was given
_FLAGS: dict[str, tuple[str, str]] = {
    "uri": ("-u/--uri", "uri="),
    "job": ("-j/--job", "job="),
    "job_dir": ("--job-dir", "job_dir="),
    "config": ("-c/--config", "config="),
    "template_variables": ("-v/--set-var", "template_variables="),
    "project": ("-p/--project", "project="),
    "entity": ("-e/--entity", "entity="),
    "resource": ("-r/--resource", "resource="),
    "entry_point": ("-E/--entry-point", "entry_point="),
    "name": ("--name", "name="),
    "version": ("-g/--git-version", "version="),
    "docker_image": ("-d/--docker-image", "docker_image="),
    "project_queue": ("-pq/--project-queue", "project_queue="),
    "resource_args": ("-R/--resource-args", "resource_args="),
    "run_id": ("run_id in -c/--config", "run_id="),
    "build": ("-b/--build", "build="),
    "repository": ("-rg/--repository", "repository="),
    "sweep_id": ("sweep_id in -c/--config", "sweep_id="),
    "author": ("author in -c/--config", "author="),
    "priority": ("-P/--priority", "priority="),
    "dockerfile": ("-D/--dockerfile", "dockerfile="),
    "base_image": ("-B/--base-image", "base_image="),
    "build_context": ("--build-context", "build_context="),
    "job_name": ("-J/--job-name", "job_name="),
}
assert set(_FLAGS) == {f.name for f in fields(LaunchArgs)} - {"config_origin"}

# launch_add keyword -> launchplane field, for the ones that only change name
_SAME_FIELDS = {
    "entity": "entity",
    "project": "project",
    "name": "name",
    "author": "author",
    "sweep_id": "sweep_id",
    "run_id": "wandb_run_id",
    "job": "job",
}

_REFUSED = {
    "build": "launchplane never builds on the submitter's machine: the agent builds the "
    "image with the queue's builder (builder: in the queue config); drop it",
    "repository": "where images are pushed is the queue's builder setting "
    "(builder.options.registry in the queue config), not the submitter's; drop it",
    "job_name": "launchplane does not create W&B job artifacts from -u/--uri; the code "
    "runs as given - name the run with --name",
}


@dataclass
class LaunchLayers:
    """What :func:`launch_layers` makes: the job layer, override layers, values, warnings."""

    job: dict[str, Any] = field(default_factory=dict)
    """The job layer: a downloaded W&B job < the job file < each flag's field."""
    overrides: list[Layer] = field(default_factory=list)
    """Override layers, lowest first: the launch spec (``-c``/``config=``), then ``-R``."""
    template_values: dict[str, Any] = field(default_factory=dict)
    """``template_variables=``/``--set-var`` values: they win over the spec's own."""
    warnings: list[str] = field(default_factory=list)


def launch_layers(
    args: LaunchArgs, job: Mapping[str, Any] | None = None, *, cli: bool = False
) -> LaunchLayers:
    """The layers and values of one W&B-style launch; every problem at once.

    ``job`` is the job file's layer, if any. The flags' fields go into the
    job layer, over the job file; the launch spec and ``-R`` are override
    layers above it (as ``submit`` always layered ``config=``). ``cli`` says
    whether errors name flags (``-d/--docker-image``) or keywords
    (``docker_image=``). Raises ConfigError listing every refused or
    malformed flag.
    """

    def flag(name: str) -> str:
        return _FLAGS[name][0 if cli else 1]

    errors: list[FieldError] = []
    result = LaunchLayers()
    base: dict[str, Any] = {}
    wandb_job = args.job
    if args.job_dir is not None:
        base = _wandb_job(args.job_dir, flag("job_dir"), errors, directory=True) or {}
    if args.job is not None:
        named = _wandb_job(args.job, flag("job"), errors, directory=False)
        if named is not None:
            base, wandb_job = deep_merge(base, named), None
    spec = dict(args.config or {})
    resource_args = dict(args.resource_args or {})
    if spec.get("template_variables") and (spec.get("resource_args") or resource_args):
        spec.pop("resource_args", None)
        resource_args = {}
        result.warnings.append(STRIP_WARNING)
    if spec:
        result.overrides.append(Layer(spec, args.config_origin))
    if resource_args:
        result.overrides.append(Layer({"resource_args": resource_args}, flag("resource_args")))

    for name, reason in _REFUSED.items():
        if getattr(args, name):
            errors.append(FieldError(flag(name), reason))
    if args.project_queue is not None:
        result.warnings.append(
            f"{flag('project_queue')} ignored: launchplane queues are not scoped by project"
        )
    fields_: list[dict[str, Any]] = []
    if args.uri is not None:
        if wandb_job is not None:
            errors.append(
                FieldError(flag("uri"), f"give {flag('uri')} or {flag('job')}, not both (as W&B)")
            )
        fields_.append(_uri_fields(args.uri, args.build_context))
    elif args.build_context is not None:
        errors.append(FieldError(flag("build_context"), f"needs {flag('uri')} (as in W&B)"))
    for name, target in _SAME_FIELDS.items():
        value = wandb_job if name == "job" else getattr(args, name)
        if value is not None:
            fields_.append({target: value})
    if args.entry_point is not None:
        fields_.append({"entry_point": _entry_point(args.entry_point, flag("entry_point"), errors)})
    if args.docker_image is not None:
        if args.base_image is not None:
            errors.append(
                FieldError(
                    flag("base_image"),
                    f"give {flag('base_image')} (an image to build the code on) or "
                    f"{flag('docker_image')} (a ready image to run), not both",
                )
            )
        fields_.append({"docker": {"image": args.docker_image}})
    if args.dockerfile is not None:
        fields_.append({"docker": {"dockerfile": args.dockerfile}})
    if args.base_image is not None:
        fields_.append({"builder": {"base_image": args.base_image}})
    if args.version is not None:
        # W&B's key: the config engine decides commit (7-40 hex digits) or branch.
        fields_.append({"git": {"version": args.version}})
    if args.resource is not None:
        # W&B's key: accepted when it names the queue's runner, refused otherwise.
        fields_.append({"resource": args.resource})
    if args.priority is not None:
        fields_.append({"priority": _priority(args.priority, flag("priority"), errors)})
    result.job = deep_merge(base, dict(job or {}))
    for fields_layer in fields_:
        result.job = deep_merge(result.job, fields_layer)
    result.template_values = dict(args.template_variables or {})
    if errors:
        raise ConfigError(errors)
    return result


def _uri_fields(uri: str, build_context: str | None) -> dict[str, Any]:
    """``-u``: a local directory is the job's ``workdir`` (absolute: the agent has no cwd of
    ours); anything else goes on as W&B's ``uri`` for the config engine to judge."""
    local = Path(uri).expanduser()
    if local.exists():
        root = local.resolve()
        return {"workdir": str((root / build_context).resolve() if build_context else root)}
    if build_context is not None:
        return {"uri": uri, "workdir": build_context}
    return {"uri": uri}


def _wandb_job(
    value: str, flag: str, errors: list[FieldError], *, directory: bool
) -> dict[str, Any] | None:
    """The job layer of the W&B job ``value`` names; None when it is a plain job name.

    ``--job-dir`` (``directory``) is a downloaded job; ``-j``/``job=`` may be
    one too (a path), or ``entity/project/name:alias``, fetched through the
    ``wandb`` package as a job file's ``job:`` is (:mod:`.config.wandb_job`).
    """
    try:
        from launchplane.core.config import wandb_job
    except ImportError:  # the W&B job reader is not in this build
        if directory or Path(value).expanduser().exists():
            errors.append(FieldError(flag, "reading a downloaded W&B job is not available here"))
            return {}
        return None
    try:
        if directory:
            return dict(wandb_job.load_wandb_job(value))
        found = wandb_job.resolve_job_reference(value, Path.cwd())
        if found is None:
            return None
        if found.needs_code:
            raise wandb_job.missing_code(found)
        return dict(found.layer)
    except ConfigError as exc:
        where = f" ({exc.source})" if exc.source else ""
        errors.extend(
            FieldError(
                flag, (f"{e.path}: " if e.path not in ("", "job") else "") + e.message + where
            )
            for e in exc.errors
        )
        return {}


def _entry_point(value: str | Sequence[str], flag: str, errors: list[FieldError]) -> list[str]:
    """W&B's ``-E "python train.py --lr 1"`` (split like a shell) or ``launch_add``'s list."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            errors.append(FieldError(flag, f"{value!r}: {exc}"))
            return []
    if not all(isinstance(part, str) for part in value):
        errors.append(FieldError(flag, "must be a command line or a list of strings"))
    return [str(part) for part in value]


def _priority(value: str | int, flag: str, errors: list[FieldError]) -> str:
    from launchplane.core.spec import PRIORITIES, priority_name

    name = priority_name(value)
    if name not in PRIORITIES:
        errors.append(
            FieldError(
                flag, f"{value!r} is not a priority: critical, high, medium or low (W&B's 0..3)"
            )
        )
    return str(name)


def parse_set_var(expr: str) -> dict[str, str]:
    """``--set-var KEY=VALUE`` as W&B parses it: exactly one ``=``, else W&B's refusal.

    The value stays text; the queue's declared type converts it (as W&B's
    schema does). ``--var`` is launchplane's own parse (the first ``=``).
    """
    parts = expr.split("=")
    if len(parts) != 2 or not parts[0]:
        raise ConfigError([FieldError("--set-var", SET_VAR_MESSAGE.format(expr))])
    return {parts[0]: parts[1]}


def parse_set_vars(exprs: Sequence[str]) -> dict[str, str]:
    """Every ``--set-var``; one ConfigError listing each malformed one."""
    values: dict[str, str] = {}
    errors: list[FieldError] = []
    for expr in exprs:
        try:
            values.update(parse_set_var(expr))
        except ConfigError as exc:
            errors += exc.errors
    if errors:
        raise ConfigError(errors)
    return values


def read_launch_document(value: str, *, flag: str) -> tuple[dict[str, Any], list[str]]:
    """``-c/--config`` or ``-R/--resource-args``: the mapping, and warnings about its reading.

    As W&B reads it: a ``.json`` file; a ``.yaml``/``.yml`` file read as
    YAML 1.1 (``3e-4`` is text, ``yes`` true), with a warning for each value
    launchplane's own files would read otherwise; else inline JSON.
    """
    from launchplane.core.yamlsafe import load_document, reading_differences

    text, source = value, flag
    suffix = Path(value.strip()).suffix.lower()
    inline = value.lstrip().startswith(("{", "["))
    if not inline and suffix in (".json", ".yaml", ".yml"):
        source = value.strip()
        try:
            text = Path(source).expanduser().read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ConfigError(
                [FieldError(flag, f"cannot read {source}: {exc.strerror or exc}")]
            ) from None
    elif not inline and Path(value).expanduser().is_file():
        raise ConfigError(
            [FieldError(flag, f"{value}: a file must end in .json, .yaml or .yml (as in W&B)")]
        )
    yaml_file = suffix in (".yaml", ".yml") and not inline
    try:
        data = load_document(
            text,
            source=source,
            syntax="yaml" if yaml_file else "json",
            yaml_version="1.1",
        )
    except ConfigError as exc:
        prefix = "" if source != flag else "not a JSON object, nor a .json/.yaml file: "
        raise ConfigError(
            [FieldError(flag, f"{prefix}{e.message}", e.line) for e in exc.errors],
            source=source if source != flag else None,
        ) from None
    if data is None and yaml_file:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [
                FieldError(
                    flag,
                    f"must be a JSON object (or a .json/.yaml file holding a mapping), "
                    f"not {kind_of(data)}",
                )
            ]
        )
    warnings = []
    if yaml_file:
        warnings = [
            f"{source}: {difference.message('wandb')}"
            for difference in reading_differences(text, source=source)
        ]
    return data, warnings

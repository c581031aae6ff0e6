"""W&B job artifacts: a downloaded job directory (or its ``wandb-job.json``) as a job layer.

A W&B job is an artifact of type ``job`` that W&B writes for a run. Downloaded
(``wandb artifact get entity/project/name:alias``), it is a directory holding

``wandb-job.json``           ``source_type`` (``repo``, ``artifact`` or ``image``),
                             ``source`` (``git.{remote,commit}``, ``artifact``, ``image``,
                             ``entrypoint``, ``notebook``, ``dockerfile``, ``build_context``,
                             ``base_image``), ``runtime``, ``input_types``, ``output_types``,
                             ``_partial``;
``requirements.frozen.txt``  ``pip freeze`` of the run's environment;
``diff.patch``               the uncommitted changes of the run's work tree (repo jobs).

W&B launches it by cloning the remote at the commit, applying the patch,
copying the frozen requirements into the code and running the entry point
(``wandb/apis/public/jobs.py``, ``Job._configure_launch_project_*``). The same
happens here, split the launchplane way: :func:`job_layer` (pure) writes it as a
job layer - ``git.repository``/``git.commit``/``git.patch``, ``requirements``,
``entry_point``, ``docker.image`` - and the agent clones, patches and writes
``requirements.frozen.txt`` into the checkout (``agent/gitcode.py``); image
builders install that file, the local-process runner compares it with what
is installed.

Where a job comes from (:func:`resolve_job_reference`): ``job: ./my-job/`` (or a
path to its ``wandb-job.json``) in a job file, relative to that file;
``--job-dir`` (:func:`load_wandb_job`); or ``job: entity/project/name:alias``,
downloaded through the ``wandb`` package (extra ``launchplane[wandb]``) on the
submitter's machine when W&B is configured. Servers and agents never talk to
W&B: they receive the job layer, the patch and requirements inlined.

Deliberate differences from W&B, each for a reason:

* ``python3.10 train.py`` runs as ``train.py`` with the runner's Python (the
  agent's interpreter for a local process, the image's ``python`` in a
  container): launchplane's images follow the queue's base image, not the
  job's ``runtime``, so a versioned interpreter name would not be found there.
  ``runtime`` is not used (W&B uses it only to pick its build image).
* ``source_type: artifact`` needs the code artifact, which only W&B serves:
  download it and give its directory as ``workdir:`` next to ``job:``.
* Notebook jobs are refused (W&B converts them with nbconvert): convert the
  notebook to a script and set ``entry_point``.
* ``input_types`` are checked against the job file's ``hyperparameters`` as
  W&B's ``Job.call`` checks its config (a key the job does not declare, or a
  value of the wrong type, is an error); inputs left out are allowed (the code
  has its defaults). Partial jobs (``_partial``, made by ``wandb job create``)
  are not checked, as in W&B.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launchplane.core.config.merge import deep_merge
from launchplane.core.errors import ConfigError, FieldError, kind_of, suggest

JOB_FILE = "wandb-job.json"
REQUIREMENTS_FILE = "requirements.frozen.txt"
PATCH_FILE = "diff.patch"
SOURCE_TYPES = ("repo", "artifact", "image")
MAX_FILE_BYTES = 16 * 1024 * 1024
"""A job file, patch or requirements file larger than this is refused (a patch of a data file)."""
DEFAULT_WANDB_HOST = "https://api.wandb.ai"

_PYTHON = re.compile(r"python(\d+(\.\d+)*)?")
_WANDB_NAME = re.compile(r"[^/\s:]+/[^/\s:]+/[^/\s:]+(:[^/\s:]+)?")
"""``entity/project/name`` with an optional ``:alias``: what W&B's ``launch --job`` takes."""


_BUILD_KEYS = {"dockerfile": ("docker", "dockerfile"), "base_image": ("builder", "base_image")}
"""``source`` keys of a job made with ``wandb job create --dockerfile/--base-image``."""


@dataclass(frozen=True)
class WandbJob:
    """A W&B job, translated: the job layer and what checks a submitter's values against it."""

    layer: dict[str, Any]
    source: str
    """Where it came from (a path, or the W&B name), for messages."""
    input_types: Mapping[str, Any] | None = None
    partial: bool = False
    needs_code: str | None = None
    """``source.artifact`` of an artifact job: the code it needs, which the job file must give."""


def job_layer(
    info: Any,
    *,
    source: str,
    name: str | None = None,
    requirements: str | None = None,
    patch: str | None = None,
) -> WandbJob:
    """``wandb-job.json`` (parsed) plus the texts of its two companion files, as a job layer.

    ``name`` becomes the layer's ``job`` (the job's name in records and labels).
    Raises :class:`ConfigError` with every problem, each naming the W&B key.
    """
    if not isinstance(info, Mapping):
        raise ConfigError(f"{JOB_FILE} must hold a mapping, not {kind_of(info)}", source=source)
    errors: list[FieldError] = []
    layer: dict[str, Any] = {"job": name} if name else {}
    src = info.get("source") or {}
    if not isinstance(src, Mapping):
        raise ConfigError(
            [FieldError("source", f"must be a mapping, not {kind_of(src)}")], source=source
        )
    kind = info.get("source_type")
    code, needs_code = _code_source(kind, src, patch, errors)
    layer.update(code)
    if src.get("notebook") and kind != "image":
        errors.append(
            FieldError(
                "source.notebook",
                "notebook jobs are not run by launchplane (W&B converts them with nbconvert): "
                "convert the notebook (jupyter nbconvert --to script) and set entry_point",
            )
        )
    entrypoint = src.get("entrypoint")
    if entrypoint is not None:
        if isinstance(entrypoint, str):
            entrypoint = entrypoint.split()
        if not isinstance(entrypoint, list) or not all(isinstance(p, str) for p in entrypoint):
            errors.append(FieldError("source.entrypoint", "must be a list of strings"))
        elif entrypoint:
            layer["entry_point"] = entry_point(entrypoint)
    for key, (section, target) in _BUILD_KEYS.items():
        value = src.get(key)
        if isinstance(value, str) and value:
            layer.setdefault(section, {})[target] = value
    build_context = src.get("build_context")
    if isinstance(build_context, str) and build_context.strip("./"):
        layer["workdir"] = build_context
    if requirements is not None and kind != "image":
        layer["requirements"] = requirement_lines(requirements)
    if errors:
        raise ConfigError(errors, source=source)
    input_types = info.get("input_types")
    return WandbJob(
        layer,
        source,
        input_types if isinstance(input_types, Mapping) else None,
        partial=bool(info.get("_partial")),
        needs_code=needs_code,
    )


def _code_source(
    kind: Any, src: Mapping[str, Any], patch: str | None, errors: list[FieldError]
) -> tuple[dict[str, Any], str | None]:
    """The layer's code for each ``source_type``, and an artifact job's code artifact."""
    if kind == "repo":
        git = src.get("git") if isinstance(src.get("git"), Mapping) else {}
        remote, commit = git.get("remote"), git.get("commit")
        for key, value in (("remote", remote), ("commit", commit)):
            if not isinstance(value, str) or not value.strip():
                errors.append(
                    FieldError(f"source.git.{key}", "a repo job needs the git remote and commit")
                )
        repo: dict[str, Any] = {"repository": remote, "commit": commit}
        if patch is not None and patch.strip():
            repo["patch"] = patch
        return {"git": repo}, None
    if kind == "artifact":
        artifact = src.get("artifact")
        if isinstance(artifact, str) and artifact:
            return {"artifact": artifact}, artifact
        errors.append(FieldError("source.artifact", "an artifact job needs its code artifact"))
    elif kind == "image":
        image = src.get("image")
        if isinstance(image, str) and image:
            return {"docker": {"image": image}}, None
        errors.append(FieldError("source.image", "an image job needs the image"))
    else:
        errors.append(
            FieldError(
                "source_type",
                f"must be one of {', '.join(SOURCE_TYPES)}, not {kind!r}"
                + (suggest(kind, SOURCE_TYPES) if isinstance(kind, str) else ""),
            )
        )
    return {}, None


def entry_point(command: list[str]) -> list[str]:
    """W&B's ``[python3.10, train.py, ...]`` as ``[train.py, ...]``; anything else as is.

    launchplane runs a ``.py`` entry point with the runner's Python (see the
    module docstring for why the version is dropped).
    """
    python = len(command) >= 2 and _PYTHON.fullmatch(os.path.basename(command[0]))
    if python and command[1].endswith(".py"):
        return command[1:]
    return list(command)


def requirement_lines(text: str) -> list[str]:
    """The lines of ``requirements.frozen.txt`` that say something (no blanks, no comments)."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def is_job_path(value: str) -> bool:
    """``job:`` as a path: ``./my-job/``, ``../x``, ``/abs``, ``~/x``, ``x/wandb-job.json``."""
    return (
        value.startswith(("./", "../", "/", "~"))
        or value in (".", "..")
        or value.endswith("/")
        or os.path.basename(value) == JOB_FILE
    )


def is_wandb_job_name(value: str) -> bool:
    """``entity/project/name[:alias]``: a job W&B serves (not a path, not a plain name)."""
    return not is_job_path(value) and bool(_WANDB_NAME.fullmatch(value))


def read_wandb_job(path: str | os.PathLike[str], *, name: str | None = None) -> WandbJob:
    """Read a downloaded job: its directory or its ``wandb-job.json``.

    ``name`` [the directory's name] becomes the layer's ``job``.
    """
    given = Path(path).expanduser()
    display = os.path.normpath(given)
    if not given.exists():
        raise ConfigError(
            f"no such directory or file: a downloaded W&B job is a directory holding {JOB_FILE} "
            f"(or that file itself); get one with `wandb artifact get entity/project/name:alias`",
            source=display,
        )
    directory, job_file = (given, given / JOB_FILE) if given.is_dir() else (given.parent, given)
    info_text = _read(job_file, display, required=True)
    assert info_text is not None
    try:
        info = json.loads(info_text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{JOB_FILE} is not JSON (line {exc.lineno}: {exc.msg})", source=display
        ) from None
    return job_layer(
        info,
        source=display,
        name=name or directory.resolve().name,
        requirements=_read(directory / REQUIREMENTS_FILE, display),
        patch=_read(directory / PATCH_FILE, display),
    )


def load_wandb_job(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The job layer of a downloaded W&B job (``--job-dir``): a directory or its ``wandb-job.json``.

    An artifact job is refused here, since nothing gives its code (a job file
    can: ``workdir:`` next to ``job:``).
    """
    job = read_wandb_job(path)
    if job.needs_code:
        raise missing_code(job)
    return job.layer


def missing_code(job: WandbJob) -> ConfigError:
    """The error for an artifact job whose code nobody gave."""
    return ConfigError(
        [
            FieldError(
                "source.artifact",
                f"this W&B job runs code from the W&B artifact {job.needs_code}, which "
                "launchplane cannot fetch; download it (wandb artifact get) and give its "
                "directory as workdir: next to job: in a job file, or use a repo or image job",
            )
        ],
        source=job.source,
    )


def with_wandb_job(layer: Mapping[str, Any], relative_to: Path) -> dict[str, Any]:
    """``layer`` over the W&B job its ``job:`` names; ``layer`` as is when ``job`` is a plain name.

    What a job file (``job: ./my-job/``, relative to ``relative_to``) and the
    CLI's ``-j/--job`` (relative to the current directory) both need: the
    layer's own keys win (``entry_point`` next to ``job`` replaces the job's),
    its ``hyperparameters`` are checked against the job's ``input_types``, and
    an artifact job needs its code in the layer (``workdir``, or ``git``).
    Raises :class:`ConfigError`; a problem of the W&B job itself is said under
    ``job``, with where the job came from.
    """
    ref = layer.get("job")
    if not isinstance(ref, str):
        return dict(layer)
    try:
        job = resolve_job_reference(ref, relative_to)
        if job is not None and job.needs_code and not ("workdir" in layer or "git" in layer):
            raise missing_code(job)
    except ConfigError as exc:
        where = f" ({exc.source})" if exc.source else ""
        raise ConfigError(
            [
                FieldError(
                    "job",
                    (f"{error.path}: " if error.path not in ("", "job") else "")
                    + error.message
                    + where,
                )
                for error in exc.errors
            ]
        ) from None
    if job is None:
        return dict(layer)
    own = {key: value for key, value in layer.items() if key != "job"}
    merged = deep_merge(job.layer, own)
    errors = input_type_errors(job, merged.get("hyperparameters"))
    if errors:
        raise ConfigError(errors)
    return merged


def resolve_job_reference(value: str, relative_to: Path) -> WandbJob | None:
    """The W&B job a ``job:`` string names, or None when it is a plain job name.

    A path (see :func:`is_job_path`) is read relative to ``relative_to`` (the
    job file's directory); ``entity/project/name:alias`` is downloaded through
    the ``wandb`` package into a temporary directory, read, and removed (the
    layer carries everything the agent needs). Its ``project`` defaults to the
    name's project, as W&B's launch does.
    """
    if is_job_path(value):
        return read_wandb_job(relative_to / Path(value).expanduser())
    if not is_wandb_job_name(value):
        return None
    with tempfile.TemporaryDirectory(prefix="launchplane-wandb-job-") as tmp:
        directory = fetch_wandb_job(value, Path(tmp))
        job = read_wandb_job(directory, name=value)
    job.layer.setdefault("project", value.split("/")[1])
    return WandbJob(job.layer, value, job.input_types, job.partial, job.needs_code)


def fetch_wandb_job(name: str, dest: Path) -> Path:
    """Download the W&B job ``entity/project/name:alias`` into ``dest``; return its directory.

    Needs the ``wandb`` package (``pip install 'launchplane[wandb]'``) and W&B
    credentials (``WANDB_API_KEY``, or ``wandb login``; ``WANDB_BASE_URL`` for
    a server of one's own). Each missing piece is a :class:`ConfigError` saying
    what to do, never a prompt.
    """
    try:
        import wandb
    except ImportError:
        raise ConfigError(
            [
                FieldError(
                    "job",
                    f"'{name}' is a W&B job; fetching it needs the wandb package: "
                    "pip install 'launchplane[wandb]' (or download it with "
                    f"`wandb artifact get {name}` and write job: ./<its directory>/)",
                )
            ]
        ) from None
    if not wandb_configured():
        raise ConfigError(
            [
                FieldError(
                    "job",
                    f"'{name}' is a W&B job and W&B is not configured here: set WANDB_API_KEY "
                    "(and WANDB_BASE_URL for your own W&B server) or run `wandb login`",
                )
            ]
        )
    try:
        artifact = wandb.Api(timeout=60).artifact(name, type="job")
        return Path(artifact.download(root=str(dest)))
    except Exception as exc:  # wandb raises its own CommError, ValueError, HTTP errors
        raise ConfigError(
            [FieldError("job", f"cannot fetch the W&B job '{name}': {exc}")]
        ) from None


def wandb_configured() -> bool:
    """True when W&B has credentials: ``WANDB_API_KEY``, or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL") or DEFAULT_WANDB_HOST).hostname
    try:
        entries = netrc.netrc(os.environ.get("NETRC"))
    except (OSError, netrc.NetrcParseError):
        return False
    return host is not None and entries.authenticators(host) is not None


def input_type_errors(job: WandbJob, hyperparameters: Any) -> list[FieldError]:
    """``hyperparameters`` checked against the job's ``input_types``, as W&B's ``Job.call`` does.

    A key the job does not declare and a value of the wrong type are errors;
    a declared input left out is not. Partial jobs are not checked.
    """
    types = job.input_types
    if job.partial or types is None or not isinstance(hyperparameters, Mapping):
        return []
    return _check(types, dict(hyperparameters), "hyperparameters", job.source)


_SIMPLE_TYPES: dict[str, tuple[str, Any]] = {
    "number": ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    "string": ("a string", lambda v: isinstance(v, str)),
    "boolean": ("a boolean", lambda v: isinstance(v, bool)),
    "none": ("null", lambda v: v is None),
    "list": ("a list", lambda v: isinstance(v, list)),
}


def _check(wb_type: Mapping[str, Any], value: Any, path: str, source: str) -> list[FieldError]:
    name = wb_type.get("wb_type")
    params = wb_type.get("params") if isinstance(wb_type.get("params"), Mapping) else {}
    if name == "typedDict":
        type_map = params.get("type_map")
        if not isinstance(type_map, Mapping):
            return []
        if not isinstance(value, Mapping):
            return [_wrong(path, "a mapping", value, source)]
        errors: list[FieldError] = []
        for key, item in value.items():
            if key not in type_map:
                declared = ", ".join(map(str, type_map)) or "none"
                errors.append(
                    FieldError(
                        f"{path}.{key}",
                        f"not an input of the W&B job {source}"
                        f"{suggest(str(key), map(str, type_map))} "
                        f"(its input_types declare: {declared})",
                    )
                )
            elif isinstance(type_map[key], Mapping):
                errors.extend(_check(type_map[key], item, f"{path}.{key}", source))
        return errors
    if name == "union":
        allowed = [t for t in params.get("allowed_types") or [] if isinstance(t, Mapping)]
        if allowed and all(_check(t, value, path, source) for t in allowed):
            kinds = " or ".join(
                _SIMPLE_TYPES.get(t.get("wb_type"), (str(t.get("wb_type")),))[0] for t in allowed
            )
            return [_wrong(path, kinds, value, source)]
        return []
    if name in _SIMPLE_TYPES:
        what, accepts = _SIMPLE_TYPES[name]
        return [] if accepts(value) else [_wrong(path, what, value, source)]
    return []  # any, unknown, media and artifact types: W&B's own objects, not checked here


def _type_words(wb_type: Mapping[str, Any]) -> str:
    name = str(wb_type.get("wb_type"))
    return _SIMPLE_TYPES[name][0] if name in _SIMPLE_TYPES else name


def _wrong(path: str, expected: str, value: Any, source: str) -> FieldError:
    return FieldError(
        path,
        f"the W&B job {source} declares {expected} (input_types), got {kind_of(value)} {value!r}",
    )


def _read(path: Path, display: str, *, required: bool = False) -> str | None:
    """A file of the job as text; None when an optional one is absent."""

    def unreadable(exc: OSError) -> ConfigError:
        return ConfigError(f"cannot read {path.name}: {exc.strerror or exc}", source=display)

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        if required:
            raise ConfigError(
                f"not a W&B job: no {path.name} (a downloaded job is a directory "
                f"holding {JOB_FILE}, {REQUIREMENTS_FILE} and maybe {PATCH_FILE})",
                source=display,
            ) from None
        return None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path.name}: {exc.strerror or exc}", source=display
        ) from None
    if size > MAX_FILE_BYTES:
        raise ConfigError(
            f"{path.name} is {size} bytes, over the limit of {MAX_FILE_BYTES}", source=display
        )
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path.name} is not UTF-8 text (byte {exc.start})", source=display
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path.name}: {exc.strerror or exc}", source=display
        ) from None

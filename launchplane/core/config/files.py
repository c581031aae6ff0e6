"""Reading job and queue config files: ``base_config`` chains, the job's local code.

Files are YAML or JSON, read with the safe loader (:mod:`launchplane.core.yamlsafe`),
which is imported on first use: only commands on a submitter's machine read
files; the server and the agent receive jobs as JSON. ``base_config:`` names
a file, relative to the including file, whose content the including file
overrides; chains are followed, a cycle is an error that prints the chain.
``job:`` naming a W&B job (``./my-job/``, relative to the file, or
``entity/project/name:alias``) puts that job's layer under the file's own keys
(:mod:`.wandb_job`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launchplane.core.config.merge import deep_merge
from launchplane.core.config.normalise import normalise_layer
from launchplane.core.errors import ConfigError, FieldError, kind_of

if TYPE_CHECKING:
    from launchplane.core.yamlsafe import Limits


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

    Not validated: pass the result to :func:`.queue_check.check_queue_config`
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
        data = _read_mapping(current, display, referrer, limits, warn_wandb=not queue)
        layer, errors = normalise_layer(data, queue=queue)
        base = layer.pop("base_config", None)
        if errors:
            raise ConfigError(errors, source=display)
        if not queue:
            layer = _with_wandb_job(layer, current, display)
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


def _with_wandb_job(layer: dict[str, Any], path: Path, display: str) -> dict[str, Any]:
    """The file's layer over the W&B job its ``job:`` names (:func:`.wandb_job.with_wandb_job`)."""
    from launchplane.core.config.wandb_job import with_wandb_job

    try:
        return with_wandb_job(layer, path.parent)
    except ConfigError as exc:
        raise ConfigError(exc.errors, source=display) from None


def _read_mapping(
    path: Path,
    display: str,
    referrer: tuple[str, str] | None,
    limits: Limits,
    *,
    warn_wandb: bool = False,
) -> dict[str, Any]:
    """Read and parse one config file; it must hold a mapping (an empty file is ``{}``).

    ``warn_wandb``: a job file in W&B's launch-spec shape is read as launchplane reads
    it (YAML 1.2), with a :class:`~launchplane.core.yamlsafe.ReadingWarning` for each
    value W&B (YAML 1.1) reads otherwise.
    """
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
            f"not {kind_of(data)}",
            source=display,
        )
    if warn_wandb and _wandb_shaped(data) and not display.lower().endswith(".json"):
        import warnings

        from launchplane.core.yamlsafe import ReadingWarning, reading_differences

        for difference in reading_differences(text, source=display, limits=limits):
            warnings.warn(
                f"{display}: {difference.message('launchplane')}", ReadingWarning, stacklevel=1
            )
    return data


WANDB_SPEC_MARKS = ("overrides", "uri", "run_id", "resource", "image_uri")
"""Top-level keys only a W&B launch spec has (with ``docker.docker_image``, ``git.repo``,
``git.version``): a job file holding one is W&B-shaped."""


def _wandb_shaped(data: dict[str, Any]) -> bool:
    docker, git = data.get("docker"), data.get("git")
    return (
        any(key in data for key in WANDB_SPEC_MARKS)
        or (isinstance(docker, dict) and "docker_image" in docker)
        or (isinstance(git, dict) and bool({"repo", "version"} & set(git)))
    )


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

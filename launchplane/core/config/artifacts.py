"""Where a job's ``input_artifacts`` / ``output_artifacts`` come from and go: pure rules.

One home for what the server (at submit), ``plan``, the agent's ``artifacts``
stage and the runners must agree on, so that a job refused nowhere is never
half-served somewhere:

* **Which store.** A plain name (``dataset``, ``dataset:v3``) lives in the
  queue's ``artifact_store``; a ``wandb-artifact://entity/project/name:alias``
  URI in the ``wandb`` store (with the queue's store options when the queue's
  store is ``wandb`` itself). Any other URI (``s3://bucket/prefix``) is not a
  store artifact but the runner's own input: only the ``sagemaker`` runner
  reads one (an S3 input channel); every other runner refuses it
  (:func:`runner_native_inputs`), none ignores it. An input with a ``slot``
  (W&B's ``overrides.artifacts``) is the W&B SDK's (:func:`is_sdk_input`): the
  job's ``use_artifact`` fetches it, as under W&B's own agent.
* **Where the job sees an input** (:func:`input_target`): the ref's ``path``,
  else ``artifacts/<name>``. A relative target is under the run's root: the
  run directory for the local-process runner, ``/launchplane`` in a container
  (where ``/launchplane/output`` is the output directory, as ``output/`` is in
  the run directory). An absolute target is a path inside a container.
* **How the job finds it** (:func:`input_env`): ``LAUNCHPLANE_ARTIFACT_<NAME>``
  holds the final path, ``<NAME>`` the artifact's last name segment in upper
  case with every character other than a letter or digit as ``_``
  (``processed-dataset`` -> ``LAUNCHPLANE_ARTIFACT_PROCESSED_DATASET``).
* **Which output file** (:func:`output_path`): the ref's ``path`` relative to
  the run's output directory (``$LAUNCHPLANE_OUTPUT_DIR``), else the
  artifact's (expanded) last name segment there.

:func:`artifact_errors` is the submit-time check of a resolved job.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath
from typing import Any

from launchplane.core.config.keypath import format_path
from launchplane.core.config.macros import MACRO_NAMES
from launchplane.core.errors import FieldError
from launchplane.core.interfaces import ARTIFACT_NAME, ARTIFACT_VERSION, Mount, PluginError
from launchplane.core.spec import ArtifactRef, ResolvedJob
from launchplane.core.wandb_artifacts import SCHEME

WANDB_STORE = "wandb"
"""The registry name of the store that serves ``wandb-artifact://`` URIs."""
INPUTS_DIR = "artifacts"
"""The default folder of input artifacts under the run's root."""
OUTPUT_DIR = "output"
"""The run's output folder under the run's root: no input may be mounted in it."""
ENV_PREFIX = "LAUNCHPLANE_ARTIFACT_"
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
_MACRO = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
STORE_HINT = (
    "an admin sets artifact_store: {type: file, options: {root: /mnt/artifacts}} on the queue, "
    "or name a W&B artifact as wandb-artifact://entity/project/name:alias"
)


def is_store_ref(ref: ArtifactRef) -> bool:
    """True for a plain name or a ``wandb-artifact://`` URI: what the agent downloads."""
    return ref.name.startswith(SCHEME) or not _SCHEME.match(ref.name)


def is_sdk_input(ref: ArtifactRef) -> bool:
    """An input with a ``slot`` (W&B's ``overrides.artifacts``): the job's own
    ``wandb.use_artifact(slot)`` swaps it in, as under W&B's agent, so the agent
    neither downloads nor mounts it; the W&B integration hands it over in
    ``WANDB_ARTIFACTS``. It is pinned only when its alias is a version (``v3``)."""
    return ref.slot is not None


def runner_native_inputs(job: ResolvedJob) -> list[ArtifactRef]:
    """Inputs named by another URI (``s3://``): a runner reads them itself or refuses the job."""
    return [ref for ref in job.input_artifacts if not (is_store_ref(ref) or is_sdk_input(ref))]


def refuse_native_inputs(job: ResolvedJob, runner: str) -> None:
    """:class:`PluginError` for a runner that has no native way to read URI inputs."""
    if native := runner_native_inputs(job):
        names = ", ".join(ref.name for ref in native)
        raise PluginError(
            f"input artifact {names}: runner '{runner}' cannot read a URI input (only the "
            "sagemaker runner makes s3:// inputs input channels); put the data in the queue's "
            "artifact store and name it there, or run the job on a sagemaker queue"
        )


def refuse_mounts(mounts: Sequence[Mount], runner: str) -> None:
    """:class:`PluginError` for a runner that cannot make the agent's downloads visible yet."""
    if mounts:
        targets = ", ".join(mount.target for mount in mounts)
        raise PluginError(
            f"input artifacts are not supported by runner '{runner}' yet (the job would "
            f"read {targets}); run the job on a docker or local-process queue (sagemaker and "
            "kubernetes: with an s3 artifact store; kubernetes also with a file store its "
            "artifact_volumes maps), or give it the data another way"
        )


def short_name(name: str) -> str:
    """The last segment of an artifact name, without a URI scheme (``e/p/data`` -> ``data``)."""
    return name.removeprefix(SCHEME).rstrip("/").rsplit("/", 1)[-1]


def input_env(ref: ArtifactRef) -> str:
    """``LAUNCHPLANE_ARTIFACT_<NAME>``: the variable that holds the input's final path."""
    return ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", short_name(ref.name).upper())


def input_target(ref: ArtifactRef) -> str:
    """The ref's ``path``, else ``artifacts/<name>`` (relative: under the run's root)."""
    return ref.path or f"{INPUTS_DIR}/{short_name(ref.name)}"


def store_of(ref: ArtifactRef, job: ResolvedJob) -> tuple[str, dict[str, Any], str]:
    """``(store type, store options, name in the store)`` of a store artifact.

    Raises :class:`PluginError` for a plain name on a queue without a store.
    """
    if ref.name.startswith(SCHEME):
        store = job.artifact_store
        options = dict(store.options) if store is not None and store.type == WANDB_STORE else {}
        return WANDB_STORE, options, ref.name.removeprefix(SCHEME)
    if job.artifact_store is None:
        raise PluginError(
            f"artifact {ref.name!r} needs the queue's artifact_store, and queue "
            f"'{job.queue}' has none: {STORE_HINT}"
        )
    return job.artifact_store.type, dict(job.artifact_store.options), ref.name


def output_path(ref: ArtifactRef, name: str) -> str:
    """The output's file or folder relative to the output directory (``name`` is expanded)."""
    return ref.path or short_name(name)


def artifact_errors(job: ResolvedJob) -> list[FieldError]:
    """Every problem of the job's artifact refs, at its field path, with the fix.

    A plain name on a queue without ``artifact_store`` is not among them: W&B
    launch specs and the reference examples carry artifact names onto queues
    that have no store (yet), and refusing them at submit would refuse those
    jobs outright; the agent fails such a job in its ``artifacts`` stage,
    before anything is built or run, with :data:`STORE_HINT` as the fix.
    """
    errors: list[FieldError] = []
    taken: dict[str, str] = {}
    for index, ref in enumerate(job.input_artifacts):
        where = ("input_artifacts", index)
        if not is_store_ref(ref):
            continue  # the runner's own (see runner_native_inputs)
        errors += _ref_errors(ref, where, ref.name)
        if is_sdk_input(ref):
            continue  # not mounted: no path or variable to collide
        target = input_target(ref)
        if problem := _target_problem(target):
            errors.append(FieldError(format_path((*where, "path")), problem))
        for key in (input_env(ref), _normal(target)):
            if key in taken:
                errors.append(
                    FieldError(
                        format_path(where),
                        f"{ref.name!r} would be mounted at the same path or variable ({key}) as "
                        f"{taken[key]}; give one of them another path (and last name segment)",
                    )
                )
            taken[key] = format_path(where)
    for index, ref in enumerate(job.output_artifacts):
        where = ("output_artifacts", index)
        if not is_store_ref(ref):
            errors.append(
                FieldError(
                    format_path((*where, "name")),
                    f"{ref.name!r}: an output goes to the queue's artifact store (a plain name) "
                    "or to W&B (wandb-artifact://entity/project/name)",
                )
            )
            continue
        errors += _ref_errors(ref, where, _macros_filled(ref.name))
        if ref.alias is not None and ARTIFACT_VERSION.match(ref.alias):
            errors.append(
                FieldError(
                    format_path((*where, "alias")),
                    f"{ref.alias!r} is a version; an upload makes its own: give an alias "
                    "such as 'prod', or none ('latest' always moves)",
                )
            )
        path = output_path(ref, _macros_filled(ref.name))
        if ".." in PurePosixPath(path).parts:
            errors.append(
                FieldError(
                    format_path((*where, "path")),
                    f"{path!r} leaves the output directory; give a path inside "
                    "$LAUNCHPLANE_OUTPUT_DIR (relative to it)",
                )
            )
    return errors


def _ref_errors(ref: ArtifactRef, where: tuple[str | int, ...], name: str) -> list[FieldError]:
    errors: list[FieldError] = []
    segments = name.removeprefix(SCHEME).split("/")
    if not all(ARTIFACT_NAME.match(s) and s not in (".", "..") for s in segments):
        hint = ""
        if "$" in name:
            known = ", ".join(f"${{{m}}}" for m in sorted(MACRO_NAMES))
            hint = f" (only launch macros expand in an output's name: {known})"
        errors.append(
            FieldError(
                format_path((*where, "name")),
                f"{ref.name!r} is not a valid artifact name: use letters, digits, '.', '_' and "
                "'-' (up to 128, starting with a letter or digit; W&B names may have "
                f"entity/project/ before it){hint}",
            )
        )
    if ref.alias is not None and (not ARTIFACT_NAME.match(ref.alias) or ref.alias in (".", "..")):
        errors.append(
            FieldError(
                format_path((*where, "alias")),
                f"{ref.alias!r} is not a valid alias or version: use letters, digits, '.', "
                "'_' and '-' (latest, prod, v3)",
            )
        )
    return errors


def _macros_filled(name: str) -> str:
    """``name`` with every launch macro as ``x``: what its expansion will look like."""
    return _MACRO.sub(lambda m: "x" if m[1] in MACRO_NAMES else m[0], name)


def _normal(target: str) -> str:
    return str(PurePosixPath(target))


def _target_problem(target: str) -> str | None:
    path = PurePosixPath(target)
    parts = [p for p in path.parts if p != "/"]
    if not parts or ".." in parts or "\\" in target:
        return (
            f"{target!r} is not a path the job can be given; use a relative path "
            "(under the run's root) or an absolute one inside a container, without '..'"
        )
    if not path.is_absolute() and parts[0] == OUTPUT_DIR:
        return (
            f"{target!r} is inside the run's output directory, whose files are the job's "
            "outputs; mount the input elsewhere (e.g. data/...)"
        )
    return None


def mounted_inputs(job: ResolvedJob) -> Iterator[ArtifactRef]:
    """The inputs the agent downloads and mounts (store artifacts, not the W&B SDK's), in order."""
    return (ref for ref in job.input_artifacts if is_store_ref(ref) and not is_sdk_input(ref))

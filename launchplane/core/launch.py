"""What every builder and runner needs to know about launching a job, in one home.

Runners and builders read the same few facts off a resolved job: the
command line it runs (:func:`job_argv`), where its code is
(:func:`code_root`) and the labels that identify one run
(:func:`run_labels`). Written once here, the local-process runner, the
docker runner and the Dockerfile generator cannot drift apart, and a
third-party runner gets the same rules by importing them.

Pure functions: no I/O (not even an existence check: the caller says what a
missing directory means for it), no plugin imports.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from launchplane.core.interfaces import JobContext, PluginError
from launchplane.core.spec import QueueConfig, ResolvedJob

LABEL_PREFIX = "launchplane."
"""Labels under this prefix are launchplane's; a job may not set them itself."""
JOB_LABEL = "launchplane.job_id"
ATTEMPT_LABEL = "launchplane.attempt"
RUN_LABEL = "launchplane.run_id"
QUEUE_LABEL = "launchplane.queue"
DEFAULT_BUILDER = "noop"
"""The builder of a job whose ``builder.type`` is not set."""


def entry_argv(
    entry_point: str | Sequence[str] | None, *, python: str = "python"
) -> list[str] | None:
    """``entry_point`` as an argv: ``train.py --fast`` -> ``[python, train.py, --fast]``.

    A string is split like a shell would; a program ending in ``.py`` runs
    with ``python`` (the agent's own interpreter for a local process, the
    image's ``python`` in a container); anything else is run as given. None
    when there is no entry point.
    """
    if not entry_point:
        return None
    parts = shlex.split(entry_point) if isinstance(entry_point, str) else list(entry_point)
    if parts and parts[0].endswith(".py"):
        parts.insert(0, python)
    return parts


def job_argv(job: ResolvedJob, *, python: str = "python") -> list[str] | None:
    """The command line a job runs: ``command`` + ``args``, else ``entry_point`` + ``args``.

    With neither, the ``args`` alone (arguments for an image's own
    ``ENTRYPOINT``), or None when there are none either (the image's
    ``CMD`` runs). See :func:`entry_argv` for ``python``. ``submit``
    receives the job with macros expanded, so this is the real command
    there; in ``describe`` it still holds the macro text.
    """
    args = list(job.args or [])
    if job.command:
        return [*job.command, *args]
    entry = entry_argv(job.entry_point, python=python)
    if entry is None:
        return args or None
    return [*entry, *args]


def code_root(job: ResolvedJob, ctx: JobContext) -> Path | None:
    """Where the job's code is on the agent host, or None when it has none.

    The git checkout (``ctx.code_dir``; a relative ``workdir`` is a folder of
    it, and never outside it, symlinks resolved), else an absolute ``workdir``
    (the CLI resolves a relative one against the job file at submit time). A
    relative ``workdir`` without git code is an error, since nothing says what
    it is relative to.
    """
    if ctx.code_dir is not None:
        if not job.workdir:
            return ctx.code_dir
        # Symlinks resolved: a folder of the checkout may not lead out of it (../.., /etc).
        root, checkout = (ctx.code_dir / job.workdir).resolve(), ctx.code_dir.resolve()
        if not root.is_relative_to(checkout):
            raise PluginError(
                f"workdir {job.workdir!r} leaves the job's code directory (it is {root}); "
                "give a folder inside the git checkout"
            )
        return root
    if not job.workdir:
        return None
    root = Path(job.workdir).expanduser()
    if not root.is_absolute():
        raise PluginError(
            f"workdir {job.workdir!r} is relative and the job has no git code; "
            "give an absolute path (the CLI resolves workdir against the job file)"
        )
    return root


def run_labels(ctx: JobContext) -> dict[str, str]:
    """The labels of one run: ``ctx.labels`` (from plugins) plus those that identify it.

    ``launchplane.job_id``, ``launchplane.attempt``, ``launchplane.run_id``
    and ``launchplane.queue`` win over a plugin's label of the same name, so
    a restarted agent can always find the run by them.
    """
    return {**ctx.labels, **_identity(ctx.job_id, str(ctx.attempt), ctx.run_id, ctx.queue)}


def preview_labels(job: ResolvedJob) -> dict[str, str]:
    """:func:`run_labels` as ``describe`` shows them: placeholders for what only a launch knows."""
    return _identity("<job_id>", "<attempt>", "<job_id>-<attempt>", job.queue or "<queue>")


def _identity(job_id: str, attempt: str, run_id: str, queue: str) -> dict[str, str]:
    return {JOB_LABEL: job_id, ATTEMPT_LABEL: attempt, RUN_LABEL: run_id, QUEUE_LABEL: queue}


def builder_name(job: ResolvedJob | QueueConfig) -> str:
    """The builder a job (or a queue's jobs by default) uses: ``builder.type``, else ``noop``."""
    return (job.builder.type if job.builder else None) or DEFAULT_BUILDER

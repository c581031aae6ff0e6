"""Click options shared by several commands: one grammar, one help text.

``--set`` and ``--var`` are parsed together by ``config.command_line_layers``
(``--resource-args`` and ``-c`` by ``launch_args.read_launch_document``); declaring
them once keeps ``plan`` and
``submit`` accepting exactly the same flags. :func:`launch_options` are W&B's
``wandb launch`` flags, which ``submit`` (alias ``launch``) and ``plan``
share; :func:`launch_request` turns them and the job file into the layers
``submit_job`` takes, through ``launchplane.core.launch_args`` (their one home). ``--plugins`` /
``--strict-plugins`` (:func:`plugin_options`) are the same for ``plugins``,
``plan`` and ``run`` (``launch-agent`` declares its own, which a config file
can also set). ``LAUNCHPLANE_PLUGINS`` and
``LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD`` are read by
:func:`launchplane.core.plugins.get_plugin_manager` itself, not by click, so
they apply to Python callers too. Only click is imported here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from launchplane.core.config import Layer

F = TypeVar("F", bound=Callable[..., object])


def override_options(function: F) -> F:
    """Add --set (``sets``), --resource-args (``resource_args``), --var (``variables``)."""
    options = (
        click.option(
            "--set",
            "sets",
            multiple=True,
            metavar="PATH=VALUE",
            help="Override one value, typed like YAML (repeatable), e.g. --set env.LR=3e-4.",
        ),
        click.option(
            "-R",
            "--resource-args",
            "--override-resource-args",
            "resource_args",
            metavar="FILE.json|FILE.yaml|JSON",
            help="W&B-style resource_args override: a JSON object keyed by runner, "
            "or a .json or .yaml file (read as W&B reads it).",
        ),
        click.option(
            "--var",
            "variables",
            multiple=True,
            metavar="NAME=VALUE",
            help="Value of a queue template variable (repeatable), e.g. --var volume_size=200.",
        ),
    )
    for option in reversed(options):
        function = option(function)
    return function


def plugin_options(command: F) -> F:
    """Add ``--plugins`` (parameter ``plugin_specs``) and ``--strict-plugins`` to a command."""
    command = click.option(
        "--strict-plugins",
        is_flag=True,
        help="Fail when any plugin fails to load, instead of skipping it.",
    )(command)
    return click.option(
        "--plugins",
        "plugin_specs",
        multiple=True,
        metavar="MOD[,MOD...]",
        help="Also load these plugin modules; 'no:NAME' blocks a plugin. "
        "Adds to LAUNCHPLANE_PLUGINS.",
    )(command)


def launch_options(function: F) -> F:
    """W&B's ``wandb launch`` flags; parameters named after them (see :func:`launch_request`)."""
    options = (
        click.option(
            "-u", "--uri", metavar="URL|DIR",
            help="The code: a git repository URL, or a local directory (the job's workdir).",
        ),
        click.option(
            "-j", "--job", "wandb_job", metavar="ENTITY/PROJECT/NAME:ALIAS|DIR",
            help="A W&B job: its name, or the directory of a downloaded one.",
        ),
        click.option(
            "--job-dir", metavar="DIR",
            help="A downloaded W&B job (its directory, or its wandb-job.json).",
        ),
        click.option(
            "-E", "--entry-point", metavar="COMMAND",
            help="What to run, split like a shell: -E 'python train.py --lr 0.1'.",
        ),
        click.option("-d", "--docker-image", metavar="IMAGE", help="A ready image to run."),
        click.option("-e", "--entity", metavar="ENTITY", help="The W&B entity (job.entity)."),
        click.option("-p", "--project", metavar="PROJECT", help="The W&B project (job.project)."),
        click.option("--name", envvar="WANDB_NAME", metavar="NAME", help="The run's name."),
        click.option(
            "-c", "--config", "launch_spec", metavar="FILE.json|FILE.yaml|JSON",
            help="A W&B launch spec (overrides.run_config, docker.docker_image, ...) or "
            "launchplane layer, read as W&B reads it: over JOB.yaml and the flags, "
            "under -R and --set.",
        ),
        click.option(
            "-v", "--set-var", "set_vars", multiple=True, metavar="KEY=VALUE",
            help="Template variable value, parsed as W&B does (exactly one '=').",
        ),
        click.option(
            "-P", "--priority", metavar="critical|high|medium|low",
            help="Claim order within the queue.  [default: medium]",
        ),
        click.option(
            "-r", "--resource", metavar="RUNNER",
            help="W&B's runner type: must be the queue's (the queue decides where jobs run).",
        ),
        click.option("-D", "--dockerfile", metavar="PATH", help="The job's Dockerfile."),
        click.option("-B", "--base-image", metavar="IMAGE", help="Image to build the code on."),
        click.option(
            "--build-context", metavar="DIR", help="With -u: the folder of the code to run."
        ),
        click.option(
            "--async", "run_async", is_flag=True,
            help="Return once queued (what submit does without --wait/--follow).",
        ),
        # W&B's hidden flags: mapped, or refused with a line saying what to do instead.
        click.option("-g", "--git-version", hidden=True),
        click.option("-b", "--build", is_flag=True, hidden=True),
        click.option("-rg", "--repository", hidden=True),
        click.option("-pq", "--project-queue", hidden=True),
        click.option("-J", "--job-name", hidden=True),
    )  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


LAUNCH_PARAMETERS = (
    "uri", "wandb_job", "job_dir", "entry_point", "docker_image", "entity", "project", "name",
    "launch_spec", "set_vars", "priority", "resource", "dockerfile", "base_image",
    "build_context", "run_async", "git_version", "build", "repository", "project_queue",
    "job_name",
)  # fmt: skip
"""The parameters :func:`launch_options` adds (``run_async`` is the command's business)."""


def launch_request(
    job_file: Path | None,
    launch: Mapping[str, Any],
    sets: tuple[str, ...] = (),
    resource_args: str | None = None,
    variables: tuple[str, ...] = (),
    *,
    job: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[Layer], dict[str, Any]]:
    """The job layer, override layers and template values of a ``submit``/``plan``.

    ``job``: the job file's layer, already loaded (``plan`` loads it itself);
    else ``job_file`` is loaded here.

    Layers, lowest first: a downloaded W&B job < JOB.yaml < each W&B flag's
    field < the ``-c`` launch spec < ``-R`` < ``--set`` in order. ``--var``
    and ``--set-var`` values win over the spec's ``template_variables``.
    Warnings (the W&B resource_args/template_variables rule, YAML readings)
    are printed to stderr. Raises ConfigError listing every malformed flag.
    """
    from launchplane.core import config
    from launchplane.core.errors import ConfigError, FieldError
    from launchplane.core.launch_args import (
        LaunchArgs,
        launch_layers,
        parse_set_vars,
        read_launch_document,
    )

    with shown_warnings():
        if job is None and job_file is not None:
            job = config.resolve_local_workdir(config.load_job_file(job_file), job_file)
        errors: list[FieldError] = []
        documents: dict[str, dict[str, Any] | None] = {"spec": None, "resource_args": None}
        for key, value, flag in (
            ("spec", launch.get("launch_spec"), "-c/--config"),
            ("resource_args", resource_args, "--resource-args"),
        ):
            if value is None:
                continue
            try:
                documents[key], notes = read_launch_document(value, flag=flag)
            except ConfigError as exc:
                errors += exc.errors
                continue
            for note in notes:
                click.echo(f"warning: {note}", err=True)
        values: dict[str, Any] = {}
        try:
            set_layers, values = config.command_line_layers(sets, variables)
        except ConfigError as exc:
            errors += exc.errors
            set_layers = []
        try:
            values.update(parse_set_vars(launch.get("set_vars") or ()))
        except ConfigError as exc:
            errors += exc.errors
        spec_origin = f"-c {launch.get('launch_spec')}"
        args = LaunchArgs(
            uri=launch.get("uri"),
            job=launch.get("wandb_job"),
            job_dir=launch.get("job_dir"),
            config=documents["spec"],
            config_origin=spec_origin,
            template_variables=values,
            project=launch.get("project"),
            entity=launch.get("entity"),
            resource=launch.get("resource"),
            entry_point=launch.get("entry_point"),
            name=launch.get("name"),
            version=launch.get("git_version"),
            docker_image=launch.get("docker_image"),
            project_queue=launch.get("project_queue"),
            resource_args=documents["resource_args"],
            build=bool(launch.get("build")),
            repository=launch.get("repository"),
            priority=launch.get("priority"),
            dockerfile=launch.get("dockerfile"),
            base_image=launch.get("base_image"),
            build_context=launch.get("build_context"),
            job_name=launch.get("job_name"),
        )
        try:
            layers = launch_layers(args, job, cli=True)
        except ConfigError as exc:
            errors += exc.errors
        if errors:
            raise ConfigError(errors)
        for note in layers.warnings:
            click.echo(f"warning: {note}", err=True)
    return layers.job, [*layers.overrides, *set_layers], layers.template_values


@contextlib.contextmanager
def shown_warnings() -> Iterator[None]:
    """Print Python warnings raised inside (a YAML reading, a W&B rule) as ``warning:`` lines."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                click.echo(f"warning: {warning.message}", err=True)

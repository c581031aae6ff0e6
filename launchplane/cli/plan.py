"""``launchplane plan``: resolve a job against a queue config and show what would run.

The same code path as a launch - load (``base_config`` chains), normalise,
guardrails, templates, validation, the runner's ``resource_args`` model and
its ``describe()`` - stopped before anything is built or submitted. Nothing
is contacted: no server, no cluster, no registry.

stdout holds one document (YAML, or JSON with ``--json``): ``resolved``, and
``would_submit`` when the queue's runner is installed. Warnings and notes go
to stderr. Invalid input exits with status 2 after listing every problem with
its path.

Only click and the stdlib are imported here; the config engine and the plugin
manager are imported when the command runs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from launchplane.cli._options import launch_options, override_options, plugin_options
from launchplane.cli._pins import strict_pins_option

if TYPE_CHECKING:
    from launchplane.core.interfaces import Image, Runner
    from launchplane.core.plugins import PluginRegistry
    from launchplane.core.spec import ResolvedJob

EXIT_INVALID = 2


@click.command("plan")
@click.argument("job_file", metavar="JOB.yaml", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--queue-config",
    "queue_file",
    metavar="QUEUE.yaml",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The queue's config (runner, defaults, templates, guardrails). "
    "Without it: an empty queue (local-process runner, no guardrails).",
)
@click.option(
    "--type",
    "queue_type",
    metavar="TYPE",
    help="QUEUE.yaml is a W&B queue body for this W&B runner type (local-container, "
    "kubernetes, sagemaker, ...), read as 'queue create --type' reads it.",
)
@launch_options
@override_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@click.option(
    "--check-secrets",
    is_flag=True,
    help="Also resolve every secret through its provider, here and now, and report "
    "whether it resolved (never its value). Run it where the agent runs.",
)
@strict_pins_option
@plugin_options
@click.pass_context
def plan(
    ctx: click.Context,
    job_file: Path,
    queue_file: Path | None,
    queue_type: str | None,
    sets: tuple[str, ...],
    resource_args: str | None,
    variables: tuple[str, ...],
    as_json: bool,
    check_secrets: bool,
    strict_pins: bool,
    plugin_specs: tuple[str, ...],
    strict_plugins: bool,
    **launch: Any,
) -> None:
    """Resolve JOB.yaml against a queue config and show what would be submitted.

    \b
    Layers, lowest first: queue config < JOB.yaml (and its base_config chain)
    < W&B's flags (-E, -d, ...) < the -c launch spec < --resource-args <
    --set in the order given (as submit layers them). Secrets are shown as their
    references, never as values. Each unpinned input (a branch without a commit,
    an image by tag, an artifact by alias, an unpinned requirement, in the job or
    a local workdir's requirements.txt) is a warning; with --strict-pins, or on a
    queue with guardrails.require_pins, an error. Exit status 2: invalid input,
    every problem listed with its path.
    """
    from launchplane.core.errors import ConfigError
    from launchplane.core.interfaces import PluginError

    messages: list[str] = []
    try:
        document = _plan(
            job_file,
            queue_file,
            sets,
            resource_args,
            variables,
            list(plugin_specs),
            messages,
            check_secrets=check_secrets,
            strict_plugins=strict_plugins,
            strict_pins=strict_pins,
            launch=launch,
            queue_type=queue_type,
        )
    except ConfigError as exc:
        _echo_all(messages)
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_INVALID)
    except PluginError as exc:  # --strict-plugins
        _echo_all(messages)
        click.echo(f"error: {exc}", err=True)
        ctx.exit(1)
    _echo_all(messages)
    if as_json:
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        from launchplane.core.yamlsafe import dump_document

        click.echo(dump_document(document), nl=False)


def _queue_document(queue_file: Path | None, queue_type: str | None) -> dict[str, Any]:
    """The queue config to plan against: a launchplane file (with its base_config chain),
    or with ``--type`` a W&B queue body translated as ``queue create --type`` does."""
    from launchplane.core import config
    from launchplane.core.errors import ConfigError

    if queue_file is None:
        if queue_type is not None:
            raise ConfigError("--type needs --queue-config: the W&B queue body to read")
        return {}
    if queue_type is None:
        return config.load_queue_file(queue_file)
    from launchplane.core.config.wandb_queue import queue_config_from_wandb
    from launchplane.core.yamlsafe import load_document

    source = f"{queue_file} (a W&B {queue_type} body)"
    try:
        body = load_document(queue_file.read_text(), source=str(queue_file))
    except OSError as exc:
        raise ConfigError(
            f"cannot read it: {exc.strerror or exc}", source=str(queue_file)
        ) from None
    if not isinstance(body, dict):
        raise ConfigError("a W&B queue body must be a mapping of keys", source=source)
    try:
        return queue_config_from_wandb(queue_type, body)
    except ConfigError as exc:
        raise ConfigError(exc.errors, source=source) from None


def _echo_all(messages: list[str]) -> None:
    for message in messages:
        click.echo(message, err=True)


def _plan(
    job_file: Path,
    queue_file: Path | None,
    sets: tuple[str, ...],
    resource_args: str | None,
    variables: tuple[str, ...],
    plugins: list[str],
    messages: list[str],
    *,
    check_secrets: bool = False,
    strict_plugins: bool = False,
    strict_pins: bool = False,
    launch: dict[str, Any] | None = None,
    queue_type: str | None = None,
) -> dict[str, Any]:
    """The plan document; warnings and notes for stderr go to ``messages``.

    Raises ConfigError when the input is invalid; ``messages`` keeps what was
    found before, so a queue warning is shown next to the job's errors.
    """
    from launchplane.cli._options import launch_request
    from launchplane.core import config
    from launchplane.core.config.queue_check import inspect_queue_config
    from launchplane.core.errors import ConfigError
    from launchplane.core.plugin_checks import check_queue_plugins
    from launchplane.core.plugins import get_plugin_manager

    job = config.resolve_local_workdir(config.load_job_file(job_file), job_file)
    queue_raw = _queue_document(queue_file, queue_type)
    try:
        checked = inspect_queue_config(queue_raw)
    except ConfigError as exc:
        raise ConfigError(exc.errors, source=str(queue_file)) from None
    queue = checked.config
    registry = get_plugin_manager(plugins, strict=strict_plugins, log_failures=False)
    with _closing(registry):
        messages += [
            f"note: plugin '{name}' not loaded: {why}" for name, why in registry.load_errors.items()
        ]
        errors, plugin_warnings = check_queue_plugins(queue, checked.placeholders, registry)
        messages += [f"warning: {queue_file}: {warning}" for warning in checked.warnings]
        # A runner that is not installed here is the note below, which says what plan skips.
        messages += [
            f"warning: {queue_file}: {w.path}: {w.message}"
            for w in plugin_warnings
            if w.path != "resource"
        ]
        if errors:
            raise ConfigError(errors, source=str(queue_file))
        messages += _job_placeholder_warnings(job, job_file)
        if queue_file is None:
            messages.append(
                "note: no --queue-config: an empty queue (local-process, no guardrails)"
            )
        job, overrides, values = launch_request(
            job_file, launch or {}, sets, resource_args, variables, job=job
        )
        runner, note = _runner(registry, queue.resource)
        if note:
            messages.append(note)
        runner_class = registry.runners.get(queue.resource)
        try:
            resolved = config.resolve_job(
                queue_raw,
                job,
                overrides,
                values,
                queue_name=job.get("queue") or (queue_file.stem if queue_file else None),
                resource_args_model=runner_class.resource_args_model if runner_class else None,
                trusted=True,  # the queue file's holder previews as its admin
            )
        except ConfigError as exc:
            # Named after the job file unless every problem names the override that caused it.
            in_file = not all(error.origin for error in exc.errors)
            raise ConfigError(exc.errors, source=str(job_file) if in_file else None) from None
        messages += _pin_warnings(resolved, job_file, strict_pins, queue.guardrails.require_pins)
        document: dict[str, Any] = {"resolved": _shown(resolved)}
        if check_secrets and resolved.secrets:
            document["secrets_check"] = _check_secrets(resolved, registry)
        if runner is not None:
            description, note = _describe(runner, resolved)
            if description is not None:
                document["would_submit"] = description
            if note:
                messages.append(note)
        return document


@contextlib.contextmanager
def _closing(registry: PluginRegistry) -> Iterator[PluginRegistry]:
    """Close the plugin instances the plan created (docker clients, ...), also on error."""
    try:
        yield registry
    finally:
        import anyio

        anyio.run(registry.aclose)


def _job_placeholder_warnings(job: dict[str, Any], job_file: Path) -> list[str]:
    """A job is never templated; ``{{x}}`` in it is most likely meant for a queue config."""
    from launchplane.core.config.keypath import show_path
    from launchplane.core.config.templates import find_placeholders

    return [
        f"warning: {job_file}: {show_path(path)}: {{{{{name}}}}} stays as text: only a queue "
        "config is templated (declare it in the queue's template_variables, pass --var)"
        for path, names in find_placeholders(job).items()
        for name in sorted(names)
    ]


def _pin_warnings(resolved: ResolvedJob, job_file: Path, strict: bool, required: bool) -> list[str]:
    """``warning: <path>: <message>`` per unpinned input, or (``strict``, or a queue that
    ``required`` them) a ConfigError listing them, as submit would refuse them."""
    from launchplane.cli._pins import local_code_root
    from launchplane.core.pins import refuse_unpinned, unpinned_inputs

    code = local_code_root([{"git": resolved.git, "workdir": resolved.workdir}])
    found = unpinned_inputs(resolved, code)
    if strict or required:
        why = "--strict-pins" if strict else "the queue requires pins (guardrails.require_pins)"
        refuse_unpinned(found, why, source=f"{job_file}: unpinned inputs")
    return [f"warning: {item}" for item in found]


def _runner(registry: PluginRegistry, name: str) -> tuple[Runner | None, str | None]:
    """The queue's runner, or None and a note saying why the plan stops at the resolved job."""
    from launchplane.core.interfaces import PluginError

    try:
        return registry.runner(name), None
    except PluginError as exc:
        # The registry's word says why: unknown, blocked, failed to load, missing extra.
        absent = "is not installed here: " if name not in registry.runners else ""
        return (
            None,
            f"note: runner '{name}' {absent}{exc}; showing the resolved job without would_submit",
        )


def _describe(runner: Runner, resolved: ResolvedJob) -> tuple[dict[str, Any] | None, str | None]:
    """What the runner would submit, with the image the noop builder would pass through."""
    from launchplane.core.errors import ConfigError, FieldError, runner_message
    from launchplane.core.interfaces import PluginError

    image = _noop_image(resolved)
    try:
        return runner.describe(resolved, image), None
    except NotImplementedError:
        return None, f"note: runner '{resolved.resource}' cannot describe what it would submit"
    except PluginError as exc:
        raise ConfigError([FieldError("", runner_message(resolved.resource, str(exc)))]) from None


def _check_secrets(resolved: ResolvedJob, registry: PluginRegistry) -> dict[str, str]:
    """Resolve every secret through its provider and say ``resolved`` - never the value.

    This is how an admin proves a queue's secret references work (an in-house
    provider is installed, credentials are in place) before any job runs.
    A failure is a ConfigError naming the variable and the reference.
    """
    from functools import partial

    import anyio

    from launchplane.agent.secrets import resolve_secrets
    from launchplane.core.errors import ConfigError, FieldError
    from launchplane.core.interfaces import PluginError
    from launchplane.core.redaction import Redactor

    redactor = Redactor()
    try:
        secrets = anyio.run(
            partial(
                resolve_secrets,
                resolved.secrets,
                registry,
                redactor,
                options=resolved.secret_providers,
                runner=resolved.resource,
            )
        )
    except PluginError as exc:
        raise ConfigError([FieldError("secrets", str(exc))]) from None
    native = f"native reference for runner '{resolved.resource}' (not fetched)"
    checked = {name: f"resolved ({len(text)} characters)" for name, text in secrets.values.items()}
    checked |= dict.fromkeys(secrets.native, native)
    return dict(sorted(checked.items()))


def _noop_image(resolved: ResolvedJob) -> Image | None:
    from launchplane.core.interfaces import Image

    if resolved.docker is not None and resolved.docker.image:
        return Image(ref=resolved.docker.image)
    return None


def _shown(resolved: ResolvedJob) -> dict[str, Any]:
    """The resolved job as JSON-able data, without unset fields and empty collections.

    ``null`` values inside ``env`` (inherit from the agent) are kept: they mean something.
    """
    data = resolved.model_dump(mode="json", exclude_none=True)
    return {key: value for key, value in data.items() if value not in ({}, [])}

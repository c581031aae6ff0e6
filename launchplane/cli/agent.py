"""``launch-agent`` / ``launchplane agent``: run an agent that polls queues and launches jobs.

Only click and the standard library are imported at module level: ``--help``
must be instant and must not pull in httpx, pydantic, anyio or any plugin.
The agent itself (``launchplane.agent.loop``) is imported when the command runs.

W&B's ``wandb launch-agent`` flags work too (``-q`` repeatable, ``-e``,
``-j/--max-jobs`` with -1 for no limit, ``-v`` verbosity, ``-c``), and so does
W&B's ``launch-config.yaml``: a config file with any key only W&B's has
(:data:`WANDB_ONLY_KEYS`) is read as W&B reads it (YAML 1.1, W&B's keys), each
key mapped to the agent's setting or answered with one line saying where
launchplane keeps it (:func:`_from_wandb`): launchplane builds with each
queue's builder, so W&B's agent-level ``builder``/``registry`` blocks belong
in the queue configs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

LOG_LEVELS = ["debug", "info", "warning", "error"]
DEFAULTS: dict[str, Any] = {
    "max_jobs": 4,
    "plugins": [],
    "strict_plugins": False,
    "drain_timeout": 600.0,
    "cancel_grace": 10.0,
    "agent_id": None,
    "work_dir": None,
    "log_level": "info",
    "json_logs": False,
    "secret_providers": {},
}
CONFIG_KEYS = {"server", "token", "queues", *DEFAULTS}
UNLIMITED_JOBS = None
"""``-j -1`` / ``max_jobs: -1`` (W&B's "no upper limit")."""
WANDB_ONLY_KEYS = frozenset(
    {
        "entity",
        "max_schedulers",
        "secure_mode",
        "builder",
        "registry",
        "environment",
        "verbosity",
        "stopped_run_timeout",
    }
)
"""Keys of W&B's launch-config.yaml that launchplane's agent.yaml has not: a file with one
of them is W&B's (it may also hold ``queues``, ``queue`` and ``max_jobs``, which both have)."""
WANDB_BUILDER_KEYS: dict[str, str] = {
    "type": "set the builder per queue, in the queue config: builder: {type: docker|kaniko|noop}",
    "destination": "set it per queue, in the queue config: builder.options.registry "
    "(the repository images are pushed to)",
    "platform": "launchplane builds for the agent host's platform",
    "build-context-store": "set it per queue: builder.options.context_store (kaniko; s3://bucket/prefix)",
    "build-job-name": "the kaniko builder names its Job kaniko-<run id>",
    "secret-name": "set it per queue: builder.options.docker_config_secret (kaniko)",
    "secret-key": "set it per queue: builder.options.docker_config_key (kaniko)",
    "kaniko-image": "set it per queue: builder.options.executor_image (kaniko)",
}
"""W&B's agent-level ``builder`` keys -> where launchplane keeps that setting."""


KUBE_CONTEXT_ENV = "LAUNCHPLANE_KUBE_CONTEXT"
"""What ``--kube-context`` sets: the Kubernetes plugins read it when they connect, in this
process (``launchplane.plugins.kube.CONTEXT_ENV``; cli/ may not import plugins)."""


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--server",
    envvar="LAUNCHPLANE_SERVER",
    metavar="URL",
    help="Queue server URL.  [default: $LAUNCHPLANE_SERVER or http://127.0.0.1:8765]",
)
@click.option(
    "--token",
    envvar="LAUNCHPLANE_TOKEN",
    metavar="TOKEN",
    help="Agent token.  [default: $LAUNCHPLANE_TOKEN, else the local server's admin-token file]",
)
@click.option(
    "--queue", "-q", "queues", multiple=True, metavar="NAME", help="Queue to serve (repeatable)."
)
@click.option(
    "--max-jobs",
    "-j",
    type=click.IntRange(min=-1),
    envvar="WANDB_LAUNCH_MAX_JOBS",
    help="Jobs run at once; -1: no limit.  [default: 4]",
)
@click.option(
    "--entity",
    "-e",
    metavar="ENTITY",
    help="W&B's entity: accepted and ignored (launchplane queues are not scoped by entity).",
)
@click.option(
    "--verbose",
    "-v",
    count=True,
    help="W&B's verbosity: -vv logs at debug level (as --log-level debug).",
)
@click.option(
    "--log-file",
    "-l",
    metavar="FILE",
    hidden=True,
    help="W&B's log file: refused (the agent logs to stderr).",
)
@click.option(
    "--plugins",
    multiple=True,
    metavar="MOD[,MOD]",
    help="Extra plugin modules; no:NAME blocks one (repeatable, comma-separated).",
)
@click.option(
    "--strict-plugins", is_flag=True, default=None, help="Fail if any plugin fails to load."
)
@click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="agent.yaml with the same settings (snake_case keys), or W&B's "
    "launch-config.yaml; flags win.",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="On SIGTERM, how long running jobs may finish before they are stopped and "
    "re-queued.  [default: 600]",
)
@click.option(
    "--cancel-grace",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Between SIGTERM and SIGKILL when a job is cancelled.  [default: 10]",
)
@click.option("--agent-id", metavar="ID", help="Stable id.  [default: hostname + config hash]")
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where run directories go.  [default: <data dir>/work]",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), help="[default: info]")
@click.option("--json-logs", is_flag=True, default=None, help="One JSON object per log line.")
@click.option(
    "--kube-context",
    metavar="NAME",
    help="Kubeconfig context for the Kubernetes plugins that name none (sets "
    "$LAUNCHPLANE_KUBE_CONTEXT).  [default: the kubeconfig's current context]",
)
@click.pass_context
def agent(
    ctx: click.Context,
    config_file: Path | None,
    entity: str | None,
    verbose: int,
    log_file: str | None,
    kube_context: str | None,
    **options: Any,
) -> None:
    """Run an agent: claim jobs from queues, build and run them, report back.

    \b
    SIGTERM or Ctrl-C: stop claiming, let running jobs finish (--drain-timeout).
    A second one: stop running jobs and release them, so they are re-queued.
    """
    if log_file is not None:
        raise click.BadParameter(
            "the agent logs to stderr: redirect it instead (launch-agent ... 2>>FILE)",
            param_hint="-l/--log-file",
        )
    if entity is not None:
        click.echo(f"note: -e/--entity {entity} ignored: {ENTITY_NOTE}", err=True)
    if kube_context:
        os.environ[KUBE_CONTEXT_ENV] = kube_context
    config = _read_config(config_file) if config_file else {}
    settings = _merge(ctx, options, config)
    if verbose >= 2 and ctx.get_parameter_source("log_level") != ParameterSource.COMMANDLINE:
        settings["log_level"] = "debug"
    settings["max_jobs"] = _max_jobs(settings["max_jobs"])
    sys.exit(_run(settings))


def _max_jobs(value: Any) -> int | None:
    """At least 1; W&B's -1 is no limit."""
    if value == -1:
        return UNLIMITED_JOBS
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise click.BadParameter(
            f"{value!r}: must be at least 1, or -1 for no limit", param_hint="--max-jobs"
        )
    return value


ENTITY_NOTE = "launchplane queues are not scoped by entity (a token names the queues it serves)"


def _read_config(path: Path) -> dict[str, Any]:
    """agent.yaml (launchplane's keys) or W&B's launch-config.yaml, as agent settings.

    Both are read as YAML 1.1, as agent.yaml always was (PyYAML): a W&B file is
    read as W&B reads it, with a warning where launchplane's YAML 1.2 would read
    a value otherwise. Limits and duplicate keys as in every launchplane file.
    """
    from launchplane.core.errors import ConfigError
    from launchplane.core.yamlsafe import load_document, reading_differences

    try:
        text = path.read_text(encoding="utf-8-sig")
        data = load_document(text, source=str(path), syntax="yaml", yaml_version="1.1") or {}
    except (OSError, ConfigError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--config") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected a mapping of settings", param_hint="--config")
    if WANDB_ONLY_KEYS & {str(key) for key in data}:
        for difference in reading_differences(text, source=str(path)):
            click.echo(f"warning: {path}: {difference.message('wandb')}", err=True)
        data = _from_wandb(data, path)
    data = {str(key).replace("-", "_"): value for key, value in data.items()}
    if "queue" in data:
        data.setdefault("queues", data.pop("queue"))
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        raise click.BadParameter(
            f"{path}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(CONFIG_KEYS))}",
            param_hint="--config",
        )
    for key in ("queues", "plugins"):
        if isinstance(data.get(key), str):
            data[key] = [data[key]]
    providers = data.get("secret_providers", {})
    if not (isinstance(providers, dict) and all(isinstance(v, dict) for v in providers.values())):
        raise click.BadParameter(
            f"{path}: secret_providers: expected a mapping of scheme -> options mapping",
            param_hint="--config",
        )
    return data


def _from_wandb(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """W&B's launch-config.yaml keys as agent settings; a line on stderr for each other one.

    Mapped: ``queues``/``queue``, ``max_jobs`` (-1: no limit), ``verbosity``
    (2: debug), ``stopped_run_timeout`` (``cancel_grace``). Answered and
    ignored: ``entity``, ``max_schedulers``, ``builder.*``, ``registry``,
    ``environment``. Refused: ``secure_mode: true`` (ignoring it would let
    submitters override what W&B's secure mode forbids).
    """
    settings = {key: value for key, value in data.items() if key not in WANDB_ONLY_KEYS}

    def note(key: str, text: str) -> None:
        click.echo(f"note: {path}: {key}: {text}", err=True)

    if data.get("entity") is not None:
        note("entity", f"ignored: {ENTITY_NOTE}")
    if data.get("max_schedulers") not in (None, 0):
        note(
            "max_schedulers",
            "ignored: a launchplane agent runs no sweep schedulers; a sweep controller "
            "submits each run (launchplane submit, launchplane.submit)",
        )
    if data.get("secure_mode"):
        raise click.BadParameter(
            f"{path}: secure_mode: launchplane has no agent-side secure mode: lock the fields "
            "in each queue config instead (locked: [entry_point, command, args, docker.image]), "
            "then remove secure_mode",
            param_hint="--config",
        )
    builder = data.get("builder")
    if isinstance(builder, dict):
        for key in builder:
            where = WANDB_BUILDER_KEYS.get(str(key), "not a W&B builder setting")
            note(f"builder.{key}", f"ignored: {where}")
    elif builder is not None:
        note("builder", "ignored: set the builder per queue, in the queue config")
    if data.get("registry"):
        note(
            "registry",
            "ignored: set it per queue, in the queue config: builder.options.registry "
            "(W&B's registry.uri / builder.destination)",
        )
    if data.get("environment"):
        note(
            "environment",
            "ignored: cloud credentials and region come from the agent's environment "
            "(AWS_*, GOOGLE_*, AZURE_* variables, instance roles), as each runner reads them",
        )
    verbosity = data.get("verbosity")
    if isinstance(verbosity, int) and verbosity >= 2:
        settings["log_level"] = "debug"
    if data.get("stopped_run_timeout") is not None:
        settings["cancel_grace"] = data["stopped_run_timeout"]
    return settings


def _merge(ctx: click.Context, options: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Command line > environment variables > config file > defaults."""
    settings: dict[str, Any] = {}
    for name in CONFIG_KEYS:
        value = options.get(name)
        given = ctx.get_parameter_source(name) in (
            ParameterSource.COMMANDLINE,
            ParameterSource.ENVIRONMENT,
        )
        if given and value not in (None, ()):
            settings[name] = list(value) if isinstance(value, tuple) else value
        elif name in config:
            settings[name] = config[name]
        else:
            settings[name] = DEFAULTS.get(name)
    return settings


def make_non_dumpable() -> bool:
    """``prctl(PR_SET_DUMPABLE, 0)`` on this process (Linux); True when it took effect.

    The agent holds its token and every resolved secret in memory. A
    non-dumpable process's ``/proc/<pid>/environ``, ``mem`` and ``maps`` belong
    to root and its own user cannot ptrace it, so a job running as the agent's
    user without the sandbox (``isolation: none``) cannot read them. Children
    are dumpable again after exec: jobs are unaffected.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE
    except (OSError, AttributeError):
        return False


def _run(options: dict[str, Any]) -> int:
    """Start the agent; the exit code (0 after a clean shutdown)."""
    make_non_dumpable()
    import anyio

    from launchplane.agent.logging import configure_logging
    from launchplane.agent.loop import Agent, AgentError, AgentSettings
    from launchplane.core import paths
    from launchplane.core.client import UnsafeTokenFile, find_token
    from launchplane.core.interfaces import PluginError
    from launchplane.core.loader import split_list
    from launchplane.core.redaction import Redactor

    redactor = Redactor()
    configure_logging(str(options["log_level"]), bool(options["json_logs"]), redactor)
    server = options["server"] or paths.default_server_url()
    # The local admin token only ever goes to a loopback server (the CLI's rule).
    try:
        token = find_token(server, options["token"])
    except UnsafeTokenFile as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    if not token:
        click.echo(
            "error: no token: pass --token, set LAUNCHPLANE_TOKEN, or run next to a local "
            f"`launchplane server` (which writes {paths.admin_token_path()})",
            err=True,
        )
        return 2
    if not options["queues"]:
        click.echo("error: no queue to serve: pass --queue NAME (or queues: in --config)", err=True)
        return 2
    settings = AgentSettings(
        server=server,
        token=token,
        queues=split_list(options["queues"]),
        max_jobs=options["max_jobs"],
        plugins=split_list(options["plugins"]),
        strict_plugins=bool(options["strict_plugins"]),
        drain_timeout=float(options["drain_timeout"]),
        cancel_grace=float(options["cancel_grace"]),
        agent_id=options["agent_id"],
        work_dir=Path(options["work_dir"]) if options["work_dir"] else None,
        secret_providers=options["secret_providers"],
    )

    async def serve() -> None:
        # Built inside the event loop: the agent's anyio primitives need one.
        await Agent(settings, redactor=redactor).run()

    try:
        anyio.run(serve)
    except (AgentError, PluginError) as exc:
        click.echo(f"error: {redactor.scrub(str(exc))}", err=True)
        return getattr(exc, "exit_code", 1)
    except KeyboardInterrupt:  # before the signal handlers were installed
        return 130
    return 0

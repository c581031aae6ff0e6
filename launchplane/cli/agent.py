"""``launch-agent`` / ``launchplane agent``: run an agent that polls queues and launches jobs.

Only click and the standard library are imported at module level: ``--help``
must be instant and must not pull in httpx, pydantic, anyio or any plugin.
The agent itself (``launchplane.agent.loop``) is imported when the command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

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
    "--queue", "queues", multiple=True, metavar="NAME", help="Queue to serve (repeatable)."
)
@click.option("--max-jobs", type=click.IntRange(min=1), help="Jobs run at once.  [default: 4]")
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
    help="agent.yaml with the same settings (snake_case keys); flags win.",
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
@click.pass_context
def agent(ctx: click.Context, config_file: Path | None, **options: Any) -> None:
    """Run an agent: claim jobs from queues, build and run them, report back.

    \b
    SIGTERM or Ctrl-C: stop claiming, let running jobs finish (--drain-timeout).
    A second one: stop running jobs and release them, so they are re-queued.
    """
    settings = _merge(ctx, options, _read_config(config_file) if config_file else {})
    sys.exit(_run(settings))


def _read_config(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{path}: not valid YAML: {exc}", param_hint="--config") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected a mapping of settings", param_hint="--config")
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


def _merge(ctx: click.Context, options: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Command line > environment variables > config file > defaults."""
    from click.core import ParameterSource

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


def _run(options: dict[str, Any]) -> int:
    """Start the agent; the exit code (0 after a clean shutdown)."""
    import anyio

    from launchplane.agent.logging import configure_logging
    from launchplane.agent.loop import Agent, AgentError, AgentSettings
    from launchplane.core import paths
    from launchplane.core.interfaces import PluginError
    from launchplane.core.loader import split_list
    from launchplane.core.redaction import Redactor

    redactor = Redactor()
    configure_logging(str(options["log_level"]), bool(options["json_logs"]), redactor)
    token = options["token"] or _local_admin_token(paths.admin_token_path())
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
        server=options["server"] or paths.default_server_url(),
        token=token,
        queues=split_list(options["queues"]),
        max_jobs=int(options["max_jobs"]),
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


def _local_admin_token(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None

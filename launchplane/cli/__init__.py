"""The ``launchplane`` and ``launch-agent`` command lines.

Commands live in ``launchplane.cli.<module>`` and are imported only
when invoked (or when their own ``--help`` is shown), so ``launchplane --help``
and ``launch-agent --help`` import neither the server stack nor any plugin's
heavy dependency.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# command name -> (module under launchplane.cli, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "plan": ("plan", "plan", "Resolve a job against a queue config and show what would run."),
    "plugins": ("plugins", "plugins", "List installed plugins, what they register, load errors."),
    "server": ("server", "server", "Run the queue server."),
    "token": ("token", "token", "Create, list and revoke API tokens."),
    "db": ("db", "db", "Upgrade the queue server's database schema."),
    "queue": ("queue", "queue", "Create, update, show and list queues."),
    "submit": ("jobs", "submit", "Submit a job to a queue."),
    "launch": ("jobs", "submit", "The same as submit, named as W&B's `wandb launch`."),
    "jobs": ("jobs", "jobs", "List jobs."),
    "show": ("jobs", "show", "Show a job, its events and its run record."),
    "logs": ("jobs", "logs", "Print (or follow) a job's log."),
    "cancel": ("jobs", "cancel", "Cancel a job."),
    "reproduce": ("reproduce", "reproduce", "Submit a recorded run again, everything pinned."),
    "agent": ("agent", "agent", "Run an agent that polls queues and launches jobs."),
    "run": ("run", "run", "Run a job end to end on an embedded server and agent."),
    "artifact": (
        "artifact",
        "artifact",
        "Fetch a pinned artifact version (an init container's).",
    ),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, attribute, _ = entry
        return getattr(importlib.import_module(f"launchplane.cli.{module}"), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Show one-line help without importing every command module.
        rows = [(name, help_text) for name, (_, _, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="launchplane")
def cli() -> None:
    """launchplane: submit ML training jobs to queues; agents build and run them.

    \b
    Quick start (no Docker, no cloud account):
      launchplane run examples/hello/job.yaml
    """


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="launchplane")


def agent_main(argv: list[str] | None = None) -> Any:
    """``launch-agent``: the same as ``launchplane agent``."""
    from launchplane.cli.agent import agent

    return agent.main(args=argv, prog_name="launch-agent")

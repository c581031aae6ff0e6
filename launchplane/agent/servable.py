"""Which of its queues an agent can serve: those whose runner and builder it has.

An agent asked to serve a queue whose runner or builder it lacks (not
installed, its extra missing, blocked with ``--plugins=no:...``) would claim
that queue's jobs only to fail every one of them. Instead it reads each
queue's config once at start (``GET /queues/{name}``, which any token may
call), says in one line which queue it leaves alone and why (the plugin
registry's own words), and never claims from it: the jobs stay queued for an
agent that can run them.

What is checked is the queue's runner (``resource:``) and its builder
(``builder.type``, default ``noop``). A job that picks another builder
itself, or a queue whose runner or builder is a ``{{template}}``
placeholder, is checked when the job runs, as before. A queue the agent
cannot read (it does not exist yet, the server fails) is served as before:
the claim loop reports what is wrong with it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from launchplane.core.client import ClientError, LaunchplaneClient
from launchplane.core.config.queue_check import inspect_queue_config
from launchplane.core.errors import ConfigError
from launchplane.core.interfaces import PluginError
from launchplane.core.launch import builder_name
from launchplane.core.plugins import PluginRegistry
from launchplane.core.registry import PluginOptionsError

log = logging.getLogger("launchplane.agent")


async def unservable_queues(
    client: LaunchplaneClient, registry: PluginRegistry, queues: Sequence[str]
) -> dict[str, str]:
    """Queue name -> the line saying why this agent does not serve it (only for those)."""
    refused = {}
    for name in queues:
        try:
            queue = await client.get_queue(name)
        except ClientError as exc:
            log.debug("queue %s: config not readable at start (%s); serving it", name, exc)
            continue
        reason = missing_plugin(registry, queue.get("config") or {})
        if reason is not None:
            refused[name] = (
                f"not serving queue '{name}': {reason} "
                "(its jobs stay queued for an agent that can run them)"
            )
    return refused


def missing_plugin(registry: PluginRegistry, config: Mapping[str, Any]) -> str | None:
    """Why the runner or builder of a queue config is unusable here, or None if both are fine.

    The builder is looked up with the queue's ``builder.options``; options it
    refuses (or that a placeholder fills per job) are a job's problem, reported
    when it runs - the builder is installed, which is all this asks.
    """
    try:
        queue = inspect_queue_config(config).config
    except ConfigError:
        return None  # the server accepted it; a job of it will say what is wrong
    runner, builder = queue.resource, builder_name(queue)
    try:
        if "{{" not in runner:
            registry.runner(runner)
        if "{{" not in builder:
            registry.builder(builder, queue.builder.options if queue.builder else None)
    except PluginOptionsError:
        return None
    except PluginError as exc:
        return str(exc)
    return None

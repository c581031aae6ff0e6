"""The server's use of the configuration engine: queue checks and submit-time resolution.

A submitter learns about a bad job when submitting it, not from a failed
run later. A job is resolved once, here (``launchplane.core.config.resolve_job``),
including the runner's own ``resource_args`` model when that runner is
installed here; the store keeps the result with the queue version it used,
and agents launch exactly that (they check only the runner's model, which
the server may lack).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from pydantic import BaseModel

from launchplane.core.config import resolve_job
from launchplane.core.config.queue_check import inspect_queue_config
from launchplane.core.config.wandb_queue import runner_name
from launchplane.core.errors import ConfigError
from launchplane.core.plugin_checks import check_queue_plugins
from launchplane.core.plugins import PluginRegistry, get_plugin_manager
from launchplane.core.spec import QueueConfig

DEFAULT_RUNNER = QueueConfig.model_fields["resource"].default


class Validator:
    """Checks queue configs and resolves jobs; one per app (it holds the plugin registry)."""

    def __init__(self, plugin_specs: Sequence[str] = ()) -> None:
        self._plugin_specs = tuple(plugin_specs)

    @cached_property
    def plugins(self) -> PluginRegistry:
        """Built on first use, not at startup: a server that only serves agents never pays."""
        return get_plugin_manager(self._plugin_specs)

    def check_queue(self, raw: dict[str, Any]) -> list[str]:
        """The warnings of a valid queue config; ConfigError (a 422) listing every problem.

        Beyond the config itself, the plugins installed here judge it
        (:func:`~launchplane.core.plugin_checks.check_queue_plugins`): a queue
        whose ``resource_args`` the runner's model refuses would fail every submit.
        """
        try:
            checked = inspect_queue_config(raw)
        except ConfigError as exc:
            raise ConfigError(exc.errors, source="invalid queue config") from None
        errors, warnings = check_queue_plugins(checked.config, checked.placeholders, self.plugins)
        if errors:
            raise ConfigError(errors, source="invalid queue config")
        return [*checked.warnings, *(f"{w.path}: {w.message}" for w in warnings)]

    def resolve(
        self,
        *,
        queue: str,
        raw_config: dict[str, Any],
        job: dict[str, Any],
        overrides: Sequence[dict[str, Any]],
        variables: Mapping[str, Any],
        trusted: bool = False,
    ) -> dict[str, Any]:
        """The resolved job as JSON; ConfigError (a 422) listing every problem of the submission.

        ``trusted``: an admin submits, whom the queue's host guardrails do not bind.
        """
        try:
            resolved = resolve_job(
                raw_config,
                job,
                overrides,
                variables,
                queue_name=queue,
                resource_args_model=self._resource_args_model(
                    raw_config.get("resource", DEFAULT_RUNNER)
                ),
                trusted=trusted,
            )
        except ConfigError as exc:
            raise ConfigError(exc.errors, source="invalid job") from None
        return resolved.model_dump(mode="json")

    def _resource_args_model(self, runner: Any) -> type[BaseModel] | None:
        """The installed runner class's ``resource_args`` model (no plugin is instantiated).

        A runner only the agents have is checked there instead.
        """
        # W&B's type names (local-container) name launchplane's runners (docker).
        cls = self.plugins.runners.get(runner_name(runner)) if isinstance(runner, str) else None
        return cls.resource_args_model if cls is not None else None

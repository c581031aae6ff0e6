"""The server's use of the configuration engine: queue checks and submit-time resolution.

A submitter learns about a bad job when submitting it, not from a failed
run later. A job is resolved once, here (``launchplane.core.config.resolve_job``),
including the runner's own ``resource_args`` model when that runner is
installed here; the store keeps the result with the queue version it used,
and agents launch exactly that (they check only the runner's model, which
the server may lack).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any

from launchplane.core.config import resolve_job
from launchplane.core.errors import ConfigError
from launchplane.core.interfaces import PluginError, Runner
from launchplane.core.plugins import PluginRegistry, get_plugin_manager
from launchplane.core.spec import QueueConfig
from launchplane.core.templates import check_queue_config

DEFAULT_RUNNER = QueueConfig.model_fields["resource"].default


class Validator:
    """Checks queue configs and resolves jobs; one per app (it holds the plugin registry)."""

    @cached_property
    def plugins(self) -> PluginRegistry:
        """Built on first submit, not at startup: a server that only serves agents never pays."""
        return get_plugin_manager()

    def check_queue(self, raw: dict[str, Any]) -> list[str]:
        """The warnings of a valid queue config; ConfigError (a 422) listing every problem."""
        try:
            _, warnings = check_queue_config(raw)
        except ConfigError as exc:
            raise ConfigError(exc.errors, source="invalid queue config") from None
        return list(warnings)

    def resolve(
        self,
        *,
        queue: str,
        raw_config: dict[str, Any],
        job: dict[str, Any],
        overrides: Sequence[dict[str, Any]],
        variables: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The resolved job as JSON; ConfigError (a 422) listing every problem of the submission."""
        try:
            resolved = resolve_job(
                raw_config,
                job,
                overrides,
                variables,
                queue_name=queue,
                runner_validator=self._runner_validator(raw_config.get("resource", DEFAULT_RUNNER)),
            )
        except ConfigError as exc:
            raise ConfigError(exc.errors, source="invalid job") from None
        return resolved.model_dump(mode="json")

    def _runner_validator(self, runner: Any) -> Callable[[str, dict[str, Any]], Any] | None:
        """The runner's own ``resource_args`` check, when that runner is installed here.

        A runner only the agents have is checked there instead.
        """
        cls = self.plugins.runners.get(runner) if isinstance(runner, str) else None
        if cls is None:
            return None
        try:
            instance: Runner | None = self.plugins.runner(runner)
        except PluginError:
            instance = None  # not constructible here (a missing extra): the class model applies
        return _RunnerCheck(cls, instance).check


class _RunnerCheck:
    """Adapts ``Runner.validate_resource_args(args)`` to the engine's ``(runner, args)`` call.

    The engine finds ``resource_args_model`` on the bound method's object and
    uses it to suggest the closest valid key for a misspelt one.
    """

    def __init__(self, cls: type[Runner], instance: Runner | None) -> None:
        self.resource_args_model = cls.resource_args_model
        self._instance = instance

    def check(self, _runner: str, args: dict[str, Any]) -> None:
        if self._instance is not None:
            self._instance.validate_resource_args(args)
        elif self.resource_args_model is not None:
            self.resource_args_model.model_validate(args)

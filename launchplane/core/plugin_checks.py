"""What the installed plugins say about a queue config, before any job is submitted to it.

A queue config is checked on its own by the configuration engine (keys,
types, placeholders). This module adds what only the plugins know, so that
``queue create`` / ``queue update`` and ``plan`` refuse a queue that every
submit would then fail on:

* ``resource_args.<runner>`` against the queue's runner's ``resource_args_model``,
  then the runner's own ``check_queue`` (a queue it could never run safely);
* ``builder.options`` against the builder's ``options_model``;
* every ``secrets:`` reference's scheme against the installed secret providers,
  and ``secret_providers.<scheme>`` against that provider's ``options_model``;
* ``integrations.<name>`` against the model its plugin gives
  (``launchplane_integration_options``).

Only what is installed *here* can be checked: the server and a workstation
running ``plan`` may lack a runner or a provider that the agents have. So a
name that is not installed is a warning, except a near miss of one that is
(``file-valt`` beside an installed ``file-vault``), which is a typo and an
error. Fields that are missing (a job may still set them) and values that
hold a ``{{placeholder}}`` (typed only once the variable is set) are not
judged here; resolution checks them at submit.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from launchplane.core.config.resolve import model_errors
from launchplane.core.errors import FieldError, join_path, suggest
from launchplane.core.interfaces import SecretRefError, parse_ref

if TYPE_CHECKING:
    from launchplane.core.plugins import PluginRegistry
    from launchplane.core.spec import ArtifactStoreSpec, QueueConfig

PathKey = tuple[str | int, ...]


def check_queue_plugins(
    config: QueueConfig,
    placeholders: Mapping[PathKey, Any],
    registry: PluginRegistry,
) -> tuple[list[FieldError], list[FieldError]]:
    """The errors and the warnings the installed plugins have about one valid queue config.

    ``placeholders`` maps each path that holds a ``{{placeholder}}`` to its
    variable names (``CheckedQueue.placeholders``); values there are skipped.
    Warnings are FieldErrors too, so a caller can say where each one points.
    """
    errors: list[FieldError] = []
    warnings: list[FieldError] = []
    runner = registry.runners.get(config.resource)
    if runner is None:
        _not_installed("resource", "runner", config.resource, registry.runners, errors, warnings)
    elif runner.resource_args_model is not None:
        errors += _model_errors(
            runner.resource_args_model,
            config.resource_args.get(config.resource, {}),
            ("resource_args", config.resource),
            placeholders,
        )
    if runner is not None and not errors:
        errors += runner.check_queue(config)
    if config.builder is not None and config.builder.type is not None:
        builder = registry.builders.get(config.builder.type)
        if builder is None:
            _not_installed(
                "builder.type", "builder", config.builder.type, registry.builders, errors, warnings
            )
        elif (model := getattr(builder, "options_model", None)) is not None:
            errors += _model_errors(
                model, config.builder.options, ("builder", "options"), placeholders
            )
    errors += _scheme_errors(config.secrets, registry, warnings)
    errors += _provider_option_errors(config.secret_providers, placeholders, registry, warnings)
    if config.artifact_store is not None:
        errors += _store_errors(config.artifact_store, placeholders, registry, warnings)
    errors += _integration_errors(config.integrations, placeholders, registry, warnings)
    return errors, warnings


def _integration_errors(
    integrations: Mapping[str, Mapping[str, Any]],
    placeholders: Mapping[PathKey, Any],
    registry: PluginRegistry,
    warnings: list[FieldError],
) -> list[FieldError]:
    """Each ``integrations.<name>`` implemented here, and its options valid for it.

    The models come from ``launchplane_integration_options`` hooks; options are
    queue-only, so a missing required option is an error here too.
    """
    models = integration_models(registry)
    errors: list[FieldError] = []
    for name, options in integrations.items():
        path = ("integrations", name)
        if name not in models:
            _not_installed(join_path(*path), "integration", name, models, errors, warnings)
        elif (model := models[name]) is not None:
            errors += model_errors(
                model,
                options,
                path,
                judged=partial(_outside_placeholders, path, placeholders),
            )
        elif options:
            errors.append(FieldError(join_path(*path), f"integration '{name}' takes no options"))
    return errors


def integration_models(registry: PluginRegistry) -> dict[str, Any]:
    """Every integration the loaded plugins implement: name -> its options model (or None)."""
    models: dict[str, Any] = {}
    for answer in registry.hook.launchplane_integration_options():
        models.update(answer or {})
    return models


def _store_errors(
    store: ArtifactStoreSpec,
    placeholders: Mapping[PathKey, Any],
    registry: PluginRegistry,
    warnings: list[FieldError],
) -> list[FieldError]:
    """``artifact_store.type`` installed, and its ``options`` valid for that store."""
    errors: list[FieldError] = []
    cls = registry.artifact_stores.get(store.type)
    if cls is None:
        _not_installed(
            "artifact_store.type", "artifact store", store.type, registry.artifact_stores,
            errors, warnings,
        )  # fmt: skip
    elif cls.options_model is not None:
        # Queue-only: no later layer can fill a missing option, so missing is an error here.
        path = ("artifact_store", "options")
        errors += model_errors(
            cls.options_model,
            store.options,
            path,
            judged=lambda item: not _under_placeholder((*path, *item["loc"]), placeholders),
        )
    elif store.options:
        errors.append(
            FieldError("artifact_store.options", f"store '{store.type}' takes no options")
        )
    return errors


def _model_errors(
    model: type[BaseModel],
    value: Any,
    path: PathKey,
    placeholders: Mapping[PathKey, Any],
) -> list[FieldError]:
    """What ``model`` says of ``value`` at ``path``, less missing fields and placeholders."""

    def judged(item: Any) -> bool:
        return item["type"] != "missing" and not _under_placeholder(
            (*path, *item["loc"]), placeholders
        )

    runner = path[1] if path[0] == "resource_args" else None
    return model_errors(model, value, path, runner=runner, judged=judged)


def _outside_placeholders(path: PathKey, placeholders: Mapping[PathKey, Any], item: Any) -> bool:
    """A pydantic error item below ``path`` that is not under a ``{{placeholder}}``."""
    return not _under_placeholder((*path, *item["loc"]), placeholders)


def _under_placeholder(path: PathKey, placeholders: Mapping[PathKey, Any]) -> bool:
    return any(path[: len(held)] == held for held in placeholders)


def _scheme_errors(
    secrets: Mapping[str, str], registry: PluginRegistry, warnings: list[FieldError]
) -> list[FieldError]:
    errors: list[FieldError] = []
    for env, text in secrets.items():
        try:
            scheme = parse_ref(text).scheme
        except SecretRefError:
            continue  # the queue config's own check reports it
        if scheme not in registry.secret_providers:
            _not_installed(
                join_path("secrets", env),
                "secret provider for scheme",
                scheme,
                registry.secret_providers,
                errors,
                warnings,
            )
    return errors


def _provider_option_errors(
    options: Mapping[str, Mapping[str, Any]],
    placeholders: Mapping[PathKey, Any],
    registry: PluginRegistry,
    warnings: list[FieldError],
) -> list[FieldError]:
    """``secret_providers.<scheme>`` against each installed provider's ``options_model``."""
    errors: list[FieldError] = []
    for scheme, given in options.items():
        path = ("secret_providers", scheme)
        provider = registry.secret_providers.get(scheme)
        if provider is None:
            _not_installed(
                join_path(*path),
                "secret provider for scheme",
                scheme,
                registry.secret_providers,
                errors,
                warnings,
            )
        elif provider.options_model is not None:
            errors += _model_errors(provider.options_model, given, path, placeholders)
        elif given:
            errors.append(FieldError(join_path(*path), f"provider '{scheme}' takes no options"))
    return errors


def _not_installed(
    path: str,
    noun: str,
    name: str,
    installed: Mapping[str, Any],
    errors: list[FieldError],
    warnings: list[FieldError],
) -> None:
    """A near miss of an installed name is a typo (an error); any other name a warning."""
    names = ", ".join(sorted(installed)) or "none"
    hint = suggest(name, installed)
    if hint:
        errors.append(FieldError(path, f"no {noun} '{name}'{hint}; installed: {names}"))
    else:
        warnings.append(
            FieldError(
                path,
                f"{noun} '{name}' is not installed here (installed: {names}); "
                "the agents serving this queue need it",
            )
        )

"""The check an admin's queue config gets when the queue is created or updated.

Run once per queue version, so the admin - not a submitter - sees a mistake,
and resolution reuses what it found (:class:`CheckedQueue`) instead of
recomputing it per job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from launchplane.core.config.keypath import PathKey
from launchplane.core.config.normalise import normalise_layer
from launchplane.core.config.templates import check_declaration, check_placeholders
from launchplane.core.config.wandb_queue import template_variables_from_wandb
from launchplane.core.errors import ConfigError, from_validation_error, kind_of
from launchplane.core.spec import QueueConfig, TemplateVariable


@dataclass(frozen=True)
class CheckedQueue:
    """A valid queue config, with what resolution reuses instead of recomputing it."""

    config: QueueConfig
    data: dict[str, Any]
    """The normalised config as written (placeholders still in place)."""
    placeholders: dict[PathKey, set[str]]
    warnings: list[str]


def check_queue_config(raw: Mapping[str, Any]) -> tuple[QueueConfig, list[str]]:
    """Validate a queue config as an admin writes it; return it and any warnings.

    See :func:`inspect_queue_config` for what is checked.
    """
    checked = inspect_queue_config(raw)
    return checked.config, checked.warnings


def inspect_queue_config(raw: Mapping[str, Any]) -> CheckedQueue:
    """Validate a queue config; return it with its normalised data and placeholders.

    Every problem is reported at once, each with its path: the shape of the
    config, placeholders that name undeclared variables or sit in queue
    settings or keys, and each variable's own declaration (default within its
    bounds and options, ``min <= max``, options of the declared type).
    Warnings: declared variables no field uses, and ``{{...}}`` text that is
    not a valid placeholder. Run when a queue is created or updated, so the
    admin - not a submitter - sees the mistake.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a queue config must be a mapping of keys, not {kind_of(raw)}")
    data, errors = normalise_layer(raw, queue=True)
    if "template_variables" in data:
        # W&B's declarations ({schema: {type: number, ...}}, or a list) as launchplane's.
        data["template_variables"] = template_variables_from_wandb(
            data["template_variables"], errors
        )
    queue: QueueConfig | None = None
    try:
        queue = QueueConfig.model_validate(data)
    except ValidationError as exc:
        errors += from_validation_error(exc, model=QueueConfig)
    declared = data.get("template_variables")
    declared = declared if isinstance(declared, Mapping) else {}
    warnings: list[str] = []
    placeholders = check_placeholders(data, declared, errors, warnings)
    used = set().union(*placeholders.values())
    for name, declaration in declared.items():
        if name not in used:
            required = isinstance(declaration, Mapping) and declaration.get("default") is None
            warnings.append(
                f"template_variables.{name}: declared but no field uses {{{{{name}}}}}"
                + ("; without a default, every job must still pass it" if required else "")
            )
    for name, spec in declared.items():
        # Each declaration on its own, so one bad key elsewhere hides nothing here;
        # a declaration of the wrong shape is already reported by the model above.
        try:
            variable = TemplateVariable.model_validate(spec)
        except ValidationError:
            continue
        errors += check_declaration(str(name), variable)
    if errors:
        raise ConfigError(errors)
    assert queue is not None
    return CheckedQueue(queue, data, placeholders, warnings)

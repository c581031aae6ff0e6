"""Launch-time macros (``${run_id}``) and references to the agent's environment (``${HOME}``).

Macros (``${run_id}``, ``${job_id}``, ``${queue}``, ``${project}``,
``${entity}``, ``${image_uri}``, and W&B's names ``${project_name}``,
``${entity_name}``, ``${run_name}``, ``${author}``) are known only at launch
and expanded by the agent with :func:`expand_macros`, which can also expand
``${NAME}`` from the agent's environment where the caller allows it (in
:data:`EXPANDED_FIELDS`, and only from a queue config: a submitter's
``${NAME}`` is refused at resolution, :mod:`launchplane.core.config.guards`,
``resource_args`` included - W&B expands the agent's environment in a
submitter's ``resource_args``, which would let a submitter read the agent's
secrets into a manifest). ``$$`` is a literal ``$``.

``${run_id}`` is launchplane's run id (``<job_id>-<attempt>``), also in a W&B
document: the W&B run id a launch spec asks for is ``wandb_run_id``.

Kept apart from queue templates (``{{var}}``,
:mod:`launchplane.core.config.templates`), which are substituted once, at
resolution. Expanded text is never re-scanned, so a value that contains
``${X}`` stays literal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from launchplane.core.errors import ConfigError, FieldError

MACRO_NAMES = frozenset(
    {
        "run_id",
        "job_id",
        "queue",
        "project",
        "entity",
        "image_uri",
        "project_name",
        "entity_name",
        "run_name",
        "author",
    }
)
"""``${name}`` values the agent supplies at launch; they never read the agent's environment.
A macro whose value the job lacks (``${author}`` of a job without one) expands to ""."""

EXPANDED_FIELDS = ("env", "command", "args", "entry_point", "resource_args")
"""The job fields in which the agent expands macros and ``${NAME}`` at launch.

The guardrail that keeps ``${NAME}`` out of a submitter's layers, and the
escaping of template values (:func:`~.templates.substitute`), cover exactly
these: the agent's pipeline expands them all (``agent.environment``)."""

_REFERENCE_RE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\})")
_DOLLAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\})?")


def expand_macros(
    obj: Any,
    macros: Mapping[str, str],
    agent_env: Mapping[str, str] | None = None,
    *,
    where: str = "env",
    keep_missing: bool = False,
) -> Any:
    """A copy of ``obj`` with ``${name}`` macros (and, if allowed, ``${NAME}``) expanded.

    * ``${name}`` for a name in ``macros`` becomes its value;
    * a reserved macro name (:data:`MACRO_NAMES`) the caller did not supply is
      left as is - it never reads the agent's environment;
    * any other ``${NAME}`` comes from ``agent_env`` when it is given (a
      missing name is a ConfigError under ``where`` naming it, or left as is
      with ``keep_missing``: a manifest's shell text ``${HOME}`` meant for the
      container, as W&B leaves it), and is left as is when it is None;
    * ``$$`` is a literal ``$``; ``$NAME`` without braces is plain text.

    Apply it exactly once to each string: a second pass would turn the
    user's ``$${HOME}`` (escaped, now ``${HOME}``) into a reference. The
    agent therefore expands the job's ``env`` with ``agent_env`` and the rest
    of the job without it, each in one call.
    """
    if isinstance(obj, str):
        return _expand_text(obj, macros, agent_env, where, keep_missing) if "$" in obj else obj
    if isinstance(obj, Mapping):
        return {
            key: expand_macros(value, macros, agent_env, where=where, keep_missing=keep_missing)
            for key, value in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [
            expand_macros(value, macros, agent_env, where=where, keep_missing=keep_missing)
            for value in obj
        ]
    return obj


def _expand_text(
    text: str,
    macros: Mapping[str, str],
    agent_env: Mapping[str, str] | None,
    where: str,
    keep_missing: bool,
) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match[1]
        if name is None:
            return "$"
        if name in macros:
            return str(macros[name])
        if name in MACRO_NAMES or agent_env is None:
            return match[0]
        if name in agent_env:
            return agent_env[name]
        if keep_missing:
            return match[0]
        raise ConfigError([FieldError(where, f"${{{name}}} is not set in the agent's environment")])

    return _REFERENCE_RE.sub(replace, text)


def literal_text(text: str) -> str:
    """``text`` escaped so that :func:`expand_macros` gives it back, macros still expanded.

    Every ``$`` is doubled except the one opening a macro (``${run_id}``):
    what a submitter's template value says reaches the job as written and
    can never become a ``${NAME}`` of the agent's environment, even next to
    the queue's own text (``"{{a}}{{b}}"`` with ``a="$"``, ``b="{HOME}"``).
    """
    if "$" not in text:
        return text

    def escape(match: re.Match[str]) -> str:
        return match[0] if match[1] in MACRO_NAMES else "$" + match[0]

    return _DOLLAR_RE.sub(escape, text)


def agent_env_references(text: str) -> list[str]:
    """Agent environment names ``text`` refers to (``${HOME}``); macros and ``$$`` excluded."""
    if "$" not in text:
        return []
    return [name for name in _REFERENCE_RE.findall(text) if name and name not in MACRO_NAMES]

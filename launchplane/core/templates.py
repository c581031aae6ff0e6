"""Deprecated: this module moved into the configuration package in 0.2; it goes away in 0.3.

* placeholders, template values, substitution (``find_placeholders``,
  ``resolve_template_values``, ``check_value``, ``coerce_value``,
  ``describe_variable``, ``substitute``, ``PLACEHOLDER_RE``)
  -> :mod:`launchplane.core.config.templates`
* ``check_queue_config``, ``inspect_queue_config``, ``CheckedQueue``
  -> :mod:`launchplane.core.config.queue_check`
* ``expand_macros``, ``agent_env_references``, ``MACRO_NAMES``,
  ``EXPANDED_FIELDS`` -> :mod:`launchplane.core.config.macros`
* ``PathKey``, ``show_path``, ``strings`` -> :mod:`launchplane.core.config.keypath`
* ``kind_of`` -> :mod:`launchplane.core.errors`
"""

from launchplane.core.moved import moved_names

_MOVED = {
    "find_placeholders": "launchplane.core.config.templates",
    "resolve_template_values": "launchplane.core.config.templates",
    "check_value": "launchplane.core.config.templates",
    "coerce_value": "launchplane.core.config.templates",
    "describe_variable": "launchplane.core.config.templates",
    "substitute": "launchplane.core.config.templates",
    "PLACEHOLDER_RE": "launchplane.core.config.templates",
    "check_queue_config": "launchplane.core.config.queue_check",
    "inspect_queue_config": "launchplane.core.config.queue_check",
    "CheckedQueue": "launchplane.core.config.queue_check",
    "expand_macros": "launchplane.core.config.macros",
    "agent_env_references": "launchplane.core.config.macros",
    "MACRO_NAMES": "launchplane.core.config.macros",
    "EXPANDED_FIELDS": "launchplane.core.config.macros",
    "PathKey": "launchplane.core.config.keypath",
    "show_path": "launchplane.core.config.keypath",
    "strings": "launchplane.core.config.keypath",
    "kind_of": "launchplane.core.errors",
}

__getattr__ = moved_names(__name__, _MOVED)

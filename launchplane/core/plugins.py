"""The stable import path of the plugin machinery (``entrypoints.md`` names it).

The work is split by role: :mod:`launchplane.core.builtin_plugins` (the
table of built-in modules), :mod:`launchplane.core.registry` (typed
registries keyed by kind, options, lifecycle) and
:mod:`launchplane.core.loader` (load order and failure isolation). Callers
and plugin tests import these three names from here.
"""

from __future__ import annotations

from launchplane.core.loader import get_plugin_manager
from launchplane.core.registry import PluginInfo, PluginRegistry

__all__ = ["PluginInfo", "PluginRegistry", "get_plugin_manager"]

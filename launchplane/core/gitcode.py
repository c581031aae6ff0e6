"""Deprecated: moved to :mod:`launchplane.agent.gitcode` in 0.2; this alias goes away in 0.3."""

from launchplane.core.moved import moved_names

__getattr__ = moved_names(__name__, "launchplane.agent.gitcode")

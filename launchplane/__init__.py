"""launchplane: a plugin-based launch agent for ML training jobs.

Public API: ``hookimpl`` and the typed ``register`` callbacks
(``RegisterBuilder``, ``RegisterRunner``, ``RegisterSecretProvider``,
``RegisterArtifactStore``) for
plugin authors, the spec models, the plugin base classes, and ``submit()``
(``asubmit()`` from async code) to put a job on a queue from Python: it takes
every keyword of W&B's ``launch_add`` and returns a ``QueuedJob`` (the job, a
dict, with W&B ``QueuedRun``'s ``wait_until_running()``/``wait_until_finished()``).
Everything else is internal and may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from launchplane._version import __version__

__all__ = [
    "ArtifactStore",
    "ArtifactVersion",
    "Builder",
    "Image",
    "JobContext",
    "JobSpec",
    "Plugin",
    "QueueConfig",
    "QueuedJob",
    "RegisterArtifactStore",
    "RegisterBuilder",
    "RegisterRunner",
    "RegisterSecretProvider",
    "ResolvedJob",
    "Run",
    "RunResult",
    "RunState",
    "Runner",
    "SecretProvider",
    "SecretRef",
    "__version__",
    "asubmit",
    "hookimpl",
    "submit",
]

_LAZY = {
    # Lazy too: hookspecs imports pluggy and pydantic, which `launch-agent --help` must not.
    "hookimpl": "launchplane.core.hookspecs",
    "RegisterArtifactStore": "launchplane.core.hookspecs",
    "RegisterBuilder": "launchplane.core.hookspecs",
    "RegisterRunner": "launchplane.core.hookspecs",
    "RegisterSecretProvider": "launchplane.core.hookspecs",
    "JobSpec": "launchplane.core.spec",
    "QueueConfig": "launchplane.core.spec",
    "ResolvedJob": "launchplane.core.spec",
    "ArtifactStore": "launchplane.core.interfaces",
    "ArtifactVersion": "launchplane.core.interfaces",
    "Builder": "launchplane.core.interfaces",
    "Image": "launchplane.core.interfaces",
    "Plugin": "launchplane.core.interfaces",
    "JobContext": "launchplane.core.interfaces",
    "Run": "launchplane.core.interfaces",
    "RunResult": "launchplane.core.interfaces",
    "RunState": "launchplane.core.interfaces",
    "Runner": "launchplane.core.interfaces",
    "SecretProvider": "launchplane.core.interfaces",
    "SecretRef": "launchplane.core.interfaces",
    "submit": "launchplane.core.client",
    "QueuedJob": "launchplane.core.client",
    "asubmit": "launchplane.core.client",
}

if TYPE_CHECKING:
    from launchplane.core.client import QueuedJob, asubmit, submit
    from launchplane.core.hookspecs import (
        RegisterArtifactStore,
        RegisterBuilder,
        RegisterRunner,
        RegisterSecretProvider,
        hookimpl,
    )
    from launchplane.core.interfaces import (
        ArtifactStore,
        ArtifactVersion,
        Builder,
        Image,
        JobContext,
        Plugin,
        Run,
        Runner,
        RunResult,
        RunState,
        SecretProvider,
        SecretRef,
    )
    from launchplane.core.spec import JobSpec, QueueConfig, ResolvedJob


def __getattr__(name: str) -> Any:
    """Import public names on first use, so ``import launchplane`` stays cheap."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'launchplane' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

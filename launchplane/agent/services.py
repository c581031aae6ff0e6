"""What every job of one agent shares (:class:`AgentServices`): its own module so the
pipeline and the helpers it calls (``agent.leftovers``) both use it without a cycle."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from launchplane.agent.artifacts import CACHE_DIR, ArtifactCache
from launchplane.agent.environment import inheritable_environment
from launchplane.core.client import LaunchplaneClient
from launchplane.core.plugins import PluginRegistry
from launchplane.core.redaction import Redactor


@dataclass
class AgentServices:
    """What every job of one agent shares."""

    client: LaunchplaneClient
    registry: PluginRegistry
    redactor: Redactor
    agent_id: str
    host: str
    work_dir: Path
    cancel_grace: float = 10.0
    agent_env: Mapping[str, str] = field(
        default_factory=lambda: inheritable_environment(os.environ)
    )
    plugin_versions: dict[str, str] = field(default_factory=dict)
    artifact_cache: ArtifactCache = field(init=False)
    """Input artifacts by digest, in ``<work dir>/.artifact-cache``: shared by the agent's jobs."""

    def __post_init__(self) -> None:
        self.artifact_cache = ArtifactCache(self.work_dir / CACHE_DIR)

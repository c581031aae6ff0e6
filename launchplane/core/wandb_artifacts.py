"""``wandb-artifact://entity/project/name:alias``: a W&B artifact named in a job.

A job's ``input_artifacts`` (and a code ``artifact:``) may name a W&B artifact
by URI instead of a name in the queue's own store. The agent routes such a
name to the artifact store registered as ``wandb``
(``launchplane.plugins.artifacts.wandb``), and the W&B integration lists it in
``WANDB_ARTIFACTS``. The parser lives in core because the server (checking a
submit), the agent's artifact stage and both plugins read the same form.

The job spec splits ``name:alias`` before anything here runs
(``launchplane.core.spec.ArtifactRef``), so a parsed input arrives as
``name="wandb-artifact://entity/project/name", alias="alias"``; the whole URI
parses too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from launchplane.core.interfaces import LATEST

SCHEME = "wandb-artifact://"
"""The prefix that marks a W&B artifact (W&B's own spelling in launch specs)."""

_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_PATH = re.compile(rf"^({_SEGMENT})/({_SEGMENT})/({_SEGMENT})(?::([A-Za-z0-9][A-Za-z0-9._-]*))?$")
FORM = "wandb-artifact://entity/project/name[:alias], e.g. wandb-artifact://acme/mnist/images:v3"


@dataclass(frozen=True)
class WandbArtifactPath:
    """One W&B artifact: ``entity/project/name`` and the alias (or ``vN``) to resolve."""

    entity: str
    project: str
    name: str
    alias: str = LATEST

    @property
    def path(self) -> str:
        """``entity/project/name``: W&B's full name of the artifact collection."""
        return f"{self.entity}/{self.project}/{self.name}"

    @property
    def qualified(self) -> str:
        """``entity/project/name:alias``: what ``wandb.Api().artifact()`` takes."""
        return f"{self.path}:{self.alias}"

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.qualified}"


def is_wandb_artifact(name: str) -> bool:
    """Whether an artifact name is a ``wandb-artifact://`` URI (route it to the ``wandb`` store)."""
    return name.startswith(SCHEME)


def parse_wandb_artifact(name: str, alias: str | None = None) -> WandbArtifactPath:
    """``wandb-artifact://entity/project/name[:alias]`` (plus a separate ``alias``) parsed.

    ``alias`` is the one the job spec split off (``ArtifactRef.alias``); an alias
    in ``name`` too is an error only when the two differ. Raises ``ValueError``
    naming the text and the expected form (a pydantic validator can raise it;
    the W&B store turns it into a ``PluginError``).
    """
    if not is_wandb_artifact(name):
        raise ValueError(f"{name!r} is not a W&B artifact URI; expected {FORM}")
    match = _PATH.match(name[len(SCHEME) :])
    if match is None:
        raise ValueError(f"{name!r} is not a W&B artifact URI; expected {FORM}")
    entity, project, artifact, inline = match.groups()
    if inline and alias and inline != alias:
        raise ValueError(f"{name!r} names alias {inline!r} and also {alias!r}: name one")
    return WandbArtifactPath(entity, project, artifact, inline or alias or LATEST)

"""The plugins shipped with launchplane: the one place core names built-in plugin modules.

This is data, not an import: ``core/`` never imports ``launchplane.plugins``.
The loader imports these modules by name, first, so the built-ins are present
with autoload off and in a source checkout whose installed metadata is stale.
Each row mirrors one ``[project.entry-points.launchplane]`` line of
``pyproject.toml`` (a test checks that), and says what the module registers,
so the registry can answer "which extra do I install?" or "it is blocked" for
a name whose module was never imported.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuiltinPlugin:
    """A plugin shipped with launchplane; mirrors one entry point in pyproject.toml.

    ``provides`` holds ``"<kind>:<name>"`` items (``"runner:kubernetes"``);
    a test checks it against what the module really registers. ``extra`` is
    the ``launchplane[...]`` extra its optional dependency comes from.
    """

    name: str
    module: str
    provides: tuple[str, ...]
    extra: str | None = None


BUILTIN_PLUGINS: tuple[BuiltinPlugin, ...] = (
    BuiltinPlugin("noop", "launchplane.plugins.builders.noop", ("builder:noop",)),
    BuiltinPlugin("local-process", "launchplane.plugins.runners.local", ("runner:local-process",)),
    BuiltinPlugin("env", "launchplane.plugins.secrets.env", ("secret-provider:env",)),
    BuiltinPlugin("aws-sm", "launchplane.plugins.secrets.aws", ("secret-provider:aws-sm",), "aws"),
    BuiltinPlugin(
        "docker-builder", "launchplane.plugins.builders.docker", ("builder:docker",), "docker"
    ),
    BuiltinPlugin(
        "docker-runner", "launchplane.plugins.runners.docker", ("runner:docker",), "docker"
    ),
    BuiltinPlugin(
        "sagemaker-runner", "launchplane.plugins.runners.sagemaker", ("runner:sagemaker",), "aws"
    ),
    BuiltinPlugin(
        "kubernetes-runner",
        "launchplane.plugins.runners.kubernetes",
        ("runner:kubernetes",),
        "kubernetes",
    ),
    BuiltinPlugin(
        "k8s-secrets",
        "launchplane.plugins.secrets.kubernetes",
        ("secret-provider:k8s",),
        "kubernetes",
    ),
    BuiltinPlugin(
        "kaniko-builder", "launchplane.plugins.builders.kaniko", ("builder:kaniko",), "kubernetes"
    ),
    BuiltinPlugin("file-artifacts", "launchplane.plugins.artifacts.file", ("artifact-store:file",)),
    BuiltinPlugin(
        "s3-artifacts", "launchplane.plugins.artifacts.s3", ("artifact-store:s3",), "aws"
    ),
    BuiltinPlugin(
        "wandb-artifacts", "launchplane.plugins.artifacts.wandb", ("artifact-store:wandb",), "wandb"
    ),
    # Registers no class: its hooks add W&B's variables to the jobs of queues that turn it
    # on. No extra: the agent never imports wandb for it (the job's environment needs it).
    BuiltinPlugin("wandb-integration", "launchplane.plugins.integrations.wandb", ()),
)


def builtin_named(name: str) -> BuiltinPlugin | None:
    """The built-in whose plugin name is ``name``."""
    return next((b for b in BUILTIN_PLUGINS if b.name == name), None)


def builtin_providing(registered: str) -> BuiltinPlugin | None:
    """The built-in that registers ``registered`` (``"runner:docker"``)."""
    return next((b for b in BUILTIN_PLUGINS if registered in b.provides), None)

"""A test-only stand-in for the ``kubernetes`` runner's ``describe``: what ``plan`` needs.

The runner class is another part of the work (``plugins/runners/kubernetes.py``);
until it is registered as a built-in, ``test_plan`` loads this module with
``--plugins`` so ``launchplane plan`` shows ``would_submit``. It has the real
runner's ``resource_args_model`` and ``describe`` (both from
``kubernetes_manifest``); it cannot submit. ``test_plan.PLUGINS`` stops
loading it as soon as the built-in exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from launchplane import hookimpl
from launchplane.core.interfaces import Image, JobContext, PluginError, Run, Runner
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.runners.kubernetes_manifest import KubernetesArgs, describe


class PlanOnlyKubernetesRunner(Runner):
    """``describe`` of the kubernetes runner; ``submit`` refuses (a stand-in for ``plan``)."""

    name: ClassVar[str] = "kubernetes"
    resource_args_model = KubernetesArgs

    def describe(self, job: ResolvedJob, image: Image | None) -> dict[str, Any]:
        return describe(job, image)

    async def submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> Run:
        raise PluginError("the test stand-in of the kubernetes runner only plans")


@hookimpl
def launchplane_register_runners(register: Callable[[type[Runner]], None]) -> None:
    register(PlanOnlyKubernetesRunner)

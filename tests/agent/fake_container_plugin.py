"""A test plugin: a runner that needs a container image (like docker), loaded with --plugins."""

from __future__ import annotations

from typing import Any

from launchplane import hookimpl
from launchplane.core.interfaces import Image, JobContext, Runner
from launchplane.core.spec import ResolvedJob


class FakeContainerRunner(Runner):
    name = "fake-container"
    needs_image = True

    def describe(self, job: ResolvedJob, image: Image | None) -> dict[str, Any]:
        return {"image": image.ref if image else None}

    async def submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> Any:
        raise AssertionError("never reached: the job has no image")


@hookimpl
def launchplane_register_runners(register: Any) -> None:
    register(FakeContainerRunner)

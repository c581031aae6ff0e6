"""The ``noop`` builder: never builds, passes the job's own image through.

It is the builder of queues that run pre-built images (``docker.image``) and
of runners that need no image at all (``local-process``). Whether a runner
left without an image may proceed is decided by the pipeline, which knows the
runner (``Runner.needs_image``); this module cannot, and core code may not
import plugins, so that check does not live here.
"""

from __future__ import annotations

from collections.abc import Callable

from launchplane import hookimpl
from launchplane.core.interfaces import Builder, Image, JobContext
from launchplane.core.spec import ResolvedJob


class NoopBuilder(Builder):
    """Returns ``Image(ref=job.docker.image)`` when the job names an image, else None."""

    name = "noop"

    async def build(self, job: ResolvedJob, ctx: JobContext) -> Image | None:
        ref = job.docker.image if job.docker is not None else None
        if not ref:
            return None
        await ctx.emit(f"noop builder: using image {ref} as is")
        return Image(ref=ref)


@hookimpl
def launchplane_register_builders(register: Callable[[type[Builder]], None]) -> None:
    register(NoopBuilder)

"""A test plugin: the local-process runner, keeping the job ``Runner.submit`` received.

It writes that job's ``resource_args`` (every runner's entry) to
``<run dir>/submitted-resource-args.json`` and then runs the job as the
local-process runner does, so a test sees what the agent expanded at launch.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from launchplane import hookimpl
from launchplane.core.interfaces import Image, JobContext
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.runners.local import LocalProcessRunner, LocalRun

SUBMITTED = "submitted-resource-args.json"


class RecordingLocalRunner(LocalProcessRunner):
    name: ClassVar[str] = "recording-local"

    async def submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> LocalRun:
        (ctx.workdir / SUBMITTED).write_text(json.dumps(job.resource_args))
        return await super().submit(job, image, ctx)


@hookimpl
def launchplane_register_runners(register: Any) -> None:
    register(RecordingLocalRunner)

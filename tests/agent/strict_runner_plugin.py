"""A test plugin: a runner with a strict ``resource_args`` model, loaded by the agent only.

The queue server of the tests does not load it, so only the agent can check
a job's ``resource_args`` against its model.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from launchplane import hookimpl
from launchplane.core.interfaces import Image, JobContext, Runner
from launchplane.core.spec import ResolvedJob


class StrictArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gpus: int = 0


class StrictRunner(Runner):
    name = "strict-runner"
    resource_args_model = StrictArgs
    needs_image = False

    def describe(self, job: ResolvedJob, image: Image | None) -> dict[str, Any]:
        return {"resource_args": job.resource_args.get(self.name, {})}

    async def submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> Any:
        raise RuntimeError(f"submitted with {job.resource_args[self.name]}")


@hookimpl
def launchplane_register_runners(register: Any) -> None:
    register(StrictRunner)

"""Run records: everything needed to reproduce one run, and nothing secret.

The agent builds one record per attempt, writes it to ``<run dir>/record.json``
and sends it with ``complete``; the server serves it at ``GET /jobs/{id}/record``.
Fields (all JSON; times ISO 8601 UTC):

``record_version``
    Format version of this document (``1``); bumped on incompatible changes.
``launchplane_version``
    The agent's launchplane version: resolution rules can change between versions.
``job_id``, ``attempt``, ``run_id``
    Which job, which try of it (1 = first; a lost lease re-queues with +1), and
    the run's id (``<job_id>-<attempt>``, also the run directory's name).
``queue``
    ``{"name", "version"}``: the queue config version the job was resolved
    against (the server keeps every version, so the queue half is recoverable).
``spec``
    The resolved job exactly as launched (queue < job < overrides, templates
    substituted). ``secrets`` are *references* (``env:HF_TOKEN``), never values;
    macros (``${run_id}``) are left unexpanded - they are re-derived per run.
``code``
    ``{"repository", "branch", "commit", "workdir"}``: ``commit`` is the commit
    that was checked out (a branch is resolved to it), so re-running pins the
    same code. The repository URL is stored without any ``user:pass@``.
``image``
    ``{"ref", "digest", "pinned", "built"}`` of the image run, or ``null`` for
    a runner that needs none; ``pinned`` is ``repo@sha256:...`` when known.
``builder``, ``runner``
    The plugin names used. ``plugins`` maps every loaded plugin to its version.
``environment``
    ``{"env": [names], "secrets": [names]}``: the variable *names* the
    process got (values are not recorded; the spec says where they came from).
``agent``
    ``{"id", "host", "python", "platform"}``: where it ran.
``timestamps``
    ``claimed``, ``resolving``, ``building``, ``running``, ``finished``:
    when each stage began (absent if it was never reached).
``result``
    ``{"state", "exit_code", "failure_stage", "reason"}``; ``failure_stage``
    is one of resolve, secrets, prepare, build, run (``null`` on success).

Before it leaves the agent, the whole record passes through the job's
redactor (belt and braces: no field should hold a secret value anyway).
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import launchplane
from launchplane.core.gitcode import safe_url
from launchplane.core.interfaces import Image, RunState
from launchplane.core.spec import ResolvedJob

RECORD_VERSION = 1
STAGES = ("claimed", "resolving", "building", "running", "finished")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class RunRecorder:
    """Collects the facts of one run as the pipeline learns them; ``build()`` renders them."""

    job_id: str
    attempt: int
    run_id: str
    queue: str
    queue_version: int | None
    agent_id: str
    host: str
    timestamps: dict[str, str] = field(default_factory=dict)
    job: ResolvedJob | None = None
    commit: str | None = None
    image: Image | None = None
    builder: str | None = None
    env_names: list[str] = field(default_factory=list)
    secret_names: list[str] = field(default_factory=list)

    def mark(self, stage: str) -> None:
        """Record when ``stage`` began (the first time only)."""
        self.timestamps.setdefault(stage, utc_now())

    def build(
        self,
        *,
        state: RunState | str,
        exit_code: int | None,
        failure_stage: str | None,
        reason: str | None,
        plugins: Mapping[str, str],
        scrub_obj: Any = None,
    ) -> dict[str, Any]:
        """The record as a JSON-able dict, scrubbed by ``scrub_obj`` when given."""
        self.mark("finished")
        job = self.job
        record: dict[str, Any] = {
            "record_version": RECORD_VERSION,
            "launchplane_version": launchplane.__version__,
            "job_id": self.job_id,
            "attempt": self.attempt,
            "run_id": self.run_id,
            "queue": {"name": self.queue, "version": self.queue_version},
            "spec": _spec(job),
            "code": _code(job, self.commit),
            "image": _image(self.image),
            "builder": self.builder,
            "runner": job.resource if job else None,
            "plugins": dict(plugins),
            "environment": {"env": sorted(self.env_names), "secrets": sorted(self.secret_names)},
            "agent": {
                "id": self.agent_id,
                "host": self.host,
                "python": sys.version.split()[0],
                "platform": platform.platform(terse=True),
            },
            "timestamps": {
                stage: self.timestamps[stage] for stage in STAGES if stage in self.timestamps
            },
            "result": {
                "state": str(state),
                "exit_code": exit_code,
                "failure_stage": failure_stage,
                "reason": reason,
            },
        }
        return scrub_obj(record) if scrub_obj is not None else record


def _spec(job: ResolvedJob | None) -> dict[str, Any] | None:
    if job is None:
        return None
    spec = job.model_dump(mode="json", exclude_none=True)
    if "git" in spec:
        spec["git"]["repository"] = safe_url(spec["git"]["repository"])
    return spec


def _code(job: ResolvedJob | None, commit: str | None) -> dict[str, Any] | None:
    if job is None or (job.git is None and not job.workdir):
        return None
    git = job.git
    return {
        "repository": safe_url(git.repository) if git else None,
        "branch": git.branch if git else None,
        "commit": commit,
        "workdir": job.workdir,
    }


def _image(image: Image | None) -> dict[str, Any] | None:
    if image is None:
        return None
    return {"ref": image.ref, "digest": image.digest, "pinned": image.pinned, "built": image.built}

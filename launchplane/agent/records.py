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
    substituted): the same document as the job's ``resolved`` on the server
    (``GET /jobs/{id}``), except that a git URL has no credentials.
    ``secrets`` are *references* (``env:HF_TOKEN``), never values;
    macros (``${run_id}``) are left unexpanded - they are re-derived per run.
``code``
    ``{"repository", "branch", "commit", "dirty", "workdir"}``. For ``git``
    code, ``commit`` is the commit that was checked out (a branch is resolved
    to it), so re-running pins the same code, and ``dirty`` is ``false`` - or ``true``
    when a ``git.patch`` was applied after the checkout (the patch is in the spec). The
    repository URL is stored without any ``user:pass@``. For a local
    ``workdir`` in a git work tree, ``commit`` is its HEAD when the run was
    prepared and ``dirty`` says whether the tree (the whole repository, not
    only ``workdir``) had changes to tracked files or untracked files that are
    not ignored: a dirty run's code is *not* that commit. Outside a work tree,
    or when git could not tell, both are ``null``.
``image``
    ``{"ref", "digest", "pinned", "built"}`` of the image run, or ``null`` for
    a runner that needs none; ``pinned`` is ``repo@sha256:...`` when known.
``builder``, ``runner``
    The plugin names used. ``plugins`` maps every loaded plugin to its version.
``environment``
    ``{"env": [names], "secrets": [names]}``: the variable *names* the
    process got (values are not recorded; the spec says where they came from).
``workload``
    ``{"id", ...}``: the runner's id for the workload (``Run.id``) and what the
    runner says identifies it (``Run.facts()``: a namespace and Job name, a
    training job ARN); ``null`` when nothing was started.
``agent``
    ``{"id", "host", "python", "platform"}``: where it ran.
``timestamps``
    ``claimed``, ``resolving``, ``building``, ``running``, ``finished``:
    when each stage began (absent if it was never reached).
``result``
    ``{"state", "exit_code", "failure_stage", "reason"}``; ``failure_stage``
    is one of resolve, secrets, prepare, artifacts, build, run (``null`` on
    success). ``artifacts`` is also the stage of a failed output upload after
    the run itself succeeded (then ``exit_code`` is the workload's ``0``).
``artifacts``
    ``{"inputs": [...], "outputs": [...], "code": {...} | null}``, the lists
    ``[]`` when the job has none
    (``launchplane.agent.artifacts``). Each input, in ``input_artifacts``
    order: ``{"name", "alias", "version", "digest", "size", "store", "path"}``
    - ``alias`` as the job asked (``latest`` when it named none), ``version``
    (``v3``) and ``digest`` (``sha256:...``) what it resolved to: re-running
    ``name:version`` gets the same bytes; ``path`` where the job saw it
    (relative: under the run's root). Each output uploaded:
    ``{"name", "version", "digest", "size", "store", "aliases", "path"}`` -
    ``name`` with its macros expanded, ``aliases`` the ones this run moved
    (``latest`` first), ``path`` relative to the output directory. An output
    failure keeps the outputs stored before it. A re-adopted run's record has
    the inputs of the agent that launched it (``launch.json``). ``code``: the
    code ``artifact:`` of a job without git, pinned the same way
    (``{"name", "alias", "version", "digest", "size", "store"}``), or ``null``.
``integrations``
    ``{name: {...}}``: what integration plugins add (``JobContext.record_facts``,
    e.g. ``wandb``'s offline run directory); ``{}`` when none did. A re-adopted
    run's record has none (the hooks ran in the agent that launched it).
``spec_hash``
    ``sha256:<hex>`` of the pinned spec (:func:`launchplane.core.pins.pinned_spec`:
    the ``spec`` with the commit, image digest and artifact versions above in place
    of branches, tags and aliases, without per-submission fields such as ``queue``
    and ``priority``); ``null`` without a spec. A ``launchplane reproduce`` of this
    run has the same hash.

Before it leaves the agent, the whole record passes through the job's
redactor (belt and braces: no field should hold a secret value anyway).

What the record knows once the workload is launched (code, image, builder,
variable names, timestamps, input artifact pins) is also kept in ``<run dir>/launch.json``
(:meth:`RunRecorder.launch_facts`), scrubbed the same way, so that an agent
that re-adopts the run after a restart writes a record as complete as its
predecessor would have (:meth:`RunRecorder.restore`).
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from launchplane._version import __version__
from launchplane.agent.gitcode import safe_url
from launchplane.core.interfaces import Image, Run, RunState
from launchplane.core.pins import record_spec_hash
from launchplane.core.spec import ResolvedJob

RECORD_VERSION = 1
STAGES = ("claimed", "resolving", "building", "running", "finished")
LAUNCH_FACTS_VERSION = 1
T = TypeVar("T")


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
    dirty: bool | None = None
    image: Image | None = None
    builder: str | None = None
    env_names: list[str] = field(default_factory=list)
    secret_names: list[str] = field(default_factory=list)
    workload: dict[str, Any] | None = None
    integrations: Mapping[str, Callable[[], Any]] = field(default_factory=dict)
    artifact_inputs: list[dict[str, Any]] = field(default_factory=list)
    artifact_outputs: list[dict[str, Any]] = field(default_factory=list)
    artifact_code: dict[str, Any] | None = None

    def mark(self, stage: str) -> None:
        """Record when ``stage`` began (the first time only)."""
        self.timestamps.setdefault(stage, utc_now())

    def launch_facts(self) -> dict[str, Any]:
        """What this run's record knows that a re-adopting agent could not learn again.

        The spec is not among them: the lease holds it. Variable names only,
        never values.
        """
        return {
            "version": LAUNCH_FACTS_VERSION,
            "commit": self.commit,
            "dirty": self.dirty,
            "image": _image(self.image),
            "builder": self.builder,
            "env": sorted(self.env_names),
            "secrets": sorted(self.secret_names),
            "timestamps": dict(self.timestamps),
            "artifact_inputs": list(self.artifact_inputs),
            "artifact_code": self.artifact_code,
        }

    def restore(self, facts: Mapping[str, Any]) -> None:
        """Take back :meth:`launch_facts` of an earlier agent (its stage times win).

        Raises ValueError, leaving the recorder unchanged, when ``facts`` is not
        such a document.
        """
        if facts.get("version") != LAUNCH_FACTS_VERSION:
            raise ValueError(f"unknown launch facts version {facts.get('version')!r}")
        commit = _optional(facts, "commit", str)
        dirty = _optional(facts, "dirty", bool)
        image = _image_from(_optional(facts, "image", dict))
        builder = _optional(facts, "builder", str)
        env_names, secret_names = _names(facts, "env"), _names(facts, "secrets")
        timestamps = _optional(facts, "timestamps", dict) or {}
        inputs = _optional(facts, "artifact_inputs", list) or []
        if not all(isinstance(entry, dict) for entry in inputs):
            raise ValueError("launch facts: artifact_inputs must be a list of objects")
        code = _optional(facts, "artifact_code", dict)
        if any(s not in STAGES or not isinstance(t, str) for s, t in timestamps.items()):
            raise ValueError("launch facts: timestamps must map stage names to times")
        self.commit, self.dirty, self.image, self.builder = commit, dirty, image, builder
        self.env_names, self.secret_names = env_names, secret_names
        self.timestamps.update(timestamps)
        self.artifact_inputs, self.artifact_code = inputs, code

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
            "launchplane_version": __version__,
            "job_id": self.job_id,
            "attempt": self.attempt,
            "run_id": self.run_id,
            "queue": {"name": self.queue, "version": self.queue_version},
            "spec": _spec(job),
            "code": _code(job, self.commit, self.dirty),
            "image": _image(self.image),
            "builder": self.builder,
            "runner": job.resource if job else None,
            "plugins": dict(plugins),
            "environment": {"env": sorted(self.env_names), "secrets": sorted(self.secret_names)},
            "workload": self.workload,
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
            "integrations": {name: _fact(facts) for name, facts in self.integrations.items()},
            "artifacts": {
                "inputs": list(self.artifact_inputs),
                "outputs": list(self.artifact_outputs),
                "code": self.artifact_code,
            },
        }
        record["spec_hash"] = record_spec_hash(record)  # last: over every section above
        return scrub_obj(record) if scrub_obj is not None else record


def workload_facts(run: Run) -> dict[str, Any]:
    """``{"id": run.id, **run.facts()}``; a runner whose ``facts()`` fails still gets its id."""
    try:
        facts = dict(run.facts())
    except Exception as exc:  # a plugin's bug must not lose the record
        facts = {"facts_error": f"{type(exc).__name__}: {exc}"}
    return {"id": run.id, **facts}


def _fact(facts: Callable[[], Any]) -> Any:
    """One integration's section; a plugin's failure is reported in it, not lost in the record."""
    try:
        return facts()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _spec(job: ResolvedJob | None) -> dict[str, Any] | None:
    if job is None:
        return None
    spec = job.model_dump(mode="json")  # as the server stores it (server/validation.py)
    if spec["git"] is not None:
        spec["git"]["repository"] = safe_url(spec["git"]["repository"])
    return spec


def _code(job: ResolvedJob | None, commit: str | None, dirty: bool | None) -> dict[str, Any] | None:
    if job is None or (job.git is None and not job.workdir):
        return None
    git = job.git
    return {
        "repository": safe_url(git.repository) if git else None,
        "branch": git.branch if git else None,
        "commit": commit,
        "dirty": dirty,
        "workdir": job.workdir,
    }


def _image(image: Image | None) -> dict[str, Any] | None:
    if image is None:
        return None
    return {"ref": image.ref, "digest": image.digest, "pinned": image.pinned, "built": image.built}


def _image_from(data: Mapping[str, Any] | None) -> Image | None:
    """The inverse of :func:`_image` (``pinned`` is derived, so it is not read back)."""
    if data is None:
        return None
    return Image(
        _required(data, "ref", str), _optional(data, "digest", str), _required(data, "built", bool)
    )


def _optional(data: Mapping[str, Any], key: str, kind: type[T]) -> T | None:
    """``data[key]`` when it is a ``kind`` or null: launch facts come back from a file
    an earlier agent (perhaps of another version) wrote, so nothing is taken on trust."""
    value = data.get(key)
    if value is not None and not isinstance(value, kind):
        raise ValueError(f"launch facts: {key} must be a {kind.__name__} or null")
    return value


def _required(data: Mapping[str, Any], key: str, kind: type[T]) -> T:
    value = _optional(data, key, kind)
    if value is None:
        raise ValueError(f"launch facts: {key} is missing")
    return value


def _names(data: Mapping[str, Any], key: str) -> list[str]:
    names = _optional(data, key, list) or []
    if not all(isinstance(name, str) for name in names):
        raise ValueError(f"launch facts: {key} must be a list of names")
    return names

"""The classes plugins implement: builders, runners, runs and secret providers.

Hooks *register* these classes; the plugin manager instantiates them. Every
method that does I/O is async (anyio), so one agent process can watch many
jobs. Heavy client libraries (docker, kubernetes, boto3) are imported inside
the methods that use them, never at module import time.
"""

from __future__ import annotations

import enum
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from launchplane.core.spec import ResolvedJob

LogSink = Callable[[str], Awaitable[None]]
"""Where a builder or runner sends one line of output for the job's log."""


class PluginError(Exception):
    """A plugin failed in a way the user can fix; the message says how."""


class InfrastructureError(PluginError):
    """The compute failed the job, not the job's code: an image pull, an eviction, a lost node.

    A runner raises it from ``submit`` (or reports ``RunResult.infrastructure_failure``
    for a run that already started); a queue with a ``retry`` policy re-runs such jobs.
    """


class MissingExtraError(PluginError):
    """A plugin's optional dependency is not installed."""

    def __init__(self, kind: str, name: str, extra: str) -> None:
        super().__init__(f"{kind} '{name}' needs: pip install 'launchplane[{extra}]'")


@dataclass(frozen=True)
class Image:
    """What a builder produced: a reference a runner can start, pinned by digest if known."""

    ref: str
    digest: str | None = None
    built: bool = False
    """True when this launch built the image; False when it was reused or passed through."""

    @property
    def pinned(self) -> str:
        """``repo@sha256:...`` when the digest is known, else the plain reference."""
        if not self.digest or "@" in self.ref:
            return self.ref
        repository, _, last = self.ref.rpartition("/")
        name = last.split(":", 1)[0]  # drop the tag; a registry port sits before the "/"
        return f"{repository}/{name}@{self.digest}" if repository else f"{name}@{self.digest}"


@dataclass
class JobContext:
    """Everything about one launch that is not in the resolved spec.

    ``env`` is the final environment for the job's process: the resolved
    ``env`` with macros expanded, passthrough names filled from the agent,
    and secret values added. It is handed to the runner at create time only;
    it never goes into a record or a log.
    """

    job_id: str
    run_id: str
    attempt: int
    queue: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    log: LogSink | None = None
    code_dir: Path | None = None
    """A checkout of the job's code (git clone at its commit), when it has code."""
    git_commit: str | None = None
    secret_names: frozenset[str] = frozenset()

    async def emit(self, line: str) -> None:
        """Send one line to the job's log (no-op when nothing listens)."""
        if self.log is not None:
            await self.log(line)


class RunState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


@dataclass(frozen=True)
class RunResult:
    state: RunState
    exit_code: int | None = None
    reason: str | None = None
    """Why it failed, in words a user can act on (``OOMKilled``, last log lines, ...)."""
    infrastructure_failure: bool = False
    """True when the failure is not the user's code (eviction, image pull): retryable."""


class Run:
    """A handle on one submitted workload."""

    id: str

    async def status(self) -> RunState:
        raise NotImplementedError

    async def wait(self) -> RunResult:
        raise NotImplementedError

    async def cancel(self, grace: float = 10.0) -> None:
        """Ask the workload to stop; kill it after ``grace`` seconds."""
        raise NotImplementedError

    def logs(self) -> AsyncIterator[str]:
        """Lines of output, from the start, until the workload ends."""
        raise NotImplementedError


class Builder:
    """Turns a resolved job into an image a runner can start."""

    name: ClassVar[str]

    async def build(self, job: ResolvedJob, ctx: JobContext) -> Image | None:
        """Return the image to run, or None for a runner that needs none."""
        raise NotImplementedError


class Runner:
    """Starts and watches workloads on some compute."""

    name: ClassVar[str]
    needs_image: ClassVar[bool] = True
    resource_args_model: ClassVar[type[BaseModel] | None] = None
    """Validates ``resource_args.<name>``; a bad field fails at submit time with its path."""

    def validate_resource_args(self, args: dict[str, Any]) -> BaseModel | None:
        if self.resource_args_model is None:
            return None
        return self.resource_args_model.model_validate(args)

    def describe(self, job: ResolvedJob, image: Image | None) -> dict[str, Any]:
        """What ``submit`` would send (docker run args, manifest, API request), for ``plan``.

        Must not contact any service and must show secrets as references.
        """
        raise NotImplementedError

    async def submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> Run:
        raise NotImplementedError

    async def attach(self, run_id: str) -> Run | None:
        """Re-adopt a workload started by an earlier agent; None if it is gone or unsupported."""
        return None


@dataclass(frozen=True)
class SecretRef:
    """``scheme:path#key`` - e.g. ``aws-sm:prod/db#password``, ``env:HF_TOKEN``."""

    scheme: str
    path: str
    key: str | None = None

    def __str__(self) -> str:
        return f"{self.scheme}:{self.path}" + (f"#{self.key}" if self.key else "")


SCHEME_RE = re.compile(r"[a-z][a-z0-9+.-]*")
REF_FORM = "scheme:path[#key], e.g. env:HF_TOKEN or aws-sm:prod/db#password"


class SecretRefError(PluginError, ValueError):
    """A malformed secret reference.

    A ``ValueError`` too, so a pydantic validator can raise it and the user
    gets the field's path; a ``PluginError`` so the agent fails the job with it.
    """


def parse_ref(text: str) -> SecretRef:
    """Parse ``scheme:path#key`` (``#key`` optional) into a :class:`SecretRef`.

    The text is echoed in the error only when it starts like a reference
    (``scheme:``); anything else may be a secret pasted where its reference
    belongs, and stays out of messages and logs.
    """
    if not isinstance(text, str):
        raise SecretRefError(
            f"a secret reference is a string ({REF_FORM}), got {type(text).__name__}"
        )
    scheme, colon, rest = text.strip().partition(":")
    if not colon or not SCHEME_RE.fullmatch(scheme):
        raise SecretRefError(
            f"not a secret reference (not shown, in case it is the secret itself); "
            f"expected {REF_FORM}"
        )
    path, hash_, key = rest.partition("#")
    problem = _ref_problem(path, hash_, key)
    if problem:
        raise SecretRefError(f"secret reference {text.strip()!r} {problem}; expected {REF_FORM}")
    return SecretRef(scheme=scheme, path=path, key=key or None)


def _ref_problem(path: str, hash_: str, key: str) -> str | None:
    if not path:
        return "has no path after the scheme"
    if hash_ and not key:
        return "has an empty #key"
    if "#" in key:
        return "has more than one '#'"
    if any(ch.isspace() for ch in path + key):
        return "contains whitespace"
    return None


class SecretProvider:
    """Resolves secret references of one scheme."""

    scheme: ClassVar[str]

    async def resolve(self, ref: SecretRef) -> str:
        raise NotImplementedError

    def native_ref(self, ref: SecretRef, runner: str) -> Any | None:
        """A reference the runner can use itself (e.g. a Kubernetes ``secretKeyRef``).

        When this returns something, the value never passes through the agent.
        """
        return None

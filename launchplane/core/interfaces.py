"""The plugin contract (v1): builders, runners, secret providers and artifact stores.

Hooks *register* these classes (``launchplane.core.hookspecs``); launchplane
instantiates them, once per agent process, the first time a job needs one.
The docstrings here are the contract a plugin author implements against:
what each method receives, returns and raises, and when it is called.
``entrypoints.md`` ("Classes you implement", "Writing a runner", "Run
contract") says the same with examples.

The plugin base classes are abstract (:class:`abc.ABC`): a subclass that
leaves a required method out cannot be instantiated, and the plugin
registry refuses to register it, naming the missing methods. Every method
that does I/O is async (anyio), so one agent process can watch many jobs;
heavy client libraries (docker, kubernetes, boto3) are imported inside the
methods that use them, never at module import time.

One launch on the agent, in order (stages of ``launchplane.agent.pipeline``)::

    SecretProvider.native_ref / resolve   secrets stage, per reference
    Builder.build(job, ctx)               build stage -> Image | None
    Runner.submit(job, image, ctx)        run stage   -> Run
    Run.logs() then Run.wait()            watched together until the end
    Run.cancel(grace)                     any time a stop is requested
    Plugin.aclose()                       once, when the agent stops

After an agent restart, ``Runner.attach(run_id, run_dir)`` replaces
build + submit for a run that is still going. ``launchplane plan`` calls
``Runner.describe(job, image)`` instead of building and submitting.
"""

from __future__ import annotations

import abc
import enum
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from launchplane.core.errors import FieldError
from launchplane.core.spec import QueueConfig, ResolvedJob

LogSink = Callable[[str], Awaitable[None]]
"""Where a builder or runner sends one line of output for the job's log."""


class PluginError(Exception):
    """A plugin failed in a way the user can fix; the message says how.

    The message is shown as it is (scrubbed of secret values) as the job's
    failure reason, after the stage that failed. launchplane adds
    ``runner '<name>'`` where a message needs it: do not start yours with
    ``runner '<name>':`` (it would be shown twice). Never put a secret value
    in it.
    """


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
    """A reference the runner's engine can start or pull (``registry/name:tag``)."""
    digest: str | None = None
    """``sha256:...`` when known (a registry digest), so the run record pins exactly these bytes."""
    built: bool = False
    """True when this launch built the image; False when it was reused or passed through."""

    @property
    def pinned(self) -> str:
        """``repo@sha256:...`` when the digest is known, else the plain reference.

        What a runner should start: the image the record names, even if the
        tag moves meanwhile.
        """
        if not self.digest or "@" in self.ref:
            return self.ref
        repository, _, last = self.ref.rpartition("/")
        name = last.split(":", 1)[0]  # drop the tag; a registry port sits before the "/"
        return f"{repository}/{name}@{self.digest}" if repository else f"{name}@{self.digest}"


@dataclass(frozen=True)
class Mount:
    """One path the workload reads that the agent put on its host (see ``JobContext.mounts``)."""

    source: Path | None
    """On the agent host: a file or directory, complete before the workload starts; None
    when the agent did not download it because the runner reads :attr:`uri` itself."""
    target: str
    """Where the job sees it: an absolute path inside a container, or for a runner
    without one (local-process) a name relative to the run directory."""
    env: str | None = None
    """An environment variable the job reads the final path from (set by the runner,
    since only the runner knows where it put the files)."""
    read_only: bool = True
    uri: str | None = None
    """Where the store keeps this version's files (``s3://bucket/prefix/name/versions/v3/``),
    given only to a runner whose :attr:`Runner.artifact_uri_schemes` has its scheme: that
    runner reads it there (SageMaker: an S3 input channel) and ``source`` is None."""
    digest: str | None = None
    """The pinned version's ``sha256:`` content digest, for a runner that fetches :attr:`uri`
    where the agent cannot check it (Kubernetes: an init container verifies it)."""


@dataclass
class JobContext:
    """Everything about one launch that is not in the resolved job.

    The agent builds it in the prepare stage and hands the same object to
    ``launchplane_prepare_job`` hooks, ``Builder.build`` and ``Runner.submit``.
    It never goes into a record or a log as a whole: ``env`` holds secret values.
    """

    job_id: str
    """The job's id on the queue server."""
    run_id: str
    """``f"{job_id}-{attempt}"``: this attempt's id, the run directory's name, and what
    ``Runner.attach`` receives after an agent restart. Name your workload after it
    (deterministically) to find it again."""
    attempt: int
    """1 for the first run; one more each time the job is re-queued (a lost agent, a retry)."""
    queue: str
    """The queue the job was claimed from."""
    workdir: Path
    """The run directory, ``<agent work dir>/<run_id>`` on the agent host, created before
    the build. It holds ``output/`` (``$LAUNCHPLANE_OUTPUT_DIR``), the git checkout
    (``code/``) and the agent's own files (``record.json``, ``launch.json``,
    ``logged-lines``: leave them alone). A runner may keep files of its own here, named
    after itself; ``Runner.attach`` receives the same path."""
    env: dict[str, str] = field(default_factory=dict)
    """The final environment of the job's process: the resolved ``env`` with macros
    expanded, passthrough names filled from the agent, secret values, and
    ``LAUNCHPLANE_*`` (job id, run id, attempt, queue, output dir, hyperparameters).
    Give it to the workload when it is created, and nowhere else (never to a build,
    a label or a log line)."""
    native_secrets: dict[str, Any] = field(default_factory=dict)
    """Environment name -> the secret provider's native reference
    (``SecretProvider.native_ref``, e.g. a Kubernetes ``secretKeyRef``), for the
    secrets whose provider gave one for this job's runner. Their values never pass
    the agent and are not in ``env``: the runner wires them into the workload itself."""
    labels: dict[str, str] = field(default_factory=dict)
    """Extra labels for the workload, set by ``launchplane_prepare_job`` hooks.
    ``launchplane.core.launch.run_labels(ctx)`` adds the ones that identify the run."""
    log: LogSink | None = None
    """Where :meth:`emit` sends lines; None when nothing listens (tests, ``plan``)."""
    code_dir: Path | None = None
    """A checkout of the job's code (git clone at its commit), when it has git code.
    ``launchplane.core.launch.code_root(job, ctx)`` says where the code is in general."""
    git_commit: str | None = None
    """The commit checked out in ``code_dir``."""
    secret_names: frozenset[str] = frozenset()
    """The names in ``env`` that hold secret values: show them as references, never log them."""
    mounts: list[Mount] = field(default_factory=list)
    """Files the workload must see (the job's input artifacts, downloaded by the agent):
    each a path on the agent host and the path the job reads it at. A runner makes each
    one available its own way (a read-only bind mount, a path in the run directory named
    by an environment variable) or refuses the job with a :class:`PluginError` saying
    which mount it cannot provide."""
    record_facts: dict[str, Callable[[], Any]] = field(default_factory=dict)
    """Sections a ``launchplane_prepare_job`` hook adds to the run record: name ->
    a function called once when the record is built, after the workload ended, that
    returns JSON values (the W&B integration lists its offline run directory here).
    They land under ``integrations.<name>`` in the record, scrubbed like the rest;
    a function that raises gives ``{"error": ...}`` instead of losing the record."""

    async def emit(self, line: str) -> None:
        """Send one line (progress, a decision) to the job's log; scrubbed of secret values."""
        if self.log is not None:
            await self.log(line)


class RunState(enum.StrEnum):
    """Where a workload is: ``pending`` and ``running``, or one of the final states."""

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
    """How a workload ended: what ``Run.wait`` returns and the job's final state."""

    state: RunState
    """A final state: ``SUCCEEDED`` (exit code 0), ``FAILED``, or ``CANCELLED`` (stopped
    by ``Run.cancel``)."""
    exit_code: int | None = None
    """The main process's exit code (128+N for a signal N, as a shell reports it);
    None when there is none (the workload never started or vanished)."""
    reason: str | None = None
    """Why it failed, in words a user can act on (``OOMKilled``, last log lines, ...);
    None for a success. Never a secret value."""
    infrastructure_failure: bool = False
    """True when the failure is not the user's code (eviction, image pull): retryable."""


class Plugin(abc.ABC):  # noqa: B024 (a base of ABCs; its own methods have defaults)
    """What builders, runners and secret providers share: options and a lifecycle.

    Construction: a class whose ``options_model`` is set is built as
    ``cls(options=<an instance of options_model>)``, validated from the
    queue's or the agent's config (a bad option fails with its path and the
    plugin's name before the plugin sees it); a class without one as
    ``cls()``. One instance per name (and options) lives as long as the
    agent process and serves every job, concurrently: keep per-job state in
    the :class:`Run`, not on the instance. Do no I/O in ``__init__``; connect
    lazily in the async methods. If you override ``__init__``, accept
    ``options`` and call ``super().__init__(options)``.
    """

    options_model: ClassVar[type[BaseModel] | None] = None
    """A pydantic model of this plugin's options; None when it takes none."""

    def __init__(self, options: BaseModel | None = None) -> None:
        self.options = options
        """The validated options (an ``options_model`` instance), or None."""

    async def aclose(self) -> None:
        """Release what the instance holds (clients, connections, threads).

        Called once per instance when the agent (or ``launchplane run``)
        stops, after its jobs have ended or been released. The default does
        nothing. An exception is logged, not raised.
        """
        return None


class Run(abc.ABC):
    """A handle on one submitted workload; see "Run contract" in ``entrypoints.md``.

    What the agent does with a run (``Runner.submit`` or ``Runner.attach``
    returned it), and therefore what an implementation must support:

    1. It calls :meth:`logs` **once**, right before :meth:`wait`, and
       iterates it in another task **while** ``wait()`` runs. Every line
       must arrive, in order, also when ``wait()`` returns quickly (a
       workload that already ended).
    2. :meth:`wait` is awaited once; it returns when the workload has ended.
       The agent then waits for the ``logs()`` iterator to end too, so it
       must end once the workload has (not hang on an open stream).
    3. :meth:`cancel` may come at any time from another task: before
       ``logs()``/``wait()`` were called (a stop that arrived during
       ``submit``), while ``wait()`` runs, after the workload ended on its
       own, and more than once (a user's cancel, then the agent's shutdown).
    4. :meth:`status` is not part of the launch flow; tools may call it.
    """

    id: str
    """The runner's id for the workload (a container name, a cluster job id); shown in the
    job's ``running`` event. The agent does not pass it back to ``attach``."""

    @abc.abstractmethod
    async def status(self) -> RunState:
        """Where the workload is now, without waiting and without consuming its logs."""

    @abc.abstractmethod
    async def wait(self) -> RunResult:
        """Until the workload ends; then how it ended.

        A run stopped by :meth:`cancel` ends ``CANCELLED``; one that ended on
        its own first reports how it ended. Raise nothing for the workload's
        own failure: return ``FAILED`` with a reason (and
        ``infrastructure_failure=True`` when the compute, not the code, failed).
        """

    @abc.abstractmethod
    async def cancel(self, grace: float = 10.0) -> None:
        """Ask the workload to stop (SIGTERM or its equivalent); kill it after ``grace`` seconds.

        May be called at any time and more than once (see the class
        docstring); a call for a workload that has already ended does
        nothing and must not raise. It may return once the workload was
        asked to stop or once it is gone; ``wait()`` then returns
        ``CANCELLED``.
        """

    @abc.abstractmethod
    def logs(self) -> AsyncIterator[str]:
        """The workload's output (stdout and stderr merged), one line per item, without newlines.

        From the workload's **start**, not from now: for a run re-adopted
        after an agent restart it replays what was printed before, and the
        agent skips the lines the server already has. The iterator ends once
        the workload has ended and its output is read. Called once per run
        object; an ``async def`` generator is the simplest implementation.
        After :meth:`wait` returns, the agent reads on while lines keep
        coming, and closes an iterator that stays silent for 2 s (its
        ``finally`` runs: release the stream there).
        """

    def facts(self) -> dict[str, Any]:
        """What the run record keeps about the workload, beside ``id``: where to find it again.

        E.g. ``{"namespace": "ml", "job_name": "lp-abc-1"}`` or
        ``{"training_job_arn": "arn:aws:sagemaker:..."}``. The agent asks once the
        run has started and again when it ends (the later answer wins), and puts
        the answer under ``workload`` in the record, scrubbed. JSON values only;
        never a secret value. The default is nothing more than ``id``.
        """
        return {}


class Builder(Plugin):
    """Turns a resolved job into an image a runner can start."""

    name: ClassVar[str]
    """Registry key: what a queue's ``builder.type`` names."""

    @abc.abstractmethod
    async def build(self, job: ResolvedJob, ctx: JobContext) -> Image | None:
        """Return the image to run, or None for a runner that needs none.

        Called once per attempt in the build stage, after secrets, the git
        checkout and ``launchplane_prepare_job``, before ``Runner.submit``.
        ``job`` is the resolved job (macros in ``command``/``args``/``env``
        not yet expanded: the image is not known yet); the job's code is at
        ``launchplane.core.launch.code_root(job, ctx)``. ``ctx.env`` holds
        secret values: never pass it to a build. Send progress with
        ``await ctx.emit(line)``. Raise :class:`PluginError` to fail the job
        in the ``build`` stage. A stopped job cancels the build (anyio
        cancellation): stop promptly. Returning None for a runner whose
        ``needs_image`` is True fails the job with a message naming
        ``docker.image``.
        """


ADMIN_ONLY: dict[str, Any] = {"admin_only": True}
"""``json_schema_extra`` of a ``resource_args_model`` field only a queue config may set."""


@functools.cache
def admin_only_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names (and aliases) of ``model``'s fields marked :data:`ADMIN_ONLY`.

    Read once per model class: resolution asks for every submitted job."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get("admin_only") is True:
            names.add(name)
            if info.alias:
                names.add(info.alias)
            names.update(_alias_names(info.validation_alias))
    return frozenset(names)


def _alias_names(alias: Any) -> set[str]:
    """The key spellings of a ``validation_alias`` (a name or ``AliasChoices`` of names).

    Every spelling counts: ``serviceAccountName`` must be as admin-only as
    ``service_account``."""
    if isinstance(alias, str):
        return {alias}
    choices = getattr(alias, "choices", None) or []
    return {choice for choice in choices if isinstance(choice, str)}


class Runner(Plugin):
    """Starts and watches workloads on some compute; see "Writing a runner" in entrypoints.md."""

    name: ClassVar[str]
    """Registry key: what a queue's ``resource:`` names."""
    needs_image: ClassVar[bool] = True
    """False for a runner that starts a process without an image (``local-process``)."""
    artifact_uri_schemes: ClassVar[tuple[str, ...]] = ()
    """URI schemes of stores this runner's workloads read input artifacts from themselves
    (``("s3",)`` for SageMaker's input channels). For an input whose store names the
    version's files by such a URI (:meth:`ArtifactStore.version_uri`), the agent pins the
    version and does not download it: its ``Mount`` has ``uri`` and no ``source``."""
    resource_args_model: ClassVar[type[BaseModel] | None] = None
    """Validates ``resource_args.<name>``: the server checks it when a job is submitted, the
    agent again before launch, so a bad field fails with its path and a "did you mean" hint
    before anything runs. Validate it again in ``submit``/``describe`` to
    read it (``self.resource_args_model.model_validate(job.resource_args.get(self.name, {}))``).
    A field that reaches the agent's host (a host mount, the host's network, the OCI
    runtime) is marked ``Field(json_schema_extra=ADMIN_ONLY)``: only a queue config may set
    it; a submitter's layer that does is refused at submit."""

    @abc.abstractmethod
    def describe(self, job: ResolvedJob, image: Image | None) -> dict[str, Any]:
        """What ``submit`` would send (docker run args, a manifest, an API request), for ``plan``.

        Called by ``launchplane plan`` only, never by the agent. There is no
        run yet: macros (``${run_id}``, ``${job_id}``, ...) in ``command``,
        ``args`` and ``entry_point`` are not expanded with real values (they
        hold the macro text or a preview placeholder), and ``image`` is the
        image the job names, or None. Return a JSON-serialisable mapping.
        Must not contact any service; show secrets as references
        (``job.secrets``), never values. Raise :class:`PluginError` for a
        job this runner cannot run.
        """

    @abc.abstractmethod
    async def submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> Run:
        """Start the workload and return its :class:`Run` once it has started.

        Called once per attempt in the run stage, after ``Builder.build``.
        ``job`` has its macros expanded in ``command``, ``args`` and
        ``entry_point`` (``launchplane.core.launch.job_argv(job)`` is the
        command line); ``image`` is the builder's (None only when
        ``needs_image`` is False); the process environment is ``ctx.env``
        plus ``ctx.native_secrets`` (see :class:`JobContext`). The call is
        shielded from cancellation so a started workload is never orphaned: a
        stop that arrives meanwhile reaches the returned run's ``cancel``.
        Raise :class:`PluginError` (or :class:`InfrastructureError`, which a
        queue's retry policy re-runs) when it cannot start, leaving nothing
        running behind; any other exception fails the job too, with its type
        in the reason.
        """

    @classmethod
    def check_queue(cls, config: QueueConfig) -> list[FieldError]:
        """What only this runner finds wrong with a queue config that names it, before any submit.

        Called by ``queue create``/``queue update`` and ``plan`` (server-side too: no
        instance, no I/O), after ``resource_args_model`` accepted the queue's
        ``resource_args``. Return one :class:`~launchplane.core.errors.FieldError`
        per problem, with the path a user fixes (``secrets``) and the fix; an empty
        list (the default) accepts the queue. E.g. a runner whose platform shows the
        workload's environment to everyone refuses a queue with ``secrets:`` unless
        the queue opts in.
        """
        return []

    async def attach(self, run_id: str, run_dir: Path) -> Run | None:
        """Re-adopt a workload started by an earlier agent; None if it is gone or unsupported.

        Called by an agent that (re)starts with leases the server says it
        still holds, before it claims anything. ``run_id`` is the attempt's
        ``f"{job_id}-{attempt}"`` (``JobContext.run_id`` at submit, the run
        directory's name; not ``Run.id``) and ``run_dir`` is that run's
        directory on this host (``JobContext.workdir`` at submit; it may be
        missing, e.g. after a move to another host). Find the workload by
        deterministic name or label, or by a file you kept in ``run_dir``.
        The returned run is watched to its end under the same lease: its
        ``logs()`` replays from the start (the agent skips what was sent).
        None (the default) makes the agent release the lease, so the job is
        re-queued as a new attempt; an exception counts as None and is logged.
        """
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


class SecretProvider(Plugin):
    """Resolves secret references of one scheme (``scheme:path#key``)."""

    scheme: ClassVar[str]
    """Registry key: the part of a reference before the colon (``vault`` in ``vault:kv/app``)."""

    @abc.abstractmethod
    async def resolve(self, ref: SecretRef) -> str:
        """The secret's value.

        Called on the agent in the secrets stage, concurrently for every
        reference of the job, before anything else runs (and again when a
        run is re-adopted, only to mask its output). Read the value at each
        call, so a rotated secret is picked up without a restart. Raise
        :class:`PluginError` with a message that names the path and key,
        never the value.
        """

    def native_ref(self, ref: SecretRef, runner: str) -> Any | None:
        """A reference the runner named ``runner`` can use itself (a Kubernetes ``secretKeyRef``).

        Asked before :meth:`resolve`; when it returns something, ``resolve``
        is not called for that reference, the runner receives it in
        ``JobContext.native_secrets[<env name>]`` and the value never passes
        through the agent. The default, None, means "resolve it".
        """
        return None


ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""An artifact's (and an alias's) name in every store: one path segment, no ``..``."""
LATEST = "latest"
"""The alias every upload moves, and the one a name without alias means."""
ARTIFACT_VERSION = re.compile(r"^v(\d+)$")
"""A version (``v0``, ``v1``, ...): it never moves, unlike an alias. Group 1 is its number."""


@dataclass(frozen=True)
class ArtifactVersion:
    """One immutable version of an artifact: what a run record pins instead of an alias."""

    store: str
    """The store's registry name (``file``, ``s3``)."""
    name: str
    version: str
    """``v0``, ``v1``, ...: the store's own, never reused for other content."""
    digest: str
    """``sha256:<hex>`` of the content (each file's path and bytes): equal content, equal
    digest, in every store."""
    size: int
    """Bytes of all files."""
    aliases: tuple[str, ...] = ()
    """The aliases pointing at this version when it was resolved or uploaded."""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """``name:version``: resolves to this version again, whatever its aliases do later."""
        return f"{self.name}:{self.version}"


def check_artifact_name(what: str, value: str) -> str:
    """``value`` if it is a valid artifact or alias name, else :class:`PluginError` naming it."""
    if not ARTIFACT_NAME.match(value) or value in (".", ".."):
        raise PluginError(
            f"{what} {value!r} is not a valid name: use letters, digits, '.', '_' and '-' "
            "(up to 128, starting with a letter or digit)"
        )
    return value


class ArtifactStore(Plugin):
    """Versions of named artifacts (datasets, models): resolve, download, upload.

    A version is immutable and content-addressed: its :attr:`ArtifactVersion.digest`
    covers every file's relative path and bytes. Aliases (``latest``, ``prod``)
    are movable names of versions; ``latest`` always moves to a new upload.
    Several agents may upload to one store at once: each upload gets its own
    version number and every alias move is atomic. Methods may be called
    concurrently for different jobs.
    """

    name: ClassVar[str]
    """Registry key: what a queue's ``artifact_store.type`` names (``file``, ``s3``)."""

    @abc.abstractmethod
    async def resolve(self, name: str, alias: str | None = None) -> ArtifactVersion:
        """The version ``alias`` (default ``latest``) of ``name`` points at now.

        ``alias`` may also be a version (``v3``): that version itself. Raise
        :class:`PluginError` naming the artifact and alias when either is unknown.
        """

    @abc.abstractmethod
    async def download(self, version: ArtifactVersion, dest: Path) -> Path:
        """Put the version's files under ``dest`` (created); return ``dest``.

        Verify the content against ``version.digest`` and raise
        :class:`PluginError` on a mismatch: a record pins a digest, not a path.
        """

    @abc.abstractmethod
    async def upload(
        self,
        path: Path,
        name: str,
        aliases: tuple[str, ...] = (),
        metadata: dict[str, Any] | None = None,
    ) -> ArtifactVersion:
        """Store ``path`` (a file or a directory) as a new version of ``name``.

        ``latest`` and ``aliases`` move to it. Content equal to an existing
        version's gives that version back (its aliases move) instead of a copy.
        """

    def version_uri(self, version: ArtifactVersion) -> str | None:
        """Where a runner can read the version's files itself (``s3://.../versions/v3/``), or
        None (the default: only :meth:`download` gets them). Versions never change, so a
        workload reading there reads the pinned bytes."""
        return None

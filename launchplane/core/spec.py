"""Pydantic models of the job format, the queue config and the resolved job.

The job format is the one W&B Launch users already know (see
``shared/reference/wandb-launch-job-configuration.md``); launchplane accepts
every field of it. Models are strict about *keys* (an unknown key is an error
that names its path and suggests the closest valid key, see ``errors.py``) and
lenient about free-form payloads that belong to a plugin (``resource_args``
per runner are validated by the runner's own model).

Three shapes exist:

* :class:`JobSpec` - what a submitter writes. May not hold ``secrets``.
* :class:`QueueConfig` - what an admin writes: job-shaped defaults plus the
  queue's runner (``resource``), guardrails (``template_variables``,
  ``locked``, ``passthrough_env``, ``guardrails``), ``secrets``, the options of the secret
  providers they use (``secret_providers``) and lease/retry settings.
* :class:`ResolvedJob` - the single final job after queue < job < overrides
  have been merged and templates substituted. Agents launch exactly this.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Scalar = str | int | float | bool


class StrictModel(BaseModel):
    """Base for every spec model: unknown keys are errors, never silently dropped."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class GitSource(StrictModel):
    """Code from a git repository. ``commit`` pins it; a branch is resolved at launch."""

    repository: str
    branch: str | None = None
    commit: str | None = None
    patch: str | None = None
    """A diff applied with ``git apply`` after the checkout (a W&B job's ``diff.patch``)."""


class DockerSource(StrictModel):
    """A pre-built image to run as is (with the ``noop`` builder) or to build from."""

    image: str | None = None
    dockerfile: str | None = None


class AcceleratorSpec(StrictModel):
    base_image: str | None = None


class BuilderSpec(StrictModel):
    """Which builder makes the image. ``type`` names a registered builder plugin."""

    type: str | None = None
    base_image: str | None = None
    accelerator: AcceleratorSpec | None = None
    # Builder-specific options (e.g. registry to push to) live here, free-form,
    # and are validated by the builder plugin.
    options: dict[str, Any] = Field(default_factory=dict)


class ArtifactStoreSpec(StrictModel):
    """Which artifact store a queue's jobs use: ``type`` names a registered store plugin."""

    type: str
    options: dict[str, Any] = Field(default_factory=dict)
    """Validated by the store's ``options_model`` (``root`` of ``file``; ``bucket`` of ``s3``)."""


class ArtifactRef(StrictModel):
    """An input or output artifact.

    Accepts the ``name:alias`` string form (``dataset:latest``) and the
    mapping form (``{type, name, path}``); both normalise to this model.
    """

    name: str
    alias: str | None = None
    type: str | None = None
    path: str | None = None
    slot: str | None = None
    """The W&B artifact slot this replaces (W&B's ``overrides.artifacts`` key: the name
    the job's code passes to ``use_artifact``)."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _split_artifact_name({"name": value})
        if isinstance(value, dict) and "name" in value and "alias" not in value:
            return _split_artifact_name(dict(value))
        return value


def _split_artifact_name(data: dict[str, Any]) -> dict[str, Any]:
    name = str(data["name"])
    # "entity/project/name:alias" - the alias is after the last colon, unless
    # that colon belongs to a URI scheme ("wandb-artifact://...").
    head, sep, alias = name.rpartition(":")
    if sep and head and "/" not in alias and not alias.startswith("//"):
        data["name"], data["alias"] = head, alias
    return data


class TemplateVariable(StrictModel):
    """The type and bounds of one ``{{name}}`` placeholder of a queue config."""

    type: Literal["string", "integer", "float", "boolean"] = "string"
    default: Scalar | None = None
    options: list[Scalar] | None = None
    min: float | None = None
    max: float | None = None
    description: str | None = None


PRIORITIES = ("critical", "high", "medium", "low")
"""W&B's four priorities, highest first; claims take the highest, oldest first within one."""

DEFAULT_PRIORITY = "medium"


def priority_name(value: Any) -> Any:
    """``high``, ``HIGH`` or W&B's number (0 critical .. 3 low) as the name; else unchanged."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(PRIORITIES):
        return PRIORITIES[value]
    if isinstance(value, str) and value.strip().lower() in PRIORITIES:
        return value.strip().lower()
    return value


Priority = Literal["critical", "high", "medium", "low"]


class RetryPolicy(StrictModel):
    """Re-run a job after an infrastructure failure (lost agent, image pull, eviction)."""

    max_attempts: int = Field(default=1, ge=1, le=100)
    backoff_seconds: float = Field(default=0.0, ge=0.0)
    include_user_failures: bool = False


class _JobFields(StrictModel):
    """Fields shared by a job config and a queue config (the queue's are defaults)."""

    queue: str | None = None
    entity: str | None = None
    project: str | None = None
    job: str | None = None
    name: str | None = None
    git: GitSource | None = None
    artifact: str | None = None
    docker: DockerSource | None = None
    builder: BuilderSpec | None = None
    entry_point: str | list[str] | None = None
    args: list[str] | None = None
    command: list[str] | None = None
    workdir: str | None = None
    env: dict[str, str | None] = Field(default_factory=dict)
    input_artifacts: list[ArtifactRef] = Field(default_factory=list)
    output_artifacts: list[ArtifactRef] = Field(default_factory=list)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    resource_args: dict[str, dict[str, Any]] = Field(default_factory=dict)
    requirements: list[str] | None = None
    """Pinned Python requirements (a W&B job's ``requirements.frozen.txt``): written to the
    code root as ``requirements.frozen.txt``, installed by image builders, checked against
    the installed packages by the local-process runner."""
    priority: Priority | None = None
    """Claim order within the queue: critical, high, medium (the default), low."""
    author: str | None = None
    """Who launched it (W&B's ``author``); the ``${author}`` macro."""
    wandb_run_id: str | None = None
    """The W&B run id the submitter asked for (a W&B launch spec's ``run_id``): given to the
    job as ``WANDB_RUN_ID``. launchplane's own run id (``${run_id}``) stays its own."""
    sweep_id: str | None = None
    """The W&B sweep this run belongs to (``WANDB_SWEEP_ID``)."""

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_name(cls, value: Any) -> Any:
        return priority_name(value)

    @field_validator("command", mode="before")
    @classmethod
    def _command_string(cls, value: Any) -> Any:
        # "python train.py" is accepted and split like a shell would.
        if isinstance(value, str):
            import shlex

            return shlex.split(value)
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_values(cls, value: Any) -> Any:
        # YAML users write PORT: 29500; env values are strings to a process.
        if isinstance(value, dict):
            return {
                str(k): (v if v is None or isinstance(v, str) else _yaml_scalar_text(v))
                for k, v in value.items()
            }
        return value


def _yaml_scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class JobSpec(_JobFields):
    """A job as a submitter writes it.

    ``template_variables`` here are *values* for the queue's declared
    variables (``{"volume_size": 200}``), as W&B's ``launch_add`` takes them.
    ``base_config`` is consumed by the loader and never reaches the server.
    """

    base_config: str | None = None
    template_variables: dict[str, Scalar] = Field(default_factory=dict)


SecretProviderOptions = dict[str, dict[str, Any]]
"""``{scheme: {option: value}}``: options of secret providers, each validated by the
provider's own ``options_model`` when the agent builds it (``{file-vault: {path: ...}}``)."""


class Guardrails(StrictModel):
    """What a queue lets its submitters reach on the agent's host (``docs/security.md``).

    Names are exact or end in ``*`` (a prefix: ``HF_*``). An admin's own
    submissions are trusted with the host and skip these checks.
    """

    env_allow: list[str] = Field(default_factory=list)
    """Names of the built-in deny-list (``launchplane.core.config.envnames``) a submitter may
    set on this queue anyway (``PYTHONPATH``)."""
    env_deny: list[str] = Field(default_factory=list)
    """More names a submitter may not set (``MPLBACKEND``, ``MY_TOOL_*``)."""
    env_only: list[str] | None = None
    """Allow-list mode: when set, a submitter may set only these names (the deny-list still
    applies to them unless ``env_allow`` names them)."""
    workdir_roots: list[str] = Field(default_factory=list)
    """Absolute directories of the agent host a submitter's absolute ``workdir`` may be in
    (none: a submitter's workdir is a folder of the job's git checkout)."""
    git_local_remotes: bool = False
    """Let submitters give ``git.repository`` as ``file://`` or a path on the agent host."""
    require_pins: bool = False
    """Refuse a job with an unpinned input (a branch without a commit, an image by tag, an
    artifact by alias, an unpinned requirement: ``launchplane.core.pins``), each named with
    its fix. Unlike the other guardrails it binds admins too: it is about reproducibility,
    not about trust."""

    @field_validator("env_allow", "env_deny", "env_only")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or []:
            if not pattern or pattern == "*" or "*" in pattern[:-1]:
                raise ValueError(
                    f"{pattern!r} is not an env name or a PREFIX* pattern (one trailing *)"
                )
        return value

    @field_validator("workdir_roots")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        for root in value:
            if not root.startswith("/"):
                raise ValueError(f"{root!r} is not an absolute directory (start it with /)")
        return value


class QueueConfig(_JobFields):
    """A queue as an admin configures it."""

    resource: str = "local-process"
    secrets: dict[str, str] = Field(default_factory=dict)
    secret_providers: SecretProviderOptions = Field(default_factory=dict)
    """Options per secret scheme, over the agent config's ``secret_providers`` (key by key).
    Configuration, not credentials: a token belongs in ``secrets``."""
    template_variables: dict[str, TemplateVariable] = Field(default_factory=dict)
    locked: list[str] = Field(default_factory=list)
    passthrough_env: list[str] = Field(default_factory=list)
    lease_ttl_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    retry: RetryPolicy | None = None
    artifact_store: ArtifactStoreSpec | None = None
    """Where the queue's ``input_artifacts`` are resolved and ``output_artifacts`` go."""
    integrations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Integration plugins this queue turns on, each with its options (``wandb: {}``):
    off unless named here. Read by ``launchplane_prepare_job`` hooks from the resolved job."""
    guardrails: Guardrails = Field(default_factory=Guardrails)


# Keys that belong to the queue's administration and never merge into a job.
QUEUE_ONLY_KEYS = frozenset(
    {
        "resource",
        "secrets",
        "secret_providers",
        "template_variables",
        "locked",
        "passthrough_env",
        "lease_ttl_seconds",
        "max_attempts",
        "retry",
        "artifact_store",
        "integrations",
        "guardrails",
    }
)


class ResolvedJob(_JobFields):
    """The final job: queue config < job config < overrides, templates substituted.

    The server resolves and validates it once, at submit, and stores it; the
    lease hands it to the agent, which launches exactly this. What plugins see
    (``Builder.build``, ``Runner.describe``/``submit``, ``launchplane_prepare_job``);
    read it, do not mutate it:

    ``resource``              the runner's name (the queue decides it).
    ``resource_args``         ``{runner name: {...}}``; the runner's own entry has passed
                              its ``resource_args_model``. Its macros (and the queue's
                              ``${NAME}`` references) are expanded in the job
                              ``Runner.submit`` receives, not in the one ``describe`` gets.
    ``command`` / ``args`` / ``entry_point``
                              what to run (``launchplane.core.launch.job_argv``). Macros
                              (``${run_id}``, ``${job_id}``, ...) are expanded in the job
                              ``Runner.submit`` receives, not in the one ``describe`` gets.
    ``workdir``               a folder of the git checkout, or an absolute path on the
                              agent host (``launchplane.core.launch.code_root``).
    ``git``                   ``repository``, ``branch``, ``commit``, ``patch``; checked out
                              (and patched) by the agent to ``JobContext.code_dir``.
    ``docker``                ``image`` (pre-built, run as is) and ``dockerfile`` (the job's own).
    ``builder``               ``type`` (default ``noop``), ``base_image``,
                              ``accelerator.base_image``, ``options`` (the builder's).
    ``env``                   as declared: may still hold ``${NAME}`` agent-environment
                              references and macros, and ``None`` for names passed through
                              from the agent. The final environment is ``JobContext.env``.
    ``passthrough_env``       names the queue passes through from the agent's environment.
    ``secrets``               ``{ENV_NAME: "scheme:path#key"}``: *references*, never values;
                              the agent resolves them at launch into ``JobContext.env`` (or
                              ``JobContext.native_secrets``).
    ``secret_providers``      ``{scheme: {option: value}}``: the queue's options for the
                              providers that resolve ``secrets`` (configuration, not secrets).
    ``hyperparameters``       free-form; also in ``$LAUNCHPLANE_HYPERPARAMETERS`` (JSON).
    ``input_artifacts`` / ``output_artifacts``
                              ``name``, ``alias``, ``type``, ``path``.
    ``queue``, ``entity``, ``project``, ``job``, ``name``, ``artifact``
                              identity and W&B fields, for names and labels.
    ``author``, ``wandb_run_id``, ``sweep_id``
                              W&B's launch spec fields (``${author}``; ``WANDB_RUN_ID``,
                              ``WANDB_SWEEP_ID`` for the W&B integration).
    ``priority``              the claim order it was queued with (None: medium).
    ``requirements``          pinned requirements (``requirements.frozen.txt``), or None.
    ``template_values``       the queue's template variables as this job set them
                              (already substituted into the fields above).
    ``artifact_store``        the queue's store for ``input_artifacts``/``output_artifacts``
                              (``type`` and ``options``), or None.
    ``integrations``          the queue's integration plugins and their options
                              (``{"wandb": {...}}``); empty: none is on.
    """

    resource: str = "local-process"
    secrets: dict[str, str] = Field(default_factory=dict)
    secret_providers: SecretProviderOptions = Field(default_factory=dict)
    artifact_store: ArtifactStoreSpec | None = None
    integrations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    template_values: dict[str, Scalar] = Field(default_factory=dict)
    passthrough_env: list[str] = Field(default_factory=list)

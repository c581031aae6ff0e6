"""``resource_args.sagemaker`` and the ``CreateTrainingJob`` request made from it: pure, no I/O.

What a queue or job writes under ``resource_args.sagemaker`` is W&B's form,
the ``CreateTrainingJob`` request itself (``RoleArn``, ``ResourceConfig``,
``StoppingCondition``, ``OutputDataConfig``, ``InputDataConfig``,
``VpcConfig``, ``Tags``, ``EnableManagedSpotTraining``, ``CheckpointConfig``,
...; a top-level ``snake_case`` key is read as its CamelCase name, as W&B
does), plus:

* the seed's short keys ``InstanceType``, ``VolumeSizeInGB`` (into
  ``ResourceConfig``) and ``MaxRuntimeInSeconds`` (into ``StoppingCondition``).
  A short key and its long form may both be set only to the same value: were
  one allowed to win, a job could dodge a queue's lock or template on the
  other spelling;
* launchplane's own lowercase keys (:class:`SageMakerArgs`): ``region``,
  and, for admins only, ``profile``, ``endpoint_url``, the polling pace and
  ``secrets_in_environment``.

Every request is checked against botocore's own model of the SageMaker API
(the ``CreateTrainingJob`` input shape), so an unknown field or a wrong type
is refused with its path before any call, and the check follows AWS's API as
botocore ships it, without a schema of our own: partially (no required
fields, ``{{placeholders}}`` skipped) when a queue is created or a job is
resolved, completely on the final request in ``plan`` and at submit.

The final request (:func:`build_request`) adds what only a launch knows: the
deterministic ``TrainingJobName`` (:func:`training_job_name`), the image
(``AlgorithmSpecification.TrainingImage``), the command
(``ContainerEntrypoint``/``ContainerArguments``), ``HyperParameters`` as
strings, the environment, input channels for ``s3://`` input artifacts and
tags that identify the run.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from launchplane.core.config.wandb_spec import FILE_OVERRIDES_ENV, chunked_variables
from launchplane.core.errors import ConfigError, FieldError, join_path, suggest
from launchplane.core.interfaces import ADMIN_ONLY, Mount, SecretRefError, parse_ref
from launchplane.core.launch import entry_argv
from launchplane.core.spec import ResolvedJob

RUNNER = "sagemaker"
OPERATION = "CreateTrainingJob"
SHORT_KEYS: dict[str, tuple[str, str]] = {
    "InstanceType": ("ResourceConfig", "InstanceType"),
    "VolumeSizeInGB": ("ResourceConfig", "VolumeSizeInGB"),
    "MaxRuntimeInSeconds": ("StoppingCondition", "MaxRuntimeInSeconds"),
}
"""The seed document's top-level keys and where they go in the request."""
IGNORED_KEYS = frozenset({"EcrRepoName"})
"""W&B keys that are not part of the request (W&B pops them too): the builder names the
registry in launchplane."""
NAME_PREFIX = "lp-"
NAME_MAX = 63
_NAME_BAD = re.compile(r"[^a-zA-Z0-9-]+")
TRAINING_JOB_NAME_RE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
"""SageMaker's pattern for ``TrainingJobName`` (from botocore's model)."""
SECRET_SCHEME = "aws-sm"
"""Secrets of this scheme reach the job as references its role reads, never as values."""
SECRET_ID_SUFFIX = "_SECRET_ID"
SECRET_KEY_SUFFIX = "_SECRET_KEY"
SECRET_STAGE_SUFFIX = "_SECRET_VERSION_STAGE"
OUTPUT_DIR = "/opt/ml/model"
"""``LAUNCHPLANE_OUTPUT_DIR`` in the job: what SageMaker uploads to ``S3OutputPath``."""
INPUT_DIR = "/opt/ml/input/data"
MAX_TAGS = 50
ENV_VALUE_MAX = 512
_TAG_BAD = re.compile(r"[^\w\s.:/=+\-@]")
_CHANNEL_BAD = re.compile(r"[^A-Za-z0-9._-]+")
_JAVA_ONLY = re.compile(r"\\p\{|\\P\{")
"""Patterns botocore writes in Java's dialect (``\\p{L}``): not checked here, AWS checks them."""
STAND_IN_ACCOUNT = "123456789012"
"""Checks a role name as the ARN it will become; the real account is asked at submit."""
REQUIRED = "is required by SageMaker"
PREVIEW_NAME = "lp-job-id-attempt"
"""A stand-in that passes the name pattern, for checking what ``plan`` shows."""


class SageMakerArgs(BaseModel):
    """``resource_args.sagemaker``: launchplane's keys; every other key is the request's.

    The request's keys are checked against botocore's ``CreateTrainingJob``
    shape by the validator (paths relative to ``resource_args.sagemaker``).
    """

    model_config = ConfigDict(extra="allow")

    region: str | None = Field(
        default=None, description="AWS region of the training job; else the AWS config chain"
    )
    profile: str | None = Field(
        default=None,
        description="AWS profile on the agent host whose credentials create the job",
        json_schema_extra=ADMIN_ONLY,
    )
    endpoint_url: str | None = Field(
        default=None,
        description="A non-AWS SageMaker/CloudWatch endpoint (moto, a VPC endpoint); "
        "the agent's credentials sign requests to it",
        json_schema_extra=ADMIN_ONLY,
    )
    poll_interval: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between DescribeTrainingJob calls at first and after each change",
        json_schema_extra=ADMIN_ONLY,
    )
    max_poll_interval: float = Field(
        default=60.0,
        gt=0,
        description="The longest pause between polls of a job that does not change",
        json_schema_extra=ADMIN_ONLY,
    )
    secrets_in_environment: bool = Field(
        default=False,
        description="Put secret values in the job's Environment, which anyone allowed "
        "DescribeTrainingJob can read (aws-sm: secrets go as references either way)",
        json_schema_extra=ADMIN_ONLY,
    )

    @model_validator(mode="after")
    def _request(self) -> SageMakerArgs:
        request, errors, spelled = request_part(self.model_extra or {})
        errors += [respelled(e, spelled) for e in check_request(request, complete=False)]
        if errors:
            raise ConfigError(errors)
        return self

    def request(self) -> dict[str, Any]:
        """The request fields given here (long spelling), checked; ConfigError otherwise."""
        request, errors, _ = request_part(self.model_extra or {})
        if errors:
            raise ConfigError(errors)
        return request


OWN_KEYS = frozenset(SageMakerArgs.model_fields)


def camel(key: str) -> str:
    """W&B's reading of a snake_case key: ``role_arn`` -> ``RoleArn``; others unchanged."""
    if "_" not in key:
        return key
    return "".join(part.title() if part else "_" for part in key.split("_"))


def request_part(
    given: Mapping[str, Any],
) -> tuple[dict[str, Any], list[FieldError], dict[str, str]]:
    """The request fields of ``resource_args.sagemaker`` (short keys moved, snake_case read).

    Conflicts (a short key and its long form, a snake and a CamelCase spelling
    with different values) are errors at the spelling that was given. The third
    item maps a request path to the spelling given for it (``ResourceConfig.VolumeSizeInGB``
    -> ``VolumeSizeInGB``), for :func:`respelled`.
    """
    request: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    errors: list[FieldError] = []
    for key, value in given.items():
        if key in OWN_KEYS or key in IGNORED_KEYS:
            continue
        name = key if key in SHORT_KEYS else camel(key)
        if name in request and request[name] != value:
            errors.append(FieldError(key, f"is {spelled[name]} spelled again; set it once"))
            continue
        request[name], spelled[name] = copy.deepcopy(value), key
    for short, (section, member) in SHORT_KEYS.items():
        if short not in request:
            continue
        value = request.pop(short)
        target = request.get(section)
        if target is None:
            target = request[section] = {}
        if not isinstance(target, dict):
            continue  # the type check reports the section
        if member in target and target[member] != value:
            errors.append(
                FieldError(
                    spelled[short],
                    f"{short} {_show(value)} differs from {section}.{member} "
                    f"{_show(target[member])}; set one of them",
                )
            )
            continue
        if member not in target:
            spelled[join_path(section, member)] = spelled[short]
        target[member] = value
    return request, errors, {path: key for path, key in spelled.items() if path != key}


def respelled(error: FieldError, spelled: Mapping[str, str]) -> FieldError:
    """``error`` at the path the user wrote (a short key, a snake_case key)."""
    for path, key in spelled.items():
        if error.path == path or error.path.startswith(path + "."):
            return FieldError(key + error.path[len(path) :], error.message)
    return error


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


@functools.cache
def input_shape() -> Any:
    """botocore's shape of the ``CreateTrainingJob`` input (loaded once: ~0.5 s)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return model.operation_model(OPERATION).input_shape


@dataclass
class _Findings:
    complete: bool
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[FieldError] = field(default_factory=list)
    missing: list[FieldError] = field(default_factory=list)


def check_request(
    request: Mapping[str, Any], *, complete: bool, warnings: list[FieldError] | None = None
) -> list[FieldError]:
    """What botocore's model of ``CreateTrainingJob`` says of ``request``, each at its path.

    The errors are what botocore's own parameter check refuses (unknown
    fields, wrong types, missing required fields) plus the model's length and
    range bounds. ``complete`` checks the final request (required fields, no
    placeholders); otherwise a part of it: missing fields and
    ``{{placeholder}}`` values are not judged. A string that does not match
    the model's pattern goes to ``warnings`` (botocore does not check
    patterns; AWS does, and its refusal at submit says so): the seed's own
    ``RoleArn`` has a 9-digit account. Without botocore installed nothing is
    checked (the server may lack the ``aws`` extra that the agents have).
    """
    try:
        shape = input_shape()
    except ImportError:
        return []
    role = request.get("RoleArn")
    if is_role_name(role):
        request = {**request, "RoleArn": role_arn(role, STAND_IN_ACCOUNT, "aws")}
    findings = _Findings(complete)
    _check(request, shape, (), findings)
    if warnings is not None:
        warnings += findings.warnings
    return findings.missing + findings.errors


def _check(value: Any, shape: Any, path: tuple[Any, ...], found: _Findings) -> None:
    kind = shape.type_name
    if not found.complete and isinstance(value, str) and "{{" in value:
        return  # a template placeholder: typed once its variable is set
    meta = shape.metadata
    where = join_path(*path)
    if kind == "structure":
        if not isinstance(value, Mapping):
            found.errors.append(
                FieldError(where, f"must be a mapping ({shape.name}), got {_kind(value)}")
            )
            return
        members = shape.members
        for key, item in value.items():
            if key not in members:
                # At the top, launchplane's own keys and the short keys are near misses too.
                names = [*members, *(() if path else (*SHORT_KEYS, *OWN_KEYS))]
                hint = suggest(str(key), names) or ""
                found.errors.append(
                    FieldError(
                        join_path(*path, key),
                        f"is not a field of {shape.name}{hint}"
                        + ("" if hint else f"; its fields: {', '.join(members)}"),
                    )
                )
                continue
            _check(item, members[key], (*path, key), found)
        if found.complete:
            for key in shape.required_members:
                if key not in value:
                    found.errors.append(
                        FieldError(join_path(*path, key), "is required by SageMaker")
                    )
        return
    if kind == "list":
        if not isinstance(value, list):
            found.errors.append(FieldError(where, f"must be a list, got {_kind(value)}"))
            return
        _bounds(len(value), meta, where, "items", found.errors)
        for index, item in enumerate(value):
            _check(item, shape.member, (*path, index), found)
        return
    if kind == "map":
        if not isinstance(value, Mapping):
            found.errors.append(FieldError(where, f"must be a mapping, got {_kind(value)}"))
            return
        _bounds(len(value), meta, where, "entries", found.errors)
        for key, item in value.items():
            _check(key, shape.key, (*path, key), found)
            _check(item, shape.value, (*path, key), found)
        return
    if kind == "string":
        if not isinstance(value, str):
            found.errors.append(
                FieldError(where, f"must be a string, got {_kind(value)} {_show(value)}")
            )
            return
        _bounds(len(value), meta, where, "characters", found.errors)
        pattern = meta.get("pattern")
        checkable = found.complete and pattern and not _JAVA_ONLY.search(pattern)
        if checkable and re.fullmatch(pattern, value) is None:
            found.warnings.append(
                FieldError(where, f"{value!r} does not match SageMaker's {pattern}")
            )
        return
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            found.errors.append(
                FieldError(where, f"must be an integer, got {_kind(value)} {_show(value)}")
            )
            return
        _range(value, meta, where, found.errors)
        return
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            found.errors.append(
                FieldError(where, f"must be a number, got {_kind(value)} {_show(value)}")
            )
            return
        _range(value, meta, where, found.errors)
        return
    if kind == "boolean" and not isinstance(value, bool):
        found.errors.append(
            FieldError(where, f"must be true or false, got {_kind(value)} {_show(value)}")
        )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", int: "an integer", float: "a number"}.get(
        type(value),
        "a mapping"
        if isinstance(value, Mapping)
        else "a list"
        if isinstance(value, list)
        else type(value).__name__,
    )


def _bounds(
    size: int, meta: Mapping[str, Any], where: str, unit: str, out: list[FieldError]
) -> None:
    if "min" in meta and size < meta["min"]:
        out.append(FieldError(where, f"has {size} {unit}; SageMaker wants at least {meta['min']}"))
    if "max" in meta and size > meta["max"]:
        out.append(FieldError(where, f"has {size} {unit}; SageMaker allows at most {meta['max']}"))


def _range(value: float, meta: Mapping[str, Any], where: str, out: list[FieldError]) -> None:
    if "min" in meta and value < meta["min"]:
        out.append(FieldError(where, f"{value} is below SageMaker's minimum {meta['min']}"))
    if "max" in meta and value > meta["max"]:
        out.append(FieldError(where, f"{value} is above SageMaker's maximum {meta['max']}"))


def is_role_name(value: Any) -> bool:
    """``RoleArn: SageMakerRole``: a role name, as W&B accepts (not an ARN, not a placeholder)."""
    return isinstance(value, str) and not value.startswith("arn:") and "{{" not in value


def role_arn(name: str, account: str, partition: str) -> str:
    """W&B's reading of a role name: ``arn:<partition>:iam::<account>:role/<name>``."""
    return f"arn:{partition}:iam::{account}:role/{name.removeprefix('role/')}"


def partition(region: str | None) -> str:
    """The AWS partition of a region (``aws-cn`` for ``cn-north-1``, ``aws-us-gov``, ``aws``)."""
    if region and region.startswith("cn-"):
        return "aws-cn"
    if region and region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def training_job_name(run_id: str) -> str:
    """``lp-<run id>``, deterministic, within SageMaker's 63-character pattern.

    A restarted agent finds the job again by it (:meth:`SageMakerRunner.attach`).
    Characters SageMaker refuses become ``-``; a name that would be too long
    keeps its start and ends with a hash of the whole run id, so two runs never share one.
    """
    cleaned = _NAME_BAD.sub("-", run_id).strip("-") or "run"
    name = NAME_PREFIX + cleaned
    if len(name) > NAME_MAX:
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
        name = name[: NAME_MAX - len(digest) - 1].rstrip("-") + "-" + digest
    return name


def tags(labels: Mapping[str, str], given: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The request's ``Tags``: the user's (``resource_args.sagemaker.Tags``) and the run's labels.

    Label values are made tag-safe (characters SageMaker refuses become ``_``);
    a user tag of the same key as a run label gives way, so the run stays findable.
    """
    ours = {key: _TAG_BAD.sub("_", value)[:256] for key, value in labels.items()}
    kept = [dict(tag) for tag in given if tag.get("Key") not in ours]
    return [*kept, *({"Key": key, "Value": value} for key, value in ours.items())]


def hyperparameter_text(value: Any) -> str:
    """One hyperparameter as the string SageMaker requires: text as is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def container_command(job: ResolvedJob) -> tuple[list[str] | None, list[str] | None]:
    """``(ContainerEntrypoint, ContainerArguments)``: ``command`` or ``entry_point``, and ``args``.

    Neither: the image's own ENTRYPOINT runs, with ``args`` as its arguments.
    """
    args = list(job.args or []) or None
    if job.command:
        return list(job.command), args
    return entry_argv(job.entry_point), args


def input_channels(
    job: ResolvedJob, mounts: Sequence[Mount] = ()
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """One ``InputDataConfig`` channel per ``s3://`` input artifact and per store input the
    agent left in S3 (a ``Mount`` with a ``uri``); and the variables naming the latter's
    folders (``LAUNCHPLANE_ARTIFACT_<NAME>`` -> ``/opt/ml/input/data/<channel>``).

    A channel is the artifact's ``slot``, else the last part of its S3 prefix (a
    store input: of its target); SageMaker mounts it at ``/opt/ml/input/data/<channel>``.
    """
    channels: list[dict[str, Any]] = []
    env: dict[str, str] = {}
    seen: set[str] = set()

    def add(uri: str, base: str) -> str:
        name = _CHANNEL_BAD.sub("-", base).strip("-")[:60] or "input"
        channel, number = name, 2
        while channel in seen:
            channel, number = f"{name}-{number}", number + 1
        seen.add(channel)
        channels.append(
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        )
        return channel

    for artifact in job.input_artifacts:
        uri = artifact.name
        if uri.startswith("s3://"):
            add(uri, artifact.slot or uri.rstrip("/").rsplit("/", 1)[-1])
    for mount in mounts:
        if mount.uri is not None and mount.uri.startswith("s3://"):
            channel = add(mount.uri, mount.target.rstrip("/").rsplit("/", 1)[-1])
            if mount.env:
                env[mount.env] = f"{INPUT_DIR}/{channel}"
    return channels, env


def secret_references(
    job: ResolvedJob, native: Mapping[str, Any]
) -> tuple[dict[str, str], list[str]]:
    """The environment entries that point the job at its ``aws-sm:`` secrets, and the rest.

    ``DB_PASSWORD: aws-sm:prod/db#password`` becomes ``DB_PASSWORD_SECRET_ID=prod/db`` and
    ``DB_PASSWORD_SECRET_KEY=password``: the job's role reads the secret itself, and no
    value is in the request. A provider's native reference (``{"SecretId", "JsonKey",
    "VersionStage"}``, the ``aws-sm`` provider's for this runner) is used when it gave one;
    its stage becomes ``DB_PASSWORD_SECRET_VERSION_STAGE``. The second item names the
    secrets that need their values.
    """
    env: dict[str, str] = {}
    valued: list[str] = []
    for name, text in sorted(job.secrets.items()):
        ref = native.get(name)
        stage = None
        if isinstance(ref, Mapping) and ref.get("SecretId"):
            secret_id, key, stage = (
                str(ref["SecretId"]),
                ref.get("JsonKey"),
                ref.get("VersionStage"),
            )
        elif isinstance(ref, str) and ref:
            secret_id, key = ref, None
        else:
            try:
                parsed = parse_ref(text)
            except SecretRefError:
                valued.append(name)
                continue
            if parsed.scheme != SECRET_SCHEME:
                valued.append(name)
                continue
            secret_id, key = parsed.path, parsed.key
        env[name + SECRET_ID_SUFFIX] = secret_id
        if key:
            env[name + SECRET_KEY_SUFFIX] = str(key)
        if stage:
            env[name + SECRET_STAGE_SUFFIX] = str(stage)
    return env, valued


def secrets_refusal(names: Collection[str]) -> str:
    """Why secret values are not put in a SageMaker job, and the two ways out."""
    listed = ", ".join(sorted(names))
    return (
        f"secrets {listed} would be put in the training job's Environment, which anyone "
        "allowed sagemaker:DescribeTrainingJob can read; store them in AWS Secrets Manager "
        "and reference them as aws-sm:NAME[#KEY] (the job receives <ENV>_SECRET_ID for its "
        "role to read), or let an admin opt in with "
        "resource_args.sagemaker.secrets_in_environment: true in the queue config"
    )


def build_request(
    job: ResolvedJob,
    args: SageMakerArgs,
    *,
    image: str | None,
    name: str,
    labels: Mapping[str, str],
    env: Mapping[str, str],
    mounts: Sequence[Mount] = (),
) -> dict[str, Any]:
    """The final ``CreateTrainingJob`` request (not yet checked: see :func:`check_request`).

    ``env`` is the job's whole environment as it should reach the container
    (the caller has decided about secrets). The builder's ``image`` wins over an
    ``AlgorithmSpecification.TrainingImage`` of the config, which is used only
    when the builder gave none.
    """
    request = args.request()
    request["TrainingJobName"] = name
    spec = dict(request.get("AlgorithmSpecification") or {})
    if image:
        spec["TrainingImage"] = image
    spec.setdefault("TrainingInputMode", "File")
    entrypoint, arguments = container_command(job)
    if entrypoint:
        spec["ContainerEntrypoint"] = entrypoint
    if arguments:
        spec["ContainerArguments"] = arguments
    request["AlgorithmSpecification"] = spec
    if job.hyperparameters:
        request["HyperParameters"] = {
            **{k: hyperparameter_text(v) for k, v in job.hyperparameters.items()},
            **(request.get("HyperParameters") or {}),
        }
    channels, channel_env = input_channels(job, mounts)
    environment = {**env, **channel_env, **(request.get("Environment") or {})}
    if environment:
        request["Environment"] = environment
    if channels:
        request["InputDataConfig"] = [*(request.get("InputDataConfig") or []), *channels]
    resources = request.get("ResourceConfig")
    if isinstance(resources, dict) and "InstanceType" in resources:
        resources.setdefault("InstanceCount", 1)
    request["Tags"] = tags(labels, request.get("Tags") or [])
    return request


def launch_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``ctx.env`` as the container needs it: the output directory SageMaker uploads.

    SageMaker takes 512 characters per value. ``LAUNCHPLANE_HYPERPARAMETERS`` is
    left out when longer (the job reads ``/opt/ml/input/config/hyperparameters.json``,
    from ``HyperParameters``, instead); a longer ``WANDB_LAUNCH_FILE_OVERRIDES``
    (W&B's ``overrides.files``) is split into ``_0..n`` chunks, as W&B's agent
    splits it and its SDK reads it back.
    """
    result = {**env, "LAUNCHPLANE_OUTPUT_DIR": OUTPUT_DIR}
    if len(result.get("LAUNCHPLANE_HYPERPARAMETERS", "")) > ENV_VALUE_MAX:
        del result["LAUNCHPLANE_HYPERPARAMETERS"]
    if (overrides := result.pop(FILE_OVERRIDES_ENV, None)) is not None:
        result.update(chunked_variables(FILE_OVERRIDES_ENV, overrides, ENV_VALUE_MAX))
    return result


def request_errors(
    request: Mapping[str, Any], warnings: list[FieldError] | None = None
) -> ConfigError | None:
    """The final request's problems as one ConfigError under ``resource_args.sagemaker``."""
    found: list[FieldError] = []
    errors = check_request(request, complete=True, warnings=found)
    if warnings is not None:
        warnings += [_under_runner(e) for e in found]
    if not errors:
        return None
    return ConfigError([_under_runner(e) for e in errors])


def _under_runner(error: FieldError) -> FieldError:
    return FieldError(join_path("resource_args", RUNNER, error.path), error.message)

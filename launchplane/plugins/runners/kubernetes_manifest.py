"""What the ``kubernetes`` runner creates for a job: pure functions, no I/O.

``resource_args.kubernetes`` takes two forms, and both at once:

Short form (the seed document's)
    ``namespace``, ``requests``, ``limits``, ``node_selector``, ``tolerations``,
    ``affinity``, ``env_from`` (``secret_ref`` / ``config_map_ref``),
    ``volumes`` + ``volume_mounts``, ``service_account``, ``priority_class``,
    ``image_pull_secrets``, ``labels``, ``annotations``,
    ``active_deadline_seconds``, ``backoff_limit``,
    ``ttl_seconds_after_finished``. Keys are snake_case or Kubernetes'
    camelCase (``node_selector`` or ``nodeSelector``), also inside
    ``volumes``/``volume_mounts``/``affinity`` (``persistent_volume_claim:
    {claim_name: data}``). They become one ``batch/v1`` Job.

W&B's form
    A whole manifest: ``apiVersion``/``kind``/``metadata``/``spec``. A
    ``batch/v1`` Job (the default kind) is created through the batch API;
    any other kind of a custom resource group (``kubeflow.org/v1``
    ``PyTorchJob``, ``batch.volcano.sh/v1alpha1`` ``Job``) through the
    custom-objects API (plural ``<kind>s`` unless ``plural`` says otherwise).
    The user's fields are kept; the short-form keys, when also given, are
    applied on top (so a job can ask for more GPUs on a queue whose config is
    a W&B manifest).

What launchplane adds, as W&B does
    In every pod template (the Job's ``spec.template``; every mapping with
    ``spec.containers`` in a custom kind, e.g. each PyTorchJob replica) the
    *first* container receives the job's image (the builder's, pinned by
    digest), its command (``command``/``entry_point`` + ``args`` as the
    container's ``command``; ``args`` alone as the container's ``args``, for
    the image's own ENTRYPOINT) and its environment; other containers
    (sidecars) are left as written. Environment: plain values as
    ``env[].value``; secret values as ``valueFrom.secretKeyRef`` into the
    run's own Secret ``<name>-secrets`` (key = the variable's name; the
    runner creates it, owned by the workload, so the cluster deletes it with
    the workload), never literally; ``k8s:`` secrets as the ``secretKeyRef``
    their provider gave, so their value never passes the agent.
    ``metadata.name`` is the run's deterministic name (:func:`workload_name`;
    a user's ``name``/``generateName`` is replaced: each attempt needs its
    own, and a restarted agent finds it by it); labels that identify the run
    go on the workload and on every pod template (values made label-safe).
    A Job gets ``backoffLimit: 0`` and pods ``restartPolicy: Never`` unless
    set: retries are the queue's ``retry:`` policy, not the cluster's.

Input artifacts
    :func:`input_artifacts`: an input of an ``s3`` store is an ``emptyDir``
    that an init container of ``artifact_fetcher_image`` fills (``launchplane
    artifact fetch``, digest-checked); one of a ``file`` store is the volume
    ``artifact_volumes`` maps its root to, ``subPath`` the version's folder.
    The job's container mounts each read-only at its target. Both options are
    queue-only.

Privileged settings
    ``hostPath`` volumes (also in ``artifact_volumes``), ``hostNetwork``/``hostPID``/
    ``hostIPC``, ``hostPort``, privileged containers, added capabilities and a pod
    service account in a W&B manifest reach the node or the cluster; like W&B (which refuses them
    outright) they are refused unless the queue config sets
    ``allow_privileged: true`` (a field only a queue may set, like
    ``service_account``).

Validation
    pydantic checks the short form at submit (unknown key, bad quantity, with
    its path). The rendered manifest is checked against the official OpenAPI
    schema of Kubernetes :data:`SCHEMA_VERSION` (``kubernetes-validate``,
    strict: unknown fields are errors) - at submit for a W&B manifest and for
    the free-form short-form fields (when the package is installed where the
    job is submitted), in ``plan``, and before anything is created. For a
    custom kind its ``metadata`` and each pod template are checked against the
    schema, plus the shape of the kinds launchplane knows (PyTorchJob,
    Volcano Job).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Annotated, Any
from urllib.parse import unquote, urlparse

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, model_validator

from launchplane.core.errors import ConfigError, FieldError, join_path
from launchplane.core.interfaces import (
    ADMIN_ONLY,
    Image,
    MissingExtraError,
    Mount,
    PluginError,
    SecretRefError,
    parse_ref,
)
from launchplane.core.launch import LABEL_PREFIX, job_argv, preview_labels
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.runners.docker import mount_target

SCHEMA_VERSION = "1.30"
"""The Kubernetes version whose OpenAPI schema manifests are checked against (runner option
``schema_version``)."""
RUNNER = "kubernetes"
NAME_PREFIX = "lp-"
SECRET_SUFFIX = "-secrets"
CONTAINER_NAME = "job"
"""The name of the job's container when the manifest does not name it."""
PREVIEW_NAME = f"{NAME_PREFIX}<job_id>-<attempt>"
"""What ``plan`` shows as the workload's name: the run id is known only at launch."""
JOB_API_VERSION, JOB_KIND = "batch/v1", "Job"
MAX_NAME = 63
"""A Job's name is a pod label value (``job-name``): at most 63 characters."""
_MESSAGE_LIMIT = 240
_QUANTITY = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")
_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
_NATIVE_RESOURCES = ("cpu", "memory", "ephemeral-storage")
"""Resources that may be requested without a limit; any other (``nvidia.com/gpu``) needs one."""
_USER_MAPS = frozenset(
    {"matchLabels", "nodeSelector", "labels", "annotations", "volumeAttributes", "parameters"}
)
"""Mappings whose keys are the user's data, not field names: never camelCased."""


# --- the resource_args model ------------------------------------------------------------


def _quantity(value: str | int | float) -> str:
    text = str(value).strip()
    if isinstance(value, bool) or not _QUANTITY.fullmatch(text):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 4, 16Gi, 1.5)")
    return text


Quantity = Annotated[str | int | float, AfterValidator(_quantity)]

_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def _label_text(value: str) -> str:
    # A macro (${run_id}) is expanded at launch; render makes the result label-safe.
    if "${" not in value and not _LABEL_VALUE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a label value (at most 63 letters, digits, '-', '_' or '.', "
            "beginning and ending with a letter or digit)"
        )
    return value


LabelValue = Annotated[str, AfterValidator(_label_text)]


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_keys(value: Any, *, parent: str = "") -> Any:
    """``value`` with snake_case field names in Kubernetes' camelCase, user-data maps untouched."""
    if isinstance(value, list):
        return [camel_keys(item, parent=parent) for item in value]
    if isinstance(value, dict):
        if parent in _USER_MAPS:
            return dict(value)
        out = {}
        for key, item in value.items():
            name = _camel(key) if isinstance(key, str) and "_" in key else key
            out[name] = camel_keys(item, parent=name)
        return out
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SourceRef(_Model):
    """The Secret or ConfigMap of an ``env_from`` entry."""

    name: str
    optional: bool | None = None


class EnvFrom(_Model):
    """One ``env_from`` entry: every key of a Secret or ConfigMap as a variable."""

    secret_ref: SourceRef | None = Field(
        default=None, validation_alias=AliasChoices("secret_ref", "secretRef")
    )
    config_map_ref: SourceRef | None = Field(
        default=None, validation_alias=AliasChoices("config_map_ref", "configMapRef")
    )
    prefix: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvFrom:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError("give exactly one of secret_ref or config_map_ref")
        return self

    def manifest(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"prefix": self.prefix} if self.prefix else {}
        if self.secret_ref is not None:
            entry["secretRef"] = self.secret_ref.model_dump(exclude_none=True)
        if self.config_map_ref is not None:
            entry["configMapRef"] = self.config_map_ref.model_dump(exclude_none=True)
        return entry


class Toleration(_Model):
    """A pod toleration; snake_case or camelCase keys."""

    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = Field(
        default=None, validation_alias=AliasChoices("toleration_seconds", "tolerationSeconds")
    )

    def manifest(self) -> dict[str, Any]:
        entry = self.model_dump(exclude_none=True, exclude={"toleration_seconds"})
        if self.toleration_seconds is not None:
            entry["tolerationSeconds"] = self.toleration_seconds
        return entry


def _alias(*names: str) -> Any:
    return AliasChoices(*names)


class KubernetesArgs(_Model):
    """``resource_args.kubernetes``: the short form, W&B's whole manifest, or both."""

    api_version: str | None = Field(
        default=None,
        validation_alias=_alias("apiVersion", "api_version"),
        description="W&B form: batch/v1 (default) or a custom resource's group/version",
    )
    kind: str | None = Field(default=None, description="W&B form: Job (default) or a custom kind")
    metadata: dict[str, Any] | None = Field(default=None, description="W&B form: the metadata")
    spec: dict[str, Any] | None = Field(default=None, description="W&B form: the whole spec")
    plural: str | None = Field(
        default=None, description="A custom kind's plural (default: the kind in lower case + s)"
    )
    namespace: str | None = Field(default=None, description="Default: the runner's namespace")
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)
    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict, validation_alias=_alias("node_selector", "nodeSelector")
    )
    tolerations: list[Toleration] = Field(default_factory=list)
    affinity: dict[str, Any] | None = None
    env_from: list[EnvFrom] = Field(
        default_factory=list, validation_alias=_alias("env_from", "envFrom")
    )
    volumes: list[dict[str, Any]] = Field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = Field(
        default_factory=list, validation_alias=_alias("volume_mounts", "volumeMounts")
    )
    service_account: str | None = Field(
        default=None,
        validation_alias=_alias("service_account", "serviceAccountName", "service_account_name"),
        description="The pods' service account: what they may do in the cluster",
        json_schema_extra=ADMIN_ONLY,
    )
    priority_class: str | None = Field(
        default=None,
        validation_alias=_alias("priority_class", "priorityClassName", "priority_class_name"),
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list, validation_alias=_alias("image_pull_secrets", "imagePullSecrets")
    )
    labels: dict[str, LabelValue] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        validation_alias=_alias("active_deadline_seconds", "activeDeadlineSeconds"),
    )
    backoff_limit: int | None = Field(
        default=None, ge=0, validation_alias=_alias("backoff_limit", "backoffLimit")
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        validation_alias=_alias("ttl_seconds_after_finished", "ttlSecondsAfterFinished"),
    )
    allow_privileged: bool = Field(
        default=False,
        description="Permit hostPath volumes, host namespaces, hostPort, privileged containers",
        json_schema_extra=ADMIN_ONLY,
    )
    config_file: str | None = Field(
        default=None,
        validation_alias=_alias("configFile", "config_file"),
        description="W&B's configFile: the agent's kubeconfig file for this queue's jobs",
        json_schema_extra=ADMIN_ONLY,
    )
    context: str | None = Field(
        default=None,
        description="W&B's context: the kubeconfig context (cluster) for this queue's jobs",
        json_schema_extra=ADMIN_ONLY,
    )

    artifact_fetcher_image: str | None = Field(
        default=None,
        validation_alias=_alias("artifact_fetcher_image", "artifactFetcherImage"),
        description="An image with launchplane[aws] (the agent's): each input artifact of an "
        "s3 store is fetched by an init container of it and verified against its pinned digest",
        json_schema_extra=ADMIN_ONLY,
    )
    artifact_volumes: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        validation_alias=_alias("artifact_volumes", "artifactVolumes"),
        description="A file store's root on the agent's host -> the pod volume that holds the "
        "same files (persistentVolumeClaim, nfs, ...): its inputs are mounted read-only from it",
        json_schema_extra=ADMIN_ONLY,
    )

    @model_validator(mode="before")
    @classmethod
    def _read_as_kubernetes_does(cls, value: Any) -> Any:
        if isinstance(value, dict):
            _refuse_non_fields(value)
            value = _stringified_metadata(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _pull_secret_names(cls, value: Any) -> Any:
        # Kubernetes writes [{name: regcred}]; a list of names is the short form.
        if isinstance(value, dict):
            for key in ("image_pull_secrets", "imagePullSecrets"):
                items = value.get(key)
                if isinstance(items, list):
                    value = {
                        **value,
                        key: [i.get("name") if isinstance(i, dict) else i for i in items],
                    }
        return value

    @model_validator(mode="after")
    def _checked(self) -> KubernetesArgs:
        errors = [
            FieldError(
                join_path("labels", key),
                f"labels starting with {LABEL_PREFIX!r} are launchplane's",
            )
            for key in self.labels
            if key.startswith(LABEL_PREFIX)
        ]
        errors += [
            FieldError(join_path("labels", key), "not a label key (e.g. team or example.com/team)")
            for key in self.labels
            if not key.startswith(LABEL_PREFIX) and not _LABEL_KEY.fullmatch(key)
        ]
        if self.is_manifest and not self.is_job:
            errors += [
                FieldError(
                    name,
                    f"applies to a batch/v1 Job, not to {self.kind_}; set the kind's own field "
                    "in spec (a PyTorchJob's spec.runPolicy)",
                )
                for name in (
                    "active_deadline_seconds",
                    "backoff_limit",
                    "ttl_seconds_after_finished",
                )
                if getattr(self, name) is not None
            ]
            if not _custom_group(self.api_version_):
                scheduled = (
                    "; a CronJob starts Jobs of its own that no run watches: schedule the "
                    "submits instead (e.g. cron running launchplane submit)"
                    if self.kind_ == "CronJob"
                    else ""
                )
                errors.append(
                    FieldError(
                        "apiVersion",
                        f"{self.api_version_} {self.kind_}: the runner creates a batch/v1 Job "
                        "or a custom resource (apiVersion <group with a dot>/<version>, e.g. "
                        f"kubeflow.org/v1){scheduled}",
                    )
                )
        errors += [
            FieldError(
                join_path("artifact_volumes", root),
                "a file store's root is an absolute path on the agent's host (its "
                "artifact_store.options.root)",
            )
            for root in self.artifact_volumes
            if not PurePosixPath(root).is_absolute()
        ]
        if not self.allow_privileged:
            errors += _privileged_errors(self)
        if errors:
            raise ConfigError(errors)
        if self.is_manifest or self.volumes or self.volume_mounts or self.affinity:
            _schema_check_at_submit(self)
        return self

    @property
    def is_manifest(self) -> bool:
        """True for W&B's form (a manifest of its own)."""
        return any(v is not None for v in (self.api_version, self.kind, self.metadata, self.spec))

    @property
    def api_version_(self) -> str:
        return self.api_version or JOB_API_VERSION

    @property
    def kind_(self) -> str:
        return self.kind or JOB_KIND

    @property
    def is_job(self) -> bool:
        return (self.api_version_, self.kind_) == (JOB_API_VERSION, JOB_KIND)


_NOT_FIELDS = {
    "jobName": "launchplane names the workload after the run (lp-<job id>-<attempt>); to set "
    "the W&B run's name use name:, for a label metadata.labels",
    "gpus": "ask for GPUs with limits: {nvidia.com/gpu: N} (or the container's "
    "resources.limits in a manifest)",
    "image": "the job's image is docker.image (or the queue's builder); the runner puts it in "
    "the first container",
}
"""Top-level keys found in W&B documents that no Kubernetes object has: W&B merges them into
the Job and the API server drops them; launchplane says which field does the job instead."""


def _refuse_non_fields(body: Mapping[str, Any]) -> None:
    errors = [
        FieldError(key, f"not a Kubernetes field: {fix}")
        for key, fix in _NOT_FIELDS.items()
        if key in body
    ]
    for key in ("labels", "annotations"):
        if isinstance(body.get(key), list):
            errors.append(
                FieldError(
                    key,
                    f"{key} is a mapping {{name: value}} (e.g. {key}: {{team: vision}}), "
                    "not a list of {key, value} entries",
                )
            )
    if errors:
        raise ConfigError(errors)


def _stringified_metadata(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with number and boolean label and annotation values as the strings they spell.

    Kubernetes takes only strings there, and a typed template variable (``{{threshold}}``,
    a number) or YAML (``tier: 2``) gives a number: ``2.5`` becomes ``"2.5"``, ``true``
    becomes ``"true"``, so the value means what its author wrote."""

    def fixed(node: Any) -> Any:
        if isinstance(node, list):
            return [fixed(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, item in node.items():
            if key in ("labels", "annotations") and isinstance(item, dict):
                item = {name: _scalar_text(v) for name, v in item.items()}
            out[key] = fixed(item)
        return out

    return fixed(body)


def _scalar_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _custom_group(api_version: str) -> bool:
    """True for a custom resource's group (a domain name), not a built-in one.

    Built-in groups have no dot (``batch``, ``apps``) or end in ``.k8s.io``
    (``rbac.authorization.k8s.io``); a custom resource's group must hold a dot."""
    group, slash, version = api_version.partition("/")
    return bool(slash and version and "." in group and not group.endswith(".k8s.io"))


def kubernetes_args(job: ResolvedJob) -> KubernetesArgs:
    """The job's ``resource_args.kubernetes``, validated (the server already accepted it)."""
    try:
        return KubernetesArgs.model_validate(job.resource_args.get(RUNNER) or {})
    except ConfigError as exc:
        raise PluginError(
            "; ".join(f"resource_args.kubernetes.{e.path}: {e.message}" for e in exc.errors)
        ) from None
    except ValueError as exc:
        raise PluginError(f"resource_args.kubernetes: {exc}") from None


# --- privileged settings ----------------------------------------------------------------

_HOST_KEYS = ("hostNetwork", "hostPID", "hostIPC")
_FIX = "only a queue config may allow it (resource_args.kubernetes.allow_privileged: true)"


def _privileged_errors(args: KubernetesArgs) -> list[FieldError]:
    errors = [
        FieldError(
            join_path("volumes", i, "host_path"), f"a hostPath volume reaches the node; {_FIX}"
        )
        for i, volume in enumerate(args.volumes)
        if "hostPath" in camel_keys(volume)
    ]
    errors += [
        FieldError(
            join_path("artifact_volumes", root, "host_path"),
            f"a hostPath volume reaches the node; {_FIX}",
        )
        for root, volume in args.artifact_volumes.items()
        if "hostPath" in camel_keys(volume)
    ]
    for path, node in _walk({"metadata": args.metadata, "spec": args.spec}):
        if not isinstance(node, dict):
            continue
        found: list[tuple[str, str]] = [
            (key, "shares the node's namespace") for key in _HOST_KEYS if node.get(key) is True
        ]
        if "hostPath" in node:
            found.append(("hostPath", "mounts a directory of the node"))
        if node.get("hostPort"):
            found.append(("hostPort", "binds a port of the node"))
        if node.get("privileged") is True:
            found.append(("privileged", "runs a privileged container"))
        if isinstance(node.get("capabilities"), dict) and node["capabilities"].get("add"):
            found.append(("capabilities", "adds Linux capabilities"))
        for key in ("serviceAccountName", "serviceAccount"):
            if node.get(key) and "containers" in node:
                found.append((key, "chooses the pods' cluster identity"))
        errors += [FieldError(join_path(*path, key), f"{what}; {_FIX}") for key, what in found]
    return errors


def _walk(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, index))


# --- names and labels -------------------------------------------------------------------


def _digest(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def workload_name(run_id: str) -> str:
    """``lp-<run id>`` as a DNS-1123 label of at most 63 characters; the same for the same id.

    Lower-cased, other characters as ``-``; cut and ended with a hash of the
    run id when too long (or when cleaning changed it), so two run ids never
    share a name.
    """
    clean = _NOT_DNS.sub("-", run_id.lower()).strip("-")
    name = f"{NAME_PREFIX}{clean}"
    if clean != run_id or len(name) > MAX_NAME:
        tail = _digest(run_id)
        name = f"{name[: MAX_NAME - len(tail) - 1].rstrip('-')}-{tail}"
    return name


def secret_name(name: str) -> str:
    """The per-run Secret of workload ``name``."""
    return f"{name}{SECRET_SUFFIX}"


def label_value(value: str) -> str:
    """``value`` as a label value (63 characters of ``[A-Za-z0-9_.-]``, alphanumeric ends).

    Unchanged when it already is one; else cleaned, and ended with a hash of
    the original so distinct values stay distinct. ``attach`` selects by the
    same function of the run id.
    """
    if _LABEL_VALUE.fullmatch(value):
        return value
    tail = _digest(value)
    clean = _NOT_LABEL.sub("-", value)[: MAX_NAME - len(tail) - 1]
    clean = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", clean)
    return f"{clean}-{tail}" if clean else tail


def safe_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` with label-safe values; keys that cannot be label keys are dropped.

    (The identity labels' keys are valid; a plugin's odd key would make the
    API refuse the whole workload.)
    """
    return {k: label_value(str(v)) for k, v in labels.items() if _LABEL_KEY.fullmatch(k)}


# --- input artifacts ----------------------------------------------------------------------

FETCH_PREFIX = "lp-fetch-"
"""The names of the init containers that fetch input artifacts (``lp-fetch-<index>``)."""
FETCH_DIR = "/launchplane-input"
"""Where a fetcher init container sees its ``emptyDir`` (the job's container sees the target)."""
PENDING = "<pinned at launch>"
"""What ``plan`` shows for what only the artifacts stage knows (a version, its digest)."""
_FETCHER_FIX = (
    "set resource_args.kubernetes.artifact_fetcher_image in the queue config (an image with "
    "launchplane[aws], e.g. the agent's own), or move the data to a file store mapped with "
    "artifact_volumes"
)
_VOLUMES_FIX = (
    "map the store's root to a pod volume in the queue config: resource_args.kubernetes."
    "artifact_volumes: {<the store's root>: {persistentVolumeClaim: {claimName: artifacts}}}"
)


@dataclass(frozen=True)
class Inputs:
    """What a pod needs to show the job its input artifacts (see :func:`input_artifacts`)."""

    volumes: list[dict[str, Any]] = field(default_factory=list)
    init_containers: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    """Of the job's container, every one ``readOnly``."""
    env: dict[str, str] = field(default_factory=dict)
    """``LAUNCHPLANE_ARTIFACT_<NAME>`` -> the path in the job's container."""


def input_artifacts(
    mounts: Sequence[Mount],
    args: KubernetesArgs,
    *,
    fetch_flags: Sequence[str] = (),
    what: Callable[[Mount], str] = lambda mount: mount.target,
) -> Inputs:
    """The volumes, init containers and read-only mounts of the job's input artifacts.

    A mount the agent gave as an ``s3://`` version URI gets an ``emptyDir``
    filled by an init container of ``args.artifact_fetcher_image`` running
    ``launchplane artifact fetch URI DIR --digest D`` (``fetch_flags``: the
    store's ``--region``/``--endpoint-url``; credentials are the pod's). A
    ``file://`` version URI under a root that ``args.artifact_volumes`` maps is
    that volume with ``subPath`` = the version's folder below the root. Anything
    else (a download on the agent's host, an unmapped root) is a
    :class:`PluginError` that names the option to set; ``what(mount)`` names the
    input in it.
    """
    inputs = Inputs()
    roots: dict[str, str] = {}  # mapped root -> its volume's name
    for index, mount in enumerate(mounts):
        target = mount_target(mount)  # a relative one under /launchplane, as in docker's
        scheme = (mount.uri or "").partition("://")[0]
        if scheme == "s3":
            if not args.artifact_fetcher_image:
                raise PluginError(
                    f"input artifact {what(mount)} is in an s3 store, which a pod reads "
                    f"through an init container: {_FETCHER_FIX}"
                )
            volume = f"lp-input-{index}"
            inputs.volumes.append({"name": volume, "emptyDir": {}})
            argv = ["launchplane", "artifact", "fetch", str(mount.uri), FETCH_DIR]
            inputs.init_containers.append(
                {
                    "name": f"{FETCH_PREFIX}{index}",
                    "image": args.artifact_fetcher_image,
                    "command": [*argv, "--digest", mount.digest or PENDING, *fetch_flags],
                    "volumeMounts": [{"name": volume, "mountPath": FETCH_DIR}],
                }
            )
            inputs.volume_mounts.append({"name": volume, "mountPath": target, "readOnly": True})
        elif scheme == "file":
            path = PurePosixPath(unquote(urlparse(str(mount.uri)).path))
            root = _mapped_root(path, args.artifact_volumes)
            if root is None:
                raise PluginError(
                    f"input artifact {what(mount)} is in the file store at {path}, which no "
                    f"pod volume holds: {_VOLUMES_FIX}"
                )
            if root not in roots:
                roots[root] = f"lp-artifacts-{len(roots)}"
                inputs.volumes.append(
                    {"name": roots[root], **camel_keys(args.artifact_volumes[root])}
                )
            entry: dict[str, Any] = {"name": roots[root], "mountPath": target, "readOnly": True}
            if path != PurePosixPath(root):
                entry["subPath"] = str(path.relative_to(root))
            inputs.volume_mounts.append(entry)
        else:
            raise PluginError(
                f"input artifact {what(mount)}: runner '{RUNNER}' cannot mount the agent's "
                "download in a pod; it reads inputs of an s3 store (artifact_fetcher_image) or "
                "of a file store mapped with artifact_volumes: give the queue one of those"
            )
        if mount.env:
            inputs.env[mount.env] = target
    return inputs


def _mapped_root(path: PurePosixPath, volumes: Mapping[str, Any]) -> str | None:
    """The longest root of ``volumes`` that holds ``path``."""
    held = [root for root in volumes if path.is_relative_to(PurePosixPath(root))]
    return max(held, key=len, default=None)


def _add_inputs(pod: dict[str, Any], first: dict[str, Any], inputs: Inputs) -> None:
    """``inputs`` in one pod template (a copy each: a PyTorchJob has several)."""
    if inputs.volumes:
        pod["volumes"] = [*(pod.get("volumes") or []), *copy.deepcopy(inputs.volumes)]
    if inputs.init_containers:
        added = copy.deepcopy(inputs.init_containers)
        pod["initContainers"] = [*(pod.get("initContainers") or []), *added]
    if inputs.volume_mounts:
        mounts = copy.deepcopy(inputs.volume_mounts)
        first["volumeMounts"] = [*(first.get("volumeMounts") or []), *mounts]


# --- the workload -----------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """What the runner creates for one run: the workload, and the run's Secret if any."""

    group: str
    """API group: ``batch`` for a Job, ``kubeflow.org`` for a PyTorchJob."""
    version: str
    kind: str
    plural: str
    """For the custom-objects API (``jobs``, ``pytorchjobs``)."""
    namespace: str
    name: str
    body: dict[str, Any]
    """The manifest, schema-valid; never holds a secret value."""
    secret: dict[str, Any] | None
    """The run's ``v1`` Secret (``stringData`` = the non-native secret values), or None when
    the job has none; the runner adds ``ownerReferences`` to the workload."""
    container_paths: list[tuple[str | int, ...]]
    """Where in ``body`` the job's container sits, one per pod template (logs, status)."""

    @property
    def is_job(self) -> bool:
        return (self.group, self.version, self.kind) == ("batch", "v1", JOB_KIND)


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, slash, version = api_version.rpartition("/")
    return (group, version) if slash else ("", api_version)


def env_entries(
    env: Mapping[str, str | None],
    *,
    secret_names: Collection[str],
    native_secrets: Mapping[str, Any],
    secret: str,
    namespace: str,
) -> list[dict[str, Any]]:
    """The container's ``env``: values, references into the run's Secret, native references.

    ``env`` values of ``secret_names`` never appear; a value of None (``plan``:
    passed through from the agent) is an entry with no value.
    """
    entries: list[dict[str, Any]] = []
    for name, value in env.items():
        if name in native_secrets:
            continue
        if name in secret_names:
            entries.append(
                {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": name}}}
            )
        else:
            entries.append({"name": name} if value is None else {"name": name, "value": value})
    for name, native in native_secrets.items():
        entries.append({"name": name, "valueFrom": _native_value_from(name, native, namespace)})
    return entries


def _native_value_from(name: str, native: Any, namespace: str) -> dict[str, Any]:
    """A provider's native reference as ``valueFrom``; a Secret of another namespace is refused."""
    if not isinstance(native, Mapping):
        raise PluginError(f"secret {name}: its provider gave no Kubernetes reference")
    native = dict(native)
    where = native.pop("namespace", None)
    if where is not None and where != namespace:
        raise PluginError(
            f"secret {name}: Secret {native.get('secretKeyRef', {}).get('name')} is in "
            f"namespace {where} but the job runs in {namespace}; a pod reads Secrets of its "
            "own namespace only (copy the Secret, or run the job there)"
        )
    return native


def _merge_env(container: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    ours = {entry["name"] for entry in entries}
    kept = [
        e for e in container.get("env") or [] if not (isinstance(e, dict) and e.get("name") in ours)
    ]
    container["env"] = [*kept, *entries]


def _pod_templates(body: dict[str, Any], *, is_job: bool) -> list[tuple[Any, ...]]:
    """Paths of the pod templates: the Job's, or every ``{spec: {containers: [...]}}`` mapping."""
    if is_job:
        spec = body.setdefault("spec", {})
        template = spec.setdefault("template", {})
        template.setdefault("spec", {}).setdefault("containers", [{}])
        return [("spec", "template")]
    return [
        path
        for path, node in _walk(body.get("spec"), ("spec",))
        if isinstance(node, dict)
        and isinstance(node.get("spec"), dict)
        and isinstance(node["spec"].get("containers"), list)
    ]


def _at(body: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        body = body[part]
    return body


def _resources(args: KubernetesArgs, container: dict[str, Any]) -> None:
    resources = container.setdefault("resources", {})
    requests = {**resources.get("requests", {}), **{k: str(v) for k, v in args.requests.items()}}
    limits = {**resources.get("limits", {}), **{k: str(v) for k, v in args.limits.items()}}
    # An extended resource (a GPU) cannot be overcommitted: its limit must equal its request,
    # so a short-form request without a limit of its own sets the limit too.
    for key, value in requests.items():
        if key not in _NATIVE_RESOURCES and not key.startswith("hugepages-"):
            if key in args.requests and key not in args.limits:
                limits[key] = value
            else:
                limits.setdefault(key, value)
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    if not resources:
        del container["resources"]


def _build(
    args: KubernetesArgs,
    job: ResolvedJob,
    image_ref: str | None,
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    env: list[dict[str, Any]],
    inputs: Inputs | None = None,
) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """The manifest and the paths of the job's containers."""
    body: dict[str, Any] = {"apiVersion": args.api_version_, "kind": args.kind_}
    body["metadata"] = copy.deepcopy(args.metadata or {})
    body["spec"] = copy.deepcopy(args.spec or {})
    meta = body["metadata"]
    meta.pop("generateName", None)
    meta.update(name=name, namespace=namespace)
    user_labels = safe_labels(args.labels)
    meta["labels"] = {**(meta.get("labels") or {}), **user_labels, **labels}
    if args.annotations:
        meta["annotations"] = {**(meta.get("annotations") or {}), **args.annotations}
    templates = _pod_templates(body, is_job=args.is_job)
    if not templates:
        raise PluginError(
            f"resource_args.kubernetes: the {args.kind_} manifest has no pod template "
            "(a mapping with spec.containers) to run the job's image in"
        )
    argv = job_argv(job)
    containers: list[tuple[Any, ...]] = []
    for path in templates:
        template = _at(body, path)
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), **user_labels, **labels}
        if args.annotations:
            tmeta["annotations"] = {**(tmeta.get("annotations") or {}), **args.annotations}
        pod = template["spec"]
        if args.is_job:
            pod.setdefault("restartPolicy", "Never")
        _pod_fields(args, pod)
        if not pod["containers"]:
            pod["containers"].append({})
        for index, item in enumerate(pod["containers"]):
            item.setdefault("name", CONTAINER_NAME if index == 0 else f"{CONTAINER_NAME}{index}")
        first = pod["containers"][0]
        if image_ref is not None:
            first["image"] = image_ref
        elif not first.get("image"):
            raise PluginError(
                "the job has no image for its Kubernetes container: set docker.image in the "
                "job, a builder in the queue, or image in the manifest's first container"
            )
        if argv is not None:
            if job.command or job.entry_point:
                first["command"] = argv
                first.pop("args", None)
            else:
                first["args"] = argv
        _merge_env(first, env)
        if args.env_from:
            first["envFrom"] = [
                *(first.get("envFrom") or []),
                *(e.manifest() for e in args.env_from),
            ]
        if args.volume_mounts:
            mounts = camel_keys(args.volume_mounts)
            first["volumeMounts"] = [*(first.get("volumeMounts") or []), *mounts]
        if inputs is not None:
            _add_inputs(pod, first, inputs)
        _resources(args, first)
        containers.append((*path, "spec", "containers", 0))
    if args.is_job:
        spec = body["spec"]
        spec["backoffLimit"] = (
            args.backoff_limit if args.backoff_limit is not None else spec.get("backoffLimit", 0)
        )
        if args.active_deadline_seconds is not None:
            spec["activeDeadlineSeconds"] = args.active_deadline_seconds
        if args.ttl_seconds_after_finished is not None:
            spec["ttlSecondsAfterFinished"] = args.ttl_seconds_after_finished
    return body, containers


def _pod_fields(args: KubernetesArgs, pod: dict[str, Any]) -> None:
    """The short form's pod-level fields, merged into a pod spec."""
    if args.node_selector:
        pod["nodeSelector"] = {**(pod.get("nodeSelector") or {}), **args.node_selector}
    if args.tolerations:
        pod["tolerations"] = [
            *(pod.get("tolerations") or []),
            *(t.manifest() for t in args.tolerations),
        ]
    if args.affinity is not None:
        pod["affinity"] = camel_keys(args.affinity)
    if args.volumes:
        pod["volumes"] = [*(pod.get("volumes") or []), *camel_keys(args.volumes)]
    if args.service_account:
        pod["serviceAccountName"] = args.service_account
    if args.priority_class:
        pod["priorityClassName"] = args.priority_class
    if args.image_pull_secrets:
        pulls = pod.get("imagePullSecrets") or []
        pod["imagePullSecrets"] = [*pulls, *({"name": n} for n in args.image_pull_secrets)]


def _namespace(args: KubernetesArgs, default_namespace: str) -> str:
    return (args.metadata or {}).get("namespace") or args.namespace or default_namespace


def _workload(
    args: KubernetesArgs, name: str, namespace: str, body: dict[str, Any], secret: Any, paths: Any
) -> Workload:
    group, version = _split_api_version(args.api_version_)
    plural = args.plural or f"{args.kind_.lower()}s"
    return Workload(group, version, args.kind_, plural, namespace, name, body, secret, paths)


def render(
    job: ResolvedJob,
    image: str | None,
    *,
    run_id: str,
    labels: Mapping[str, str],
    env: Mapping[str, str],
    secret_names: Collection[str],
    native_secrets: Mapping[str, Any],
    default_namespace: str = "default",
    schema_version: str = SCHEMA_VERSION,
    args: KubernetesArgs | None = None,
    inputs: Inputs | None = None,
) -> Workload:
    """The workload (and the run's Secret) for one run; :class:`PluginError` when invalid.

    ``image`` is the reference to run (the builder's, pinned); ``labels`` the
    run's (``run_labels(ctx)``, made label-safe here); ``env`` the final
    environment (``ctx.env``) of which ``secret_names`` hold secret values
    (they go into the Secret only); ``native_secrets`` (``ctx.native_secrets``)
    are wired as they are. The manifest is checked against the schema of
    Kubernetes ``schema_version`` before it is returned. ``args`` is the job's
    ``resource_args.kubernetes`` when the caller validated it already;
    ``inputs`` the job's input artifacts (:func:`input_artifacts`), their
    variables already in ``env``.
    """
    args = args or kubernetes_args(job)
    name = workload_name(run_id)
    namespace = _namespace(args, default_namespace)
    secret = secret_name(name)
    ours = safe_labels(labels)
    entries = env_entries(
        {"PYTHONUNBUFFERED": "1", **env},
        secret_names=secret_names,
        native_secrets=native_secrets,
        secret=secret,
        namespace=namespace,
    )
    body, paths = _build(
        args, job, image, name=name, namespace=namespace, labels=ours, env=entries, inputs=inputs
    )
    values = {k: v for k, v in env.items() if k in secret_names and k not in native_secrets}
    secret_body = None
    if values:
        secret_body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret, "namespace": namespace, "labels": ours},
            "type": "Opaque",
            "stringData": values,
        }
    problems = validate_manifest(body, version=schema_version)
    if problems:
        raise PluginError(_schema_message(args, problems, schema_version))
    return _workload(args, name, namespace, body, secret_body, paths)


def describe(
    job: ResolvedJob,
    image: Image | str | None,
    *,
    default_namespace: str = "default",
    schema_version: str = SCHEMA_VERSION,
    args: KubernetesArgs | None = None,
    inputs: Inputs | None = None,
) -> dict[str, Any]:
    """What ``render`` would create, for ``plan``: the manifest with secrets as references.

    No run yet: the name and identity labels are placeholders, the env holds
    the declared values (macros unexpanded; a name passed through from the
    agent has no value), ``k8s:`` secrets show their ``secretKeyRef``, other
    secrets a reference into the run's Secret. Checked against the schema;
    :class:`PluginError` when it is not valid.
    """
    from launchplane.plugins.secrets.kubernetes import SCHEME, parse_k8s_ref, secret_key_ref

    args = args or kubernetes_args(job)
    namespace = _namespace(args, default_namespace)
    secret = secret_name(PREVIEW_NAME)
    native: dict[str, Any] = {}
    for env_name, text in job.secrets.items():
        try:
            ref = parse_ref(text)
        except SecretRefError:
            continue
        if ref.scheme == SCHEME:
            native[env_name] = secret_key_ref(parse_k8s_ref(ref))
    declared: dict[str, str | None] = {"PYTHONUNBUFFERED": "1", **job.env}
    declared.update({n: "<secret>" for n in job.secrets if n not in native})
    declared.update(inputs.env if inputs is not None else {})
    entries = env_entries(
        declared,
        secret_names=set(job.secrets) - set(native),
        native_secrets=native,
        secret=secret,
        namespace=namespace,
    )
    image_ref = (
        image.pinned if isinstance(image, Image) else image
    ) or "<image built by the queue's builder>"
    if image is None and args.is_manifest:
        image_ref = _first_image(args) or image_ref
    body, _ = _build(
        args,
        job,
        image_ref,
        name=PREVIEW_NAME,
        namespace=namespace,
        labels=preview_labels(job),
        env=entries,
        inputs=inputs,
    )
    problems = validate_manifest(body, version=schema_version)
    if problems:
        raise PluginError(_schema_message(args, problems, schema_version))
    workload = _workload(args, PREVIEW_NAME, namespace, body, None, [])
    run_secret = sorted(set(job.secrets) - set(native))
    return {
        "api": f"{args.api_version_} {args.kind_}"
        + ("" if workload.is_job else f" (custom object, plural {workload.plural})"),
        "namespace": namespace,
        "name": PREVIEW_NAME,
        "manifest": body,
        "run_secret": {"name": secret, "keys": run_secret} if run_secret else None,
        "secrets": dict(sorted(job.secrets.items())),
        "schema": f"valid against the Kubernetes {schema_version} OpenAPI schema",
    }


def _first_image(args: KubernetesArgs) -> str | None:
    """The image the W&B manifest's first pod template names, if any (plan without a builder)."""
    body = {"spec": copy.deepcopy(args.spec or {})}
    for path in _pod_templates(body, is_job=args.is_job):
        containers = _at(body, path)["spec"]["containers"]
        if containers and containers[0].get("image"):
            return str(containers[0]["image"])
    return None


# --- schema -------------------------------------------------------------------------------


def _schema_message(args: KubernetesArgs, problems: list[str], version: str) -> str:
    shown = "; ".join(problems[:5]) + (
        f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    )
    return f"the {args.kind_} manifest is not valid for Kubernetes {version}: {shown}"


def validate_manifest(body: Mapping[str, Any], *, version: str = SCHEMA_VERSION) -> list[str]:
    """Every problem the OpenAPI schema of Kubernetes ``version`` finds in ``body``, with its path.

    Strict (unknown fields are problems). A built-in kind is checked whole; a
    custom kind by its ``metadata``, each pod template and, for PyTorchJob and
    Volcano Job, the shape of their spec. Empty when valid.
    """
    return [
        f"{join_path(*path) or '<root>'}: {message}"
        for path, message in schema_errors(body, version=version)
    ]


def schema_errors(
    body: Mapping[str, Any], *, version: str = SCHEMA_VERSION
) -> list[tuple[tuple[Any, ...], str]]:
    """:func:`validate_manifest` as (path, message) pairs."""
    api_version, kind = str(body.get("apiVersion", "")), str(body.get("kind", ""))
    if not _custom_group(api_version):
        return _check(_schema_file(kind, api_version), body, version, ())
    errors = _check("objectmeta-meta-v1", body.get("metadata") or {}, version, ("metadata",))
    templates = _pod_templates(copy.deepcopy(dict(body)), is_job=False)
    for path in templates:
        errors += _check("podtemplatespec-v1", _at(body, path), version, path)
    errors += _known_shape(body, templates)
    return errors


def _known_shape(
    body: Mapping[str, Any], templates: list[tuple[Any, ...]]
) -> list[tuple[tuple[Any, ...], str]]:
    """What the schema of a known custom kind requires beyond its pod templates."""
    group = str(body.get("apiVersion", "")).partition("/")[0]
    kind, spec = body.get("kind"), body.get("spec") or {}
    if group == "kubeflow.org" and kind == "PyTorchJob":
        replicas = spec.get("pytorchReplicaSpecs")
        if not isinstance(replicas, dict) or not replicas:
            return [(("spec", "pytorchReplicaSpecs"), "required: {Master: {...}, Worker: {...}}")]
        errors = []
        for role, replica in replicas.items():
            path = ("spec", "pytorchReplicaSpecs", role)
            if role not in ("Master", "Worker"):
                errors.append((path, "a PyTorchJob replica type is Master or Worker"))
            if not isinstance(replica, dict) or (*path, "template") not in templates:
                errors.append(
                    ((*path, "template"), "required: a pod template with spec.containers")
                )
            elif not isinstance(replica.get("replicas", 1), int):
                errors.append(((*path, "replicas"), "must be an integer"))
        return errors
    if group == "batch.volcano.sh" and kind == "Job":
        tasks = spec.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            return [(("spec", "tasks"), "required: a list of tasks, each with a template")]
        return [
            (("spec", "tasks", i, "template"), "required: a pod template with spec.containers")
            for i in range(len(tasks))
            if ("spec", "tasks", i, "template") not in templates
        ]
    return []


def _schema_file(kind: str, api_version: str) -> str:
    # kubernetes-validate's layout: job-batch-v1, deployment-apps-v1, role-rbac-v1, secret-v1.
    return f"{kind.lower()}-" + re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)


def _check(
    schema: str, value: Any, version: str, prefix: tuple[Any, ...]
) -> list[tuple[tuple[Any, ...], str]]:
    validator = _validator(schema, _schema_dir(version))
    if validator is None:
        return [(prefix, f"no schema for {schema} in Kubernetes {version}")]
    out = []
    for error in sorted(
        validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path))
    ):
        message = error.message
        if len(message) > _MESSAGE_LIMIT:
            message = message[:_MESSAGE_LIMIT] + "..."
        out.append(((*prefix, *error.absolute_path), message))
    return out


def _schema_dir(version: str) -> str:
    """The newest schema directory of kubernetes-validate not newer than ``version``."""
    try:
        from kubernetes_validate.utils import all_versions
    except ImportError:
        raise MissingExtraError("runner", RUNNER, "kubernetes") from None

    def key(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", text)[:2])

    wanted = key(version.lstrip("v"))
    known = [v for v in all_versions() if key(v) <= wanted]
    if not known:
        raise PluginError(
            f"schema_version {version}: kubernetes-validate has schemas from "
            f"{all_versions()[0]} to {all_versions()[-1]}"
        )
    return f"v{known[-1]}-local-strict"


@functools.cache
def _validator(schema: str, directory: str) -> Any:
    """A cached Draft 2020-12 validator of one schema file (the definitions loaded once)."""
    import jsonschema
    import referencing
    from kubernetes_validate.utils import schema_contents

    try:
        contents = schema_contents(f"kubernetes-json-schema/{directory}/{schema}.json", directory)
    except FileNotFoundError:
        return None
    definitions = _definitions(directory)
    registry = referencing.Resource.from_contents(contents) @ (definitions @ referencing.Registry())
    return jsonschema.Draft202012Validator(contents, registry=registry)


@functools.cache
def _definitions(directory: str) -> Any:
    import referencing
    from kubernetes_validate.utils import schema_contents

    return referencing.Resource.from_contents(
        schema_contents(f"kubernetes-json-schema/{directory}/_definitions.json", directory)
    )


_SUBMIT_CHECKS: dict[str, list[FieldError]] = {}
"""What :func:`_schema_check_at_submit` found, by the arguments' JSON text: a queue's W&B
manifest is checked once, not at every submit (a few ms each)."""
_SUBMIT_CHECKS_LIMIT = 256


def _schema_check_at_submit(args: KubernetesArgs) -> None:
    """Schema problems of what the user wrote, at the user's paths (skipped without the extra).

    Rendered with placeholders (no run yet); a problem at a ``{{placeholder}}``
    is left for the submit that fills it.
    """
    try:
        import kubernetes_validate  # noqa: F401
    except ImportError:
        return
    key = json.dumps(args.model_dump(mode="json"), sort_keys=True)
    errors = _SUBMIT_CHECKS.get(key)
    if errors is None:
        job = ResolvedJob(resource=RUNNER, resource_args={RUNNER: {}})
        body, _ = _build(args, job, "image", name="name", namespace="default", labels={}, env=[])
        errors = [
            FieldError(join_path(*_user_path(args, path)), message)
            for path, message in schema_errors(body)
            if "{{" not in str(_value_at(body, path))
        ]
        if len(_SUBMIT_CHECKS) >= _SUBMIT_CHECKS_LIMIT:
            _SUBMIT_CHECKS.clear()
        _SUBMIT_CHECKS[key] = errors
    if errors:
        raise ConfigError(errors)


def _value_at(body: Any, path: tuple[Any, ...]) -> Any:
    try:
        return _at(body, path)
    except (KeyError, IndexError, TypeError):
        return None


_SHORT_PATHS = {
    ("spec", "template", "spec", "volumes"): ("volumes",),
    ("spec", "template", "spec", "affinity"): ("affinity",),
    ("spec", "template", "spec", "containers", 0, "volumeMounts"): ("volume_mounts",),
}


def _user_path(args: KubernetesArgs, path: tuple[Any, ...]) -> tuple[Any, ...]:
    """A manifest path as the user wrote it: the same in W&B's form, the short key otherwise."""
    if not args.is_manifest:
        for prefix, short in _SHORT_PATHS.items():
            if path[: len(prefix)] == prefix:
                return (*short, *path[len(prefix) :])
    return path

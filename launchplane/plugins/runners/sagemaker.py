"""The ``sagemaker`` runner: a job as an Amazon SageMaker training job.

Request
    ``resource_args.sagemaker`` is the ``CreateTrainingJob`` request (W&B's
    form) plus the seed's short keys and launchplane's own lowercase keys;
    :mod:`launchplane.plugins.runners.sagemaker_request` builds and checks it
    against botocore's model of the API. The name is ``lp-<run id>``
    (deterministic, so a restarted agent finds the job again), the image is
    the builder's (pinned by digest when known), the command is
    ``ContainerEntrypoint``/``ContainerArguments``, hyperparameters are
    ``HyperParameters`` (strings) and ``$LAUNCHPLANE_HYPERPARAMETERS``, and
    tags carry the run's identity.

Secrets
    SageMaker shows a job's ``Environment`` to anyone allowed
    ``DescribeTrainingJob``, so secret values are refused unless the queue
    config opts in (``secrets_in_environment: true``, admins only); refused
    at ``queue create`` (:meth:`SageMakerRunner.check_queue`) and again here.
    ``aws-sm:`` secrets are passed as references instead
    (``<NAME>_SECRET_ID``/``<NAME>_SECRET_KEY``) for the job's role to read.

Watching
    ``DescribeTrainingJob`` is polled with backoff (``poll_interval`` after
    each change, growing to ``max_poll_interval`` while nothing changes);
    each status and ``SecondaryStatus`` transition is a line of the job's
    log. A ``Failed`` job's ``FailureReason`` is its reason; capacity
    problems (``CapacityError``, ``ResourceLimitExceeded``, insufficient
    capacity, a spot interruption or a spot wait that ran out) are
    infrastructure failures, which a queue's ``retry`` policy re-runs;
    ``MaxRuntimeExceeded`` says the job hit ``MaxRuntimeInSeconds``. Output
    comes from CloudWatch Logs (``/aws/sagemaker/TrainingJobs``, every stream
    ``<name>/...`` of the job, each followed from its start with its forward
    token, so no line is read twice); with several instances each line starts
    with its host (``[algo-2]``). ``cancel`` is ``StopTrainingJob`` (SageMaker
    gives the container SIGTERM, then SIGKILL after its own 120 s: the grace
    is not ours to choose).

Every boto3 call runs in a worker thread; clients come from
:func:`launchplane.core.aws.client` and are kept per region/endpoint/profile.
What ``attach`` needs to find the job again without the job spec (name,
region, endpoint, pace) is kept in ``<run dir>/sagemaker.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.to_thread
from pydantic import BaseModel, ValidationError

from launchplane.core.aws import AwsOptions, client, error_code, explain
from launchplane.core.config.artifacts import refuse_mounts
from launchplane.core.errors import ConfigError, FieldError, join_path
from launchplane.core.hookspecs import hookimpl
from launchplane.core.interfaces import (
    Image,
    InfrastructureError,
    JobContext,
    LogSink,
    PluginError,
    Run,
    Runner,
    RunResult,
    RunState,
    SecretRefError,
    parse_ref,
)
from launchplane.core.launch import DEFAULT_BUILDER, builder_name, preview_labels, run_labels
from launchplane.core.spec import QueueConfig, ResolvedJob
from launchplane.plugins.runners import sagemaker_request as rq

log = logging.getLogger("launchplane.runner.sagemaker")

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
STATE_FILE = "sagemaker.json"
BACKOFF = 1.5
"""Each poll that sees no change waits this much longer, up to ``max_poll_interval``."""
MAX_POLL_ERRORS = 8
"""Consecutive failed DescribeTrainingJob calls (after boto3's own retries) before giving up."""
FINAL_DRAINS = 2
"""Reads of CloudWatch after the job ended that must find nothing new before logs() ends
(CloudWatch ingests with a delay)."""
INFRA_FAILURES = (
    "CapacityError",
    "ResourceLimitExceeded",
    "InsufficientInstanceCapacity",
    "InsufficientCapacityError",
    "InternalServerError",
)
"""FailureReason prefixes that are SageMaker's side: the queue's retry policy applies."""
USER_FAILURES = ("AlgorithmError", "ClientError")
CAPACITY_CODES = frozenset({"ResourceLimitExceeded", "CapacityError", "ThrottlingException"})
INFRA_SECONDARY = {
    "Interrupted": "the spot instance was interrupted (managed spot training)",
    "MaxWaitTimeExceeded": "managed spot training found no capacity within "
    "StoppingCondition.MaxWaitTimeInSeconds",
}
RUNNING_SECONDARY = frozenset({"Downloading", "Training", "Uploading", "Restarting"})
NO_IMAGE = (
    "the job has no image: set docker.image in the job, a builder.type that builds one "
    "(docker, with a registry SageMaker can pull from: ECR), or "
    "resource_args.sagemaker.AlgorithmSpecification.TrainingImage in the queue"
)
_EXIT_CODE = re.compile(r"exit code:?\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class JobPlace:
    """Where a training job is and how to watch it: kept in the run directory for ``attach``."""

    name: str
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    poll_interval: float = 5.0
    max_poll_interval: float = 60.0
    instance_count: int = 1
    max_runtime: int | None = None

    @property
    def aws(self) -> AwsOptions:
        return AwsOptions(region=self.region, endpoint_url=self.endpoint_url, profile=self.profile)


class _Clients:
    """The SageMaker and CloudWatch Logs clients of one region/endpoint/profile."""

    def __init__(self, options: AwsOptions) -> None:
        self.sagemaker = client("sagemaker", options, kind="runner", name=SageMakerRunner.name)
        self.logs = client("logs", options, kind="runner", name=SageMakerRunner.name)
        self._options = options
        self._sts: Any = None

    @property
    def sts(self) -> Any:
        """STS, made on first use: only a role name needs it (worker thread)."""
        if self._sts is None:
            self._sts = client("sts", self._options, kind="runner", name=SageMakerRunner.name)
        return self._sts

    @property
    def region(self) -> str | None:
        return self.sagemaker.meta.region_name

    def close(self) -> None:
        self.sagemaker.close()
        self.logs.close()
        if self._sts is not None:
            self._sts.close()


def sagemaker_args(job: ResolvedJob) -> rq.SageMakerArgs:
    """``resource_args.sagemaker`` validated; a bad field fails with its path."""
    prefix = ("resource_args", rq.RUNNER)
    try:
        return rq.SageMakerArgs.model_validate(job.resource_args.get(rq.RUNNER, {}))
    except ConfigError as exc:
        problems = [FieldError(join_path(*prefix, e.path), e.message) for e in exc.errors]
        raise ConfigError(problems) from None
    except ValidationError as exc:
        problems = [
            FieldError(join_path(*prefix, *(str(p) for p in e["loc"])), e["msg"])
            for e in exc.errors()
        ]
        raise ConfigError(problems) from None


def _plugin_error(exc: ConfigError) -> PluginError:
    return PluginError("; ".join(str(error) for error in exc.errors))


class SageMakerRunner(Runner):
    """Runs each job as one SageMaker training job; see the module docstring."""

    name: ClassVar[str] = rq.RUNNER
    needs_image: ClassVar[bool] = False
    """The image may also come from ``AlgorithmSpecification.TrainingImage``; submit checks."""
    resource_args_model: ClassVar[type[BaseModel] | None] = rq.SageMakerArgs
    artifact_uri_schemes: ClassVar[tuple[str, ...]] = ("s3",)
    """An ``s3`` store's input versions become input channels: the agent does not download them."""

    def __init__(self, options: BaseModel | None = None) -> None:
        super().__init__(options)
        self._clients: dict[tuple[str | None, ...], _Clients] = {}
        self._lock = threading.Lock()

    async def aclose(self) -> None:
        """Close the boto3 clients' connection pools (the agent stops)."""
        with self._lock:
            made, self._clients = list(self._clients.values()), {}
        for clients in made:
            await anyio.to_thread.run_sync(clients.close)

    def connect(self, options: AwsOptions) -> _Clients:
        """The clients for ``options`` (worker thread: boto3 is imported and loaded here)."""
        key = (options.region, options.endpoint_url, options.profile)
        with self._lock:
            found = self._clients.get(key)
        if found is not None:
            return found
        made = _Clients(options)
        with self._lock:
            return self._clients.setdefault(key, made)

    @classmethod
    def check_queue(cls, config: QueueConfig) -> list[FieldError]:
        """Secrets whose values would land in the job's Environment, without the admin's opt-in."""
        args = config.resource_args.get(cls.name) or {}
        if args.get("secrets_in_environment") is True:
            return []
        valued = []
        for name, text in config.secrets.items():
            try:
                if parse_ref(text).scheme == rq.SECRET_SCHEME:
                    continue
            except SecretRefError:
                continue  # the queue config's own check names it
            valued.append(name)
        return [
            FieldError(join_path("secrets", name), rq.secrets_refusal([name])) for name in valued
        ]

    def describe(self, job: ResolvedJob, image: Image | None) -> dict[str, Any]:
        """The ``CreateTrainingJob`` request, checked; env names only, secrets as references."""
        try:
            args = sagemaker_args(job)
        except ConfigError as exc:
            raise _plugin_error(exc) from None
        refs, valued = rq.secret_references(job, {})
        env = {name: value for name, value in job.env.items() if value is not None}
        env = {name: "<set at launch>" for name in rq.launch_environment(env)} | refs
        fallback = (args.request().get("AlgorithmSpecification") or {}).get("TrainingImage")
        shown_image = image.pinned if image is not None else None
        request = rq.build_request(
            job,
            args,
            image=shown_image or fallback or "<image built by the queue's builder>",
            name=rq.PREVIEW_NAME,
            labels=preview_labels(job),
            env=env,
        )
        warnings: list[FieldError] = []
        errors = rq.request_errors(request, warnings)
        # A missing field or image is the plan's finding, not a refusal: a job may add it.
        missing = [e for e in errors.errors if e.message == rq.REQUIRED] if errors else []
        if errors is not None and len(missing) < len(errors.errors):
            raise _plugin_error(errors)
        if not (shown_image or fallback) and builder_name(job) == DEFAULT_BUILDER:
            missing.append(FieldError("docker.image", NO_IMAGE))
        role = request.get("RoleArn")
        if rq.is_role_name(role):
            where = rq.partition(args.region) if args.region else "<partition>"
            # A role name, as W&B takes it: its ARN is made at submit (STS).
            request["RoleArn"] = rq.role_arn(role, "<account of the agent's credentials>", where)
        given_name = args.request().get("TrainingJobName")
        request["TrainingJobName"] = rq.NAME_PREFIX + "<job_id>-<attempt>"
        notes = [renamed(given_name, request["TrainingJobName"])] if given_name else []
        request["Tags"] = [
            *(tag for tag in request["Tags"] if tag["Key"] not in preview_labels(job)),
            *({"Key": key, "Value": value} for key, value in preview_labels(job).items()),
        ]
        if valued and not args.secrets_in_environment:
            raise PluginError(rq.secrets_refusal(valued))
        return {
            "CreateTrainingJob": request,
            "secrets": {
                name: (f"{ref} (value in Environment)" if name in valued else f"{ref} (reference)")
                for name, ref in sorted(job.secrets.items())
            },
            "region": args.region or "<from the AWS configuration chain>",
            "logs": f"{LOG_GROUP}/{request['TrainingJobName']}/*",
            **({"missing": [str(e) for e in missing]} if missing else {}),
            **({"notes": notes} if notes else {}),
            **({"warnings": [str(w) for w in warnings]} if warnings else {}),
        }

    async def submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> SageMakerRun:
        # Inputs in an s3 store are channels (Mount.uri); a download on the agent host is
        # nothing a training instance can read.
        refuse_mounts([mount for mount in ctx.mounts if mount.uri is None], self.name)
        try:
            args = sagemaker_args(job)
        except ConfigError as exc:
            raise _plugin_error(exc) from None
        refs, valued = rq.secret_references(job, ctx.native_secrets)
        if valued and not args.secrets_in_environment:
            raise PluginError(rq.secrets_refusal(valued))
        allowed = set(valued) if args.secrets_in_environment else set()
        env = {
            name: value
            for name, value in rq.launch_environment(ctx.env).items()
            if name not in ctx.secret_names or name in allowed
        } | refs
        given = args.request().get("AlgorithmSpecification") or {}
        if image is None and not given.get("TrainingImage") and not given.get("AlgorithmName"):
            raise PluginError(NO_IMAGE)
        name = rq.training_job_name(ctx.run_id)
        request = rq.build_request(
            job,
            args,
            image=image.pinned if image is not None else None,
            name=name,
            labels=run_labels(ctx),
            env=env,
            mounts=ctx.mounts,
        )
        errors = rq.request_errors(request)
        if errors is not None:
            raise _plugin_error(errors)
        resources = request.get("ResourceConfig") or {}
        clients = await anyio.to_thread.run_sync(self.connect, args_place(args))
        if rq.is_role_name(request.get("RoleArn")):
            account = await anyio.to_thread.run_sync(_account, clients)
            request["RoleArn"] = rq.role_arn(
                request["RoleArn"], account, rq.partition(clients.region)
            )
        place = JobPlace(
            name=name,
            region=args.region,
            endpoint_url=args.endpoint_url,
            profile=args.profile,
            poll_interval=args.poll_interval,
            max_poll_interval=args.max_poll_interval,
            instance_count=int(resources.get("InstanceCount") or 1),
            max_runtime=(request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds"),
        )
        place = JobPlace(**{**asdict(place), "region": clients.region})
        _save_place(ctx.workdir, place)
        given_name = args.request().get("TrainingJobName")
        if given_name and given_name != name:
            await ctx.emit(renamed(given_name, name))
        arn = await anyio.to_thread.run_sync(_create, clients, request)
        await ctx.emit(f"created SageMaker training job {name} ({arn})")
        return SageMakerRun(clients, place, arn=arn, emit=ctx.log)

    async def attach(self, run_id: str, run_dir: Path) -> SageMakerRun | None:
        """The training job of ``run_id`` by its deterministic name (and the kept region)."""
        place = _load_place(run_dir) or JobPlace(name=rq.training_job_name(run_id))
        clients = await anyio.to_thread.run_sync(self.connect, place.aws)
        described = await anyio.to_thread.run_sync(_describe_or_none, clients, place.name)
        if described is None:
            return None
        return SageMakerRun(clients, place, arn=described.get("TrainingJobArn"), emit=None)


def renamed(given: str, name: str) -> str:
    """Why a ``TrainingJobName`` of the config is not used (W&B would use it)."""
    return (
        f"TrainingJobName {given!r} of resource_args.sagemaker is replaced by {name}: "
        "launchplane names each attempt after its run id, so that a retry never collides "
        "with an earlier attempt and a restarted agent finds the job again"
    )


def args_place(args: rq.SageMakerArgs) -> AwsOptions:
    """Where a job's AWS calls go: ``region``, ``endpoint_url``, ``profile`` of its config."""
    return AwsOptions(region=args.region, endpoint_url=args.endpoint_url, profile=args.profile)


def _account(clients: _Clients) -> str:
    """The account of the agent's credentials (STS GetCallerIdentity), for a role name."""
    try:
        return str(clients.sts.get_caller_identity()["Account"])
    except Exception as exc:
        raise PluginError(
            f"RoleArn is a role name, and the account to make its ARN from is unknown "
            f"(sts:GetCallerIdentity: {explain(exc)}); give the role's full ARN"
        ) from None


def _create(clients: _Clients, request: dict[str, Any]) -> str:
    """``CreateTrainingJob`` (worker thread): the job's ARN; AWS's refusal in words."""
    import botocore.exceptions

    unreachable = (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)
    try:
        response = clients.sagemaker.create_training_job(**request)
    except Exception as exc:
        why = f"CreateTrainingJob {request['TrainingJobName']}: {explain(exc)}"
        if error_code(exc) in CAPACITY_CODES or isinstance(exc, unreachable):
            raise InfrastructureError(why) from None  # no capacity, throttled, unreachable
        raise PluginError(why) from None  # refused (validation, permissions, credentials)
    return str(response["TrainingJobArn"])


def _describe_or_none(clients: _Clients, name: str) -> dict[str, Any] | None:
    try:
        return dict(clients.sagemaker.describe_training_job(TrainingJobName=name))
    except Exception as exc:
        if error_code(exc) in ("ValidationException", "ResourceNotFound"):
            return None
        raise


def _save_place(run_dir: Path, place: JobPlace) -> None:
    with contextlib.suppress(OSError):
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / STATE_FILE).write_text(json.dumps(asdict(place), indent=2) + "\n")


def _load_place(run_dir: Path) -> JobPlace | None:
    try:
        data = json.loads((run_dir / STATE_FILE).read_text())
        return JobPlace(**data)
    except (OSError, ValueError, TypeError):
        return None


def _exit_code(text: str) -> int | None:
    match = _EXIT_CODE.search(text)
    return int(match.group(1)) if match else None


def result_of(described: Mapping[str, Any], place: JobPlace, cancelled: bool) -> RunResult | None:
    """How a described training job ended, or None while it runs."""
    status = described.get("TrainingJobStatus")
    if status not in ("Completed", "Stopped", "Failed"):
        return None
    secondary = described.get("SecondaryStatus") or ""
    reason = str(described.get("FailureReason") or "")
    if status == "Completed":
        return RunResult(RunState.SUCCEEDED, 0)
    if secondary == "MaxRuntimeExceeded":
        limit = f" ({place.max_runtime} s)" if place.max_runtime else ""
        return RunResult(
            RunState.FAILED,
            None,
            f"MaxRuntimeInSeconds{limit} reached: SageMaker stopped the training job "
            "(raise resource_args.sagemaker.StoppingCondition.MaxRuntimeInSeconds)",
        )
    if secondary in INFRA_SECONDARY:
        why = INFRA_SECONDARY[secondary] + (f": {reason}" if reason else "")
        return RunResult(RunState.FAILED, None, why, infrastructure_failure=True)
    if status == "Stopped":
        if cancelled:
            return RunResult(RunState.CANCELLED, None, "cancelled")
        return RunResult(RunState.FAILED, None, "the training job was stopped outside launchplane")
    words = reason or "SageMaker gave no FailureReason"
    return RunResult(
        RunState.FAILED,
        _exit_code(reason),
        f"training job failed: {words}",
        infrastructure_failure=is_capacity(reason),
    )


def is_capacity(reason: str) -> bool:
    """Whether a FailureReason is SageMaker's (capacity, limits, its own fault), not the code's.

    An ``AlgorithmError``/``ClientError`` is the job's own, whatever words
    its output holds ("disk capacity" in a traceback is not AWS's capacity).
    """
    if reason.startswith(USER_FAILURES):
        return False
    return reason.startswith(INFRA_FAILURES) or "insufficient capacity" in reason.lower()


class SageMakerRun(Run):
    """One training job, created by ``submit`` or found by ``attach``."""

    def __init__(
        self, clients: _Clients, place: JobPlace, *, arn: str | None, emit: LogSink | None
    ) -> None:
        self.id = place.name
        self.place = place
        self.arn = arn
        self._clients = clients
        self._emit = emit
        self._cancelled = False
        self._result: RunResult | None = None
        self._ended = anyio.Event()
        self._wake = anyio.Event()
        self._wait_lock = anyio.Lock()
        self._last: tuple[str | None, str | None] = (None, None)

    def facts(self) -> dict[str, Any]:
        """Name, ARN and region: what ``aws sagemaker describe-training-job`` takes."""
        return {
            "training_job_name": self.place.name,
            "training_job_arn": self.arn,
            "region": self._clients.region,
        }

    async def _describe(self) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(
            lambda: dict(self._clients.sagemaker.describe_training_job(TrainingJobName=self.id))
        )

    async def status(self) -> RunState:
        if self._result is not None:
            return self._result.state
        try:
            described = await self._describe()
        except Exception:
            return RunState.FAILED
        result = result_of(described, self.place, self._cancelled)
        if result is not None:
            return result.state
        if described.get("SecondaryStatus") in RUNNING_SECONDARY:
            return RunState.RUNNING
        return (
            RunState.RUNNING
            if described.get("TrainingJobStatus") == "Stopping"
            else (RunState.PENDING)
        )

    async def wait(self) -> RunResult:
        """Poll DescribeTrainingJob with backoff until the job ends; report each transition."""
        async with self._wait_lock:
            if self._result is None:
                self._result = await self._poll()
                self._ended.set()
        return self._result

    async def _poll(self) -> RunResult:
        interval = self.place.poll_interval
        failures = 0
        while True:
            try:
                described = await self._describe()
            except Exception as exc:
                if error_code(exc) == "ValidationException":
                    return RunResult(
                        RunState.FAILED,
                        None,
                        f"training job {self.id} is gone ({explain(exc)})",
                        infrastructure_failure=True,
                    )
                failures += 1
                if failures >= MAX_POLL_ERRORS:
                    return RunResult(
                        RunState.FAILED,
                        None,
                        f"cannot describe training job {self.id}: {explain(exc)}",
                        infrastructure_failure=True,
                    )
                await self._say(f"DescribeTrainingJob failed ({explain(exc)}); trying again")
                await self._pause(interval)
                interval = min(interval * BACKOFF, self.place.max_poll_interval)
                continue
            failures = 0
            self.arn = described.get("TrainingJobArn") or self.arn
            if await self._transition(described):
                interval = self.place.poll_interval
            result = result_of(described, self.place, self._cancelled)
            if result is not None:
                return result
            await self._pause(interval)
            interval = min(interval * BACKOFF, self.place.max_poll_interval)

    async def _transition(self, described: Mapping[str, Any]) -> bool:
        """Say a new status/SecondaryStatus in the job's log; True when it changed."""
        now = (described.get("TrainingJobStatus"), described.get("SecondaryStatus"))
        if now == self._last:
            return False
        self._last = now
        status, secondary = now
        message = ""
        for item in described.get("SecondaryStatusTransitions") or []:
            if item.get("Status") == secondary:
                message = str(item.get("StatusMessage") or "")
        line = f"training job {self.id}: {status} / {secondary}"
        await self._say(line + (f": {message}" if message else ""))
        return True

    async def _say(self, line: str) -> None:
        if self._emit is not None:
            await self._emit(line)
        else:
            log.info("%s", line)

    async def _pause(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._wake.wait()
        if self._wake.is_set():
            self._wake = anyio.Event()

    async def cancel(self, grace: float = 10.0) -> None:
        """``StopTrainingJob``; ``wait`` then sees ``Stopped`` and ends ``cancelled``."""
        if self._result is not None:
            return
        self._cancelled = True

        def stop() -> str | None:
            try:
                self._clients.sagemaker.stop_training_job(TrainingJobName=self.id)
            except Exception as exc:
                # ValidationException: already stopping, stopped or ended; nothing to stop.
                if error_code(exc) != "ValidationException":
                    return explain(exc)
            return None

        failure = await anyio.to_thread.run_sync(stop)
        if failure is not None:
            # Never raised: the caller is stopping the job and cannot do better; wait()
            # keeps watching, and reports how the job ends if it was not stopped.
            await self._say(f"StopTrainingJob {self.id} failed ({failure}); it may still run")
        self._wake.set()

    def logs(self) -> AsyncIterator[str]:
        """Every CloudWatch stream of the job, from the start, until the job has ended."""
        return self._read_logs()

    async def _read_logs(self) -> AsyncIterator[str]:
        reader = _StreamReader(self._clients, self.id, tagged=self.place.instance_count > 1)
        quiet_after_end = 0
        interval = self.place.poll_interval
        while True:
            ended = self._ended.is_set()
            lines = await anyio.to_thread.run_sync(reader.read_new)
            for line in lines:
                yield line
            if ended:
                quiet_after_end = 0 if lines else quiet_after_end + 1
                if quiet_after_end >= FINAL_DRAINS:
                    return
                interval = min(self.place.poll_interval, 1.0)
            elif lines:
                interval = self.place.poll_interval
            else:
                interval = min(interval * BACKOFF, self.place.max_poll_interval)
            with anyio.move_on_after(interval):
                if not ended:
                    await self._ended.wait()


class _StreamReader:
    """New events of every log stream of one training job, each stream read once in order.

    Each stream is followed with its own forward token, so an event is read
    exactly once; a poll's new events are put in time order across streams.
    """

    def __init__(self, clients: _Clients, name: str, *, tagged: bool) -> None:
        self._logs = clients.logs
        self._prefix = f"{name}/"
        self._tagged = tagged
        self._tokens: dict[str, str | None] = {}

    def read_new(self) -> list[str]:
        """The lines that arrived since the last call (worker thread)."""
        events: list[tuple[int, str, int, str]] = []
        for stream in self._streams():
            for index, event in enumerate(self._new_events(stream)):
                events.append((int(event.get("timestamp", 0)), stream, index, event["message"]))
        events.sort()
        lines = []
        for _, stream, _, message in events:
            for line in message.rstrip("\n").split("\n"):
                line = line.rstrip("\r")
                lines.append(f"[{self._host(stream)}] {line}" if self._tagged else line)
        return lines

    def _host(self, stream: str) -> str:
        # <job>/algo-1-1700000000 -> algo-1
        tail = stream[len(self._prefix) :]
        head, _, stamp = tail.rpartition("-")
        return head if head and stamp.isdigit() else tail

    def _streams(self) -> list[str]:
        names: list[str] = []
        kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": self._prefix}
        try:
            while True:
                page = self._logs.describe_log_streams(**kwargs)
                names += [item["logStreamName"] for item in page.get("logStreams", [])]
                if not page.get("nextToken"):
                    break
                kwargs["nextToken"] = page["nextToken"]
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return []  # no log group yet: the job has not written anything
            log.warning("CloudWatch DescribeLogStreams %s: %s", self._prefix, explain(exc))
        return sorted(names)

    def _new_events(self, stream: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": LOG_GROUP,
                "logStreamName": stream,
                "startFromHead": True,
            }
            token = self._tokens.get(stream)
            if token:
                kwargs["nextToken"] = token
            try:
                page = self._logs.get_log_events(**kwargs)
            except Exception as exc:
                log.warning("CloudWatch GetLogEvents %s: %s", stream, explain(exc))
                return events
            events += page.get("events", [])
            following = page.get("nextForwardToken")
            if not following or following == token:
                self._tokens[stream] = following or token
                return events
            self._tokens[stream] = following
            if not page.get("events"):
                return events


@hookimpl
def launchplane_register_runners(register: Any) -> None:
    register(SageMakerRunner)

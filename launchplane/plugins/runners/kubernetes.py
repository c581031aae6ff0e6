"""The ``kubernetes`` runner: a job as a ``batch/v1`` Job (or a custom kind) on a cluster.

Workload
    ``kubernetes_manifest.render`` makes the manifest from
    ``resource_args.kubernetes`` (short form or a whole W&B-style manifest):
    a deterministic DNS-1123 name from the run id (``workload_name``), labels
    that identify job, attempt, run, queue (and the agent), ``restartPolicy:
    Never`` and ``backoffLimit: 0`` unless the queue says otherwise - retries
    are the queue's ``retry:`` policy, not the cluster's. Other kinds
    (Kubeflow ``PyTorchJob``, Volcano ``Job``) go through the custom-objects API.

Secrets
    ``k8s:`` references arrive as ``ctx.native_secrets`` and become
    ``valueFrom.secretKeyRef`` (their values never pass the agent). Values
    from other providers go into one per-run ``Secret`` (``<name>-secrets``),
    referenced from the pod by key, never written into the Job. It is
    created first, then the Job, then the Secret's ``ownerReferences`` are
    pointed at the Job, so the cluster's garbage collector deletes it with
    the Job; a Job that cannot be created takes its Secret with it.

Input artifacts
    The runner reads ``s3`` and ``file`` store versions where they are
    (``artifact_uri_schemes``); the agent pins them and downloads nothing. An
    ``s3`` input is fetched by an init container (``artifact_fetcher_image``,
    ``launchplane artifact fetch ... --digest``) into an ``emptyDir``; a
    ``file`` input is the volume ``artifact_volumes`` maps the store's root to,
    with ``subPath``. Both are mounted read-only in the job's container
    (``kubernetes_manifest.input_artifacts``); without the option the run (and
    ``plan``) fails naming it. A failed init container fails the run as
    ``Init:Error`` with that container's last lines.

Watching
    :func:`watch` lists, then watches from the list's ``resourceVersion``,
    resumes from the last version it saw when a stream ends or drops,
    re-lists on ``410 Gone`` (the version was compacted) and retries
    connection failures with backoff. The run watches its Job and its pods
    (by the run's label) and turns what it sees into a result:
    ``Complete`` -> succeeded; ``DeadlineExceeded``; ``OOMKilled``; a
    non-zero exit code with the container's last log lines; ``Evicted`` or
    preempted pods, ``ErrImagePull``/``ImagePullBackOff`` (infrastructure:
    the queue's retry policy re-runs them); ``Unschedulable`` with the
    scheduler's message once the pod stayed pending ``pending_timeout_seconds``;
    a container that cannot be configured (a missing Secret or key). A
    failure the cluster would keep retrying forever deletes the Job.

Logs
    Every pod of the run in creation order, each container instance
    (``follow``; a restarted container's earlier instance first, with
    ``previous``), so a re-adopted run replays from the start and the agent
    skips what the server already has.

Cancel
    Deletes the Job with ``propagation_policy`` and ``gracePeriodSeconds``
    set to the agent's grace, then its remaining pods with the same grace
    (so the pods get SIGTERM, then SIGKILL after the grace, not the pods'
    own default).

Attach
    By the deterministic name, in the namespace noted in the run directory
    (``kubernetes.json``) at submit, else the options' namespace; checked by
    the run label.

Every call of the blocking ``kubernetes`` client runs in a worker thread
(``kube.call``); the package is imported inside the functions that use it.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import anyio
import anyio.from_thread
import anyio.to_thread
from pydantic import BaseModel, Field

from launchplane.core.config import artifacts as refs
from launchplane.core.hookspecs import hookimpl
from launchplane.core.interfaces import (
    LATEST,
    Image,
    InfrastructureError,
    JobContext,
    Mount,
    PluginError,
    Run,
    Runner,
    RunResult,
    RunState,
)
from launchplane.core.launch import RUN_LABEL, run_labels
from launchplane.core.spec import ResolvedJob
from launchplane.plugins import kube
from launchplane.plugins.kube import KubeOptions
from launchplane.plugins.runners import kubernetes_manifest as manifest
from launchplane.plugins.runners.lines import read_lines

STATE_FILE = "kubernetes.json"
"""What the runner keeps in the run directory: where the workload is (for ``attach``)."""
TAIL_LINES = 20
"""Lines of a failed container's log in the failure reason."""
WATCH_SECONDS = 60
"""A watch asks the API server to end the stream after this long; it is then resumed."""
RETRY_LIMIT = 8
"""Consecutive failed API calls (connection errors, 5xx) a watch survives, with backoff."""
LOG_EOF_SECONDS = 10.0
"""How long ``wait`` lets the log readers finish once the workload has ended."""
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})


class KubernetesRunnerOptions(KubeOptions):
    """Which cluster, and how long to wait for what the cluster might still sort out."""

    schema_version: str = manifest.SCHEMA_VERSION
    """The Kubernetes version whose OpenAPI schema ``plan`` validates the manifest against."""
    pending_timeout_seconds: float = Field(default=300.0, gt=0)
    """How long a pod may stay unschedulable before the run fails (with the scheduler's words)."""
    propagation_policy: Literal["Foreground", "Background"] = "Background"
    """How a cancel deletes the Job's pods: at once (Background) or before the Job (Foreground)."""


@dataclass(frozen=True)
class Where:
    """Where a workload lives: enough to find, watch and delete it again."""

    group: str
    version: str
    kind: str
    plural: str
    namespace: str
    name: str
    kubeconfig: str | None = None
    """The queue's kubeconfig (W&B's ``configFile``), when it names one: where to find it again."""
    context: str | None = None
    """The queue's kubeconfig context (W&B's ``context``), when it names one."""

    @property
    def batch_job(self) -> bool:
        return (self.group, self.kind) == ("batch", "Job")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


# -- watching ---------------------------------------------------------------------------


async def watch(
    list_fn: Callable[..., Any],
    *args: Any,
    serialize: Callable[[Any], Any] | None = None,
    **selectors: Any,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """``(event type, object)`` of ``list_fn``'s objects: a list, then changes, forever.

    ``list_fn`` is a ``kubernetes`` list call (``CoreV1Api.list_namespaced_pod``,
    ``CustomObjectsApi.list_namespaced_custom_object``); ``args`` and
    ``selectors`` (``label_selector``, ``field_selector``) are passed to it.
    The list yields ``("LISTED", obj)`` for each object (again after a
    re-list), then ``ADDED``/``MODIFIED``/``DELETED`` follow from its
    ``resourceVersion``. Objects are plain camelCase dicts (``serialize``
    turns a client model into one). The caller stops iterating when it has
    seen enough; a worker thread still blocked on the stream ends with it.
    """
    import kubernetes
    import urllib3

    to_dict = serialize or (lambda obj: obj)
    version: str | None = None
    failures = 0
    while True:
        try:
            if version is None:
                listed = await kube.call(list_fn, *args, **selectors)
                listed = to_dict(listed)
                version = str(listed["metadata"]["resourceVersion"])
                for item in listed.get("items") or []:
                    yield "LISTED", item
            stream = kubernetes.watch.Watch()
            events = stream.stream(
                list_fn,
                *args,
                resource_version=version,
                timeout_seconds=WATCH_SECONDS,
                allow_watch_bookmarks=True,
                **selectors,
            )
            try:
                while True:
                    event = await anyio.to_thread.run_sync(
                        _next_event, events, abandon_on_cancel=True
                    )
                    if event is None:
                        break  # the server ended the stream: resume from `version`
                    failures = 0
                    obj = to_dict(event["object"])
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event["type"] != "BOOKMARK":
                        yield event["type"], obj
            finally:
                stream.stop()
        except kubernetes.client.ApiException as exc:
            if exc.status == 410:
                version = None  # compacted: list again and carry on from there
                continue
            if exc.status is not None and exc.status < 500 and exc.status != 429:
                raise PluginError(
                    f"watching {_what(list_fn)} failed: {kube.explain(exc)}"
                ) from None
            failures += 1
            if failures > RETRY_LIMIT:
                raise InfrastructureError(
                    f"watching {_what(list_fn)} failed {failures} times: {kube.explain(exc)}"
                ) from None
            await anyio.sleep(min(0.1 * 2**failures, 5.0))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            failures += 1
            if failures > RETRY_LIMIT:
                raise InfrastructureError(
                    f"lost the Kubernetes API while watching {_what(list_fn)}: {exc}"
                ) from None
            await anyio.sleep(min(0.1 * 2**failures, 5.0))


def _next_event(events: Iterator[Any]) -> Any:
    return next(events, None)


def _what(list_fn: Callable[..., Any]) -> str:
    return getattr(list_fn, "__name__", "objects").removeprefix("list_namespaced_")


# -- turning objects into a result ------------------------------------------------------


def _conditions(obj: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``True`` conditions of ``status.conditions`` by type."""
    return {
        c.get("type"): c
        for c in (obj.get("status") or {}).get("conditions") or []
        if c.get("status") == "True"
    }


def _container_status(pod: Mapping[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def _created(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return (metadata.get("creationTimestamp") or "", metadata.get("name") or "")


def _pod_name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name"))


@dataclass(frozen=True)
class Verdict:
    """What the objects say: a result, or that the cluster will not finish the run by itself."""

    result: RunResult
    delete: bool = False
    """True when the cluster would keep the run pending forever: delete the workload."""
    tail_pod: str | None = None
    """The pod whose last log lines belong in the reason."""
    tail_container: str | None = None
    """Its container whose lines those are, when not the job's (an init container)."""


def judge(where: Where, workload: Mapping[str, Any], pods: list[dict[str, Any]]) -> Verdict | None:
    """The run's end, from its workload object and pods; None while it is still going."""
    pods = sorted(pods, key=_created)
    failed_pod = next((p for p in reversed(pods) if _phase(p) == "Failed"), None)
    if where.batch_job:
        conditions = _conditions(workload)
        if "Complete" in conditions or "SuccessCriteriaMet" in conditions:
            return Verdict(RunResult(RunState.SUCCEEDED, 0))
        failed = conditions.get("Failed") or conditions.get("FailureTarget")
        if failed is not None:
            if failed.get("reason") == "DeadlineExceeded":
                deadline = (workload.get("spec") or {}).get("activeDeadlineSeconds")
                return Verdict(
                    RunResult(
                        RunState.FAILED,
                        None,
                        "DeadlineExceeded: the Job ran longer than its activeDeadlineSeconds"
                        + (f" ({deadline} s)" if deadline else ""),
                    )
                )
            if failed_pod is not None:
                return _pod_failure(failed_pod)
            words = failed.get("message") or failed.get("reason") or "the Job failed"
            return Verdict(RunResult(RunState.FAILED, None, f"{failed.get('reason')}: {words}"))
    else:
        verdict = _custom_verdict(workload)
        if verdict is not None:
            if verdict.result.state is RunState.FAILED and failed_pod is not None:
                return _pod_failure(failed_pod)
            return verdict
    return None


def _custom_verdict(workload: Mapping[str, Any]) -> Verdict | None:
    """Known status shapes of other kinds: Kubeflow conditions, Volcano ``status.state.phase``."""
    status = workload.get("status") or {}
    phase = (status.get("state") or {}).get("phase")
    if phase in ("Completed",):
        return Verdict(RunResult(RunState.SUCCEEDED, 0))
    if phase in ("Failed", "Aborted", "Terminated"):
        message = (status.get("state") or {}).get("message") or phase
        return Verdict(RunResult(RunState.FAILED, None, f"{phase}: {message}"))
    conditions = _conditions(workload)
    if "Succeeded" in conditions or "Complete" in conditions:
        return Verdict(RunResult(RunState.SUCCEEDED, 0))
    failed = conditions.get("Failed")
    if failed is not None:
        words = failed.get("message") or failed.get("reason") or "failed"
        return Verdict(
            RunResult(RunState.FAILED, None, f"{failed.get('reason') or 'Failed'}: {words}")
        )
    return None


def _phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _pod_failure(pod: Mapping[str, Any]) -> Verdict:
    """Why a failed pod failed, in words; eviction and preemption are the compute's fault."""
    status = pod.get("status") or {}
    name = _pod_name(pod)
    disruption = _conditions(pod).get("DisruptionTarget")
    if status.get("reason") == "Evicted" or disruption is not None:
        why = (
            status.get("message")
            or (disruption or {}).get("message")
            or (disruption or {}).get("reason")
            or ""
        ).strip()
        kind = status.get("reason") or (disruption or {}).get("reason") or "Disrupted"
        if kind == "PreemptionByScheduler":
            kind = "Preempted"
        return Verdict(
            RunResult(
                RunState.FAILED, None, f"{kind}: pod {name}: {why}", infrastructure_failure=True
            )
        )
    init = _failed_init(pod)
    if init is not None:
        container, state = init
        what = (
            "fetching an input artifact"
            if container.startswith(manifest.FETCH_PREFIX)
            else "running"
        )
        why = f"Init:Error: init container {container} failed {what} in pod {name}"
        why += f" (exit code {state.get('exitCode')})"
        if state.get("message"):
            why += f": {state['message'].strip()}"
        return Verdict(
            RunResult(RunState.FAILED, None, why), tail_pod=name, tail_container=container
        )
    terminated = (_container_status(pod).get("state") or {}).get("terminated") or {}
    code = terminated.get("exitCode")
    if terminated.get("reason") == "OOMKilled":
        limit = _memory_limit(pod)
        return Verdict(
            RunResult(
                RunState.FAILED,
                code,
                "OOMKilled: container exceeded its memory limit"
                + (f" ({limit})" if limit else " (no memory limit: the node ran out)"),
            )
        )
    why = f"exit code {code}" if code is not None else f"pod {name} failed"
    if terminated.get("message"):
        why += f": {terminated['message'].strip()}"
    return Verdict(RunResult(RunState.FAILED, code, why), tail_pod=name)


def _failed_init(pod: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The init container that ended with a non-zero code, and its ``terminated`` state."""
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        if terminated.get("exitCode") not in (None, 0):
            return str(status.get("name")), terminated
    return None


def _waiting(pod: Mapping[str, Any]) -> dict[str, Any]:
    """Why the pod does not start: an init container's (an unpullable fetcher image) or
    container configuration failure first, else the job's container's waiting state."""
    statuses = (pod.get("status") or {}).get("initContainerStatuses") or []
    for status in [*statuses, _container_status(pod)]:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in IMAGE_PULL_REASONS | CONFIG_REASONS:
            return waiting
    return (_container_status(pod).get("state") or {}).get("waiting") or {}


def _memory_limit(pod: Mapping[str, Any]) -> str | None:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return ((containers[0].get("resources") or {}).get("limits") or {}).get("memory")


def stuck(pods: list[dict[str, Any]]) -> tuple[str, str, bool] | None:
    """A pod the cluster will not start by itself: (kind, words, infrastructure?), else None.

    Image pulls and container configuration are decided at once (the kubelet
    would retry forever); ``Unschedulable`` is returned for the caller to time.
    """
    for pod in sorted(pods, key=_created):
        if _phase(pod) not in ("Pending", ""):
            continue
        waiting = _waiting(pod)
        reason = waiting.get("reason")
        if reason in IMAGE_PULL_REASONS:
            message = waiting.get("message") or reason
            return reason, f"pod {_pod_name(pod)}: {message}", True
        if reason in CONFIG_REASONS:
            return reason, f"pod {_pod_name(pod)}: {waiting.get('message') or reason}", False
        scheduled = next(
            (
                c
                for c in (pod.get("status") or {}).get("conditions") or []
                if c.get("type") == "PodScheduled" and c.get("status") == "False"
            ),
            None,
        )
        if scheduled is not None and scheduled.get("reason") == "Unschedulable":
            return "Unschedulable", scheduled.get("message") or "no node fits the pod", False
    return None


# -- the run ----------------------------------------------------------------------------


class _Observed:
    """What the run's watches have shown so far."""

    def __init__(self) -> None:
        self.workload: dict[str, Any] | None = None
        self.deleted = False
        self.pods: dict[str, dict[str, Any]] = {}
        self.stuck_since: dict[str, float] = {}

    def see(self, source: str, kind: str, obj: dict[str, Any]) -> None:
        if source == "workload":
            self.deleted = kind == "DELETED"
            self.workload = None if self.deleted else obj
        elif kind == "DELETED":
            self.pods.pop(_pod_name(obj), None)
        else:
            self.pods[_pod_name(obj)] = obj


class KubernetesRun(Run):
    """A workload started (or re-adopted) by the kubernetes runner."""

    def __init__(
        self,
        api: Any,
        where: Where,
        run_id: str,
        options: KubernetesRunnerOptions,
        log: Callable[[str], Any] | None = None,
    ) -> None:
        self.id = f"{where.namespace}/{where.name}"
        self.where = where
        self._api = api
        self._run_id = run_id
        self._options = options
        self._log = log
        self._cancelled = False
        self._result: RunResult | None = None
        self._final = anyio.Event()
        self._readers: set[anyio.Event] = set()
        self._wait_lock = anyio.Lock()
        self._long_calls = anyio.CapacityLimiter(math.inf)
        self._said: set[str] = set()

    def facts(self) -> dict[str, Any]:
        """Namespace, name and kind: what ``kubectl get <kind> -n <namespace> <name>`` takes."""
        return {
            "namespace": self.where.namespace,
            "job_name": self.where.name,
            "kind": self.where.kind,
            "api_version": self.where.api_version,
        }

    # --- API helpers

    def _clients(self) -> tuple[Any, Any, Any]:
        import kubernetes

        return (
            kubernetes.client.BatchV1Api(self._api),
            kubernetes.client.CoreV1Api(self._api),
            kubernetes.client.CustomObjectsApi(self._api),
        )

    def _to_dict(self, obj: Any) -> Any:
        return obj if isinstance(obj, dict) else self._api.sanitize_for_serialization(obj)

    def _pod_selector(self) -> str:
        return f"{RUN_LABEL}={manifest.label_value(self._run_id)}"

    async def _get_workload(self) -> dict[str, Any] | None:
        batch, _, custom = self._clients()
        w = self.where
        try:
            if w.batch_job:
                return self._to_dict(
                    await kube.call(batch.read_namespaced_job, w.name, w.namespace)
                )
            return await kube.call(
                custom.get_namespaced_custom_object,
                w.group,
                w.version,
                w.namespace,
                w.plural,
                w.name,
            )
        except Exception as exc:
            if kube.status_of(exc) == 404:
                return None
            raise

    async def _list_pods(self) -> list[dict[str, Any]]:
        _, core, _ = self._clients()
        listed = await kube.call(
            core.list_namespaced_pod, self.where.namespace, label_selector=self._pod_selector()
        )
        return sorted(self._to_dict(listed)["items"], key=_created)

    async def _say(self, line: str) -> None:
        """One progress line for the job's log (once per distinct line), when someone listens."""
        if self._log is not None and line not in self._said:
            self._said.add(line)
            await self._log(line)

    # --- status and wait

    async def status(self) -> RunState:
        if self._result is not None:
            return self._result.state
        workload = await self._get_workload()
        if workload is None:
            return RunState.CANCELLED if self._cancelled else RunState.FAILED
        pods = await self._list_pods()
        verdict = judge(self.where, workload, pods)
        if verdict is not None:
            return verdict.result.state
        return RunState.RUNNING if any(_phase(p) == "Running" for p in pods) else RunState.PENDING

    async def wait(self) -> RunResult:
        """Until the workload ends (watched, not polled); then how it ended, logs drained."""
        async with self._wait_lock:
            if self._result is None:
                result = await self._watch_to_end()
                self._result = result
                self._final.set()
                with anyio.move_on_after(LOG_EOF_SECONDS):
                    for done in list(self._readers):
                        await done.wait()
        return self._result

    async def _watch_to_end(self) -> RunResult:
        """Watch the workload and its pods together until :meth:`_judge` has a result.

        Each watch feeds one memory stream from its own task; a watch that
        fails for good (a 403, the API lost) ends the run's wait with its error.
        """
        send, receive = anyio.create_memory_object_stream[tuple[str, str, dict[str, Any]]](100)
        errors: list[Exception] = []
        outcome: list[RunResult] = []

        async def feed(out: Any, source: str, events: AsyncIterator[Any]) -> None:
            async with out:
                try:
                    async for kind, obj in events:
                        await out.send((source, kind, obj))
                except Exception as exc:
                    errors.append(exc)

        state = _Observed()
        async with anyio.create_task_group() as tg:
            for source, events in self._watches().items():
                tg.start_soon(feed, send.clone(), source, events)
            send.close()
            async with receive:
                while not errors:
                    with anyio.move_on_after(1.0):  # also times an unschedulable pod
                        try:
                            state.see(*await receive.receive())
                        except anyio.EndOfStream:
                            break
                    result = await self._judge(state)
                    if result is not None:
                        outcome.append(result)
                        break
            tg.cancel_scope.cancel()
        if outcome:
            return outcome[0]
        if errors:
            raise errors[0]
        raise InfrastructureError(f"lost the watch on {self.id}")  # pragma: no cover

    def _watches(self) -> dict[str, AsyncIterator[tuple[str, dict[str, Any]]]]:
        batch, core, custom = self._clients()
        w = self.where
        if w.batch_job:
            workload = watch(
                batch.list_namespaced_job,
                w.namespace,
                field_selector=f"metadata.name={w.name}",
                serialize=self._to_dict,
            )
        else:
            workload = watch(
                custom.list_namespaced_custom_object,
                w.group,
                w.version,
                w.namespace,
                w.plural,
                field_selector=f"metadata.name={w.name}",
            )
        pods = watch(
            core.list_namespaced_pod,
            w.namespace,
            label_selector=self._pod_selector(),
            serialize=self._to_dict,
        )
        return {"workload": workload, "pods": pods}

    async def _judge(self, state: _Observed) -> RunResult | None:
        """The result once the objects seen so far decide it; None while the run goes on."""
        w = self.where
        if state.deleted:
            return self._gone()
        if state.workload is None:
            return None
        pods = list(state.pods.values())
        verdict = judge(w, state.workload, pods)
        if verdict is not None:
            return await self._finish(verdict)
        if self._cancelled:
            return None  # until the workload is gone (or it finished first)
        problem = stuck(pods)
        if problem is None:
            state.stuck_since.clear()
            return None
        reason, words, infrastructure = problem
        await self._say(f"kubernetes: {reason}: {words}")
        since = state.stuck_since.setdefault(reason, anyio.current_time())
        waited = anyio.current_time() - since
        if reason == "Unschedulable" and waited < self._options.pending_timeout_seconds:
            return None
        if reason == "Unschedulable":
            words += f" (pending for {waited:.0f} s; the {w.kind} was deleted)"
        else:
            words += f" (the {w.kind} was deleted)"
        await self._delete(grace=0)
        return RunResult(
            RunState.FAILED, None, f"{reason}: {words}", infrastructure_failure=infrastructure
        )

    def _gone(self) -> RunResult:
        if self._cancelled:
            return RunResult(RunState.CANCELLED, None, "cancelled")
        return RunResult(
            RunState.FAILED,
            None,
            f"{self.where.kind} {self.where.namespace}/{self.where.name} was deleted outside "
            "launchplane before it finished",
            infrastructure_failure=True,
        )

    async def _finish(self, verdict: Verdict) -> RunResult:
        result = verdict.result
        if self._cancelled and result.state is not RunState.SUCCEEDED:
            return RunResult(RunState.CANCELLED, result.exit_code, "cancelled")
        if verdict.tail_pod is None:
            return result
        tail = await self._tail(verdict.tail_pod, verdict.tail_container)
        if not tail:
            return result
        return RunResult(
            result.state,
            result.exit_code,
            f"{result.reason}; last lines of output:\n{tail}",
            result.infrastructure_failure,
        )

    async def _tail(self, pod: str, container: str | None = None) -> str:
        _, core, _ = self._clients()
        which = {"container": container} if container else {}
        try:
            text = await kube.call(
                core.read_namespaced_pod_log,
                pod,
                self.where.namespace,
                tail_lines=TAIL_LINES,
                **which,
            )
        except Exception:
            return ""
        lines = [line if len(line) <= 300 else line[:300] + "..." for line in text.splitlines()]
        return "\n".join(lines[-TAIL_LINES:])

    # --- cancel

    async def cancel(self, grace: float = 10.0) -> None:
        """Delete the Job (propagation per the options) and its pods, with ``grace`` seconds."""
        if self._result is not None:
            return
        workload = await self._get_workload()
        if workload is None or judge(self.where, workload, []) is not None:
            return  # gone, or it ended on its own first: report how it ended
        self._cancelled = True
        await self._delete(grace=max(0, math.ceil(grace)))

    async def _delete(self, grace: int) -> None:
        import kubernetes

        batch, core, custom = self._clients()
        w = self.where
        body = kubernetes.client.V1DeleteOptions(
            propagation_policy=self._options.propagation_policy, grace_period_seconds=grace
        )
        try:
            if w.batch_job:
                await kube.call(batch.delete_namespaced_job, w.name, w.namespace, body=body)
            else:
                await kube.call(
                    custom.delete_namespaced_custom_object,
                    w.group,
                    w.version,
                    w.namespace,
                    w.plural,
                    w.name,
                    body=body,
                )
        except Exception as exc:
            if kube.status_of(exc) != 404:
                raise PluginError(
                    f"cannot delete {w.kind} {w.namespace}/{w.name}: {kube.explain(exc)}"
                ) from None
        for pod in await self._list_pods():
            with contextlib.suppress(Exception):  # gone already (the garbage collector was first)
                await kube.call(
                    core.delete_namespaced_pod,
                    _pod_name(pod),
                    w.namespace,
                    grace_period_seconds=grace,
                )

    # --- logs

    def logs(self) -> AsyncIterator[str]:
        """Every pod's output in creation order, every container instance, from the start.

        The reader is registered now, so a ``wait`` that returns quickly still
        lets it read everything.
        """
        done = anyio.Event()
        self._readers.add(done)
        return self._read_logs(done)

    async def _read_logs(self, done: anyio.Event) -> AsyncIterator[str]:
        read: dict[str, int] = {}  # pod -> container instances read to their end
        try:
            while True:
                final = self._final.is_set()
                progressed = False
                for pod in await self._list_pods():
                    name = _pod_name(pod)
                    status = _container_status(pod)
                    restarts = int(status.get("restartCount") or 0)
                    state = status.get("state") or {}
                    started = "running" in state or "terminated" in state
                    if not started or read.get(name, -1) >= restarts:
                        continue
                    if name not in read and restarts > 0:
                        async for line in self._follow(name, previous=True):
                            yield line
                    async for line in self._follow(name, previous=False):
                        yield line
                    read[name] = restarts
                    progressed = True
                if final and not progressed:
                    return
                if not progressed:
                    with anyio.move_on_after(0.5):
                        await self._final.wait()
        finally:
            done.set()
            self._readers.discard(done)

    async def _follow(self, pod: str, *, previous: bool) -> AsyncIterator[str]:
        _, core, _ = self._clients()
        try:
            response = await kube.call(
                core.read_namespaced_pod_log,
                pod,
                self.where.namespace,
                follow=not previous,
                previous=previous,
                _preload_content=False,
            )
        except Exception as exc:
            if kube.status_of(exc) in (400, 404):
                return  # not started after all, or gone: the next pass looks again
            raise
        chunks = response.stream(64 * 1024, decode_content=True)
        try:
            async for line in read_lines(chunks, self._long_calls):
                yield line
        finally:
            # A reader stopped early (the run ended, the agent stops) may leave a worker
            # blocked on the socket, holding the response's buffer lock: closing it on
            # the event loop would wait for that lock, i.e. for the container's next
            # output. Shut the socket down first (the worker's read returns), then close
            # in a thread, shielded so a cancelled reader still lets go of the stream.
            with contextlib.suppress(Exception):
                _stream_socket(response).shutdown(socket.SHUT_RDWR)
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await anyio.to_thread.run_sync(_close_response, response)


def _stream_socket(response: Any) -> socket.socket:
    """The socket under a streamed ``urllib3`` response.

    ``HTTPResponse.shutdown()`` cannot be used: the ``kubernetes`` client's
    pool has already released the response's connection, so only the
    ``http.client`` file object still leads to the socket.
    """
    return response._fp.fp.raw._sock


def _close_response(response: Any) -> None:
    """Close a streamed response and give its connection back to the pool."""
    response.close()
    response.release_conn()


# -- the runner -------------------------------------------------------------------------


class KubernetesRunner(Runner):
    """Runs each job as a Job (or a custom kind) on the cluster the options name."""

    name: ClassVar[str] = "kubernetes"
    needs_image: ClassVar[bool] = True
    artifact_uri_schemes: ClassVar[tuple[str, ...]] = ("s3", "file")
    """Inputs of an ``s3`` store are fetched in the pod by an init container; of a ``file``
    store mounted from the volume ``artifact_volumes`` maps its root to. Neither is
    downloaded on the agent's host, which a pod cannot see."""
    resource_args_model: ClassVar[type[BaseModel] | None] = manifest.KubernetesArgs
    options_model: ClassVar[type[BaseModel] | None] = KubernetesRunnerOptions

    def __init__(self, options: BaseModel | None = None) -> None:
        super().__init__(options or KubernetesRunnerOptions())
        self._apis: dict[tuple[str | None, str | None], Any] = {}

    @property
    def _options(self) -> KubernetesRunnerOptions:
        assert isinstance(self.options, KubernetesRunnerOptions)
        return self.options

    def _cluster(self, kubeconfig: str | None, context: str | None) -> KubernetesRunnerOptions:
        """The runner's options with the queue's kubeconfig and context, where it names them."""
        return self._options.model_copy(
            update={
                "kubeconfig": kubeconfig or self._options.kubeconfig,
                "context": context or self._options.context,
            }
        )

    def _connect(self, kubeconfig: str | None = None, context: str | None = None) -> Any:
        """One API client per cluster: the agent's, and each one a queue names."""
        key = (kubeconfig, context)
        if key not in self._apis:
            options = self._cluster(kubeconfig, context)
            self._apis[key] = kube.api_client(options, kind="runner", name=self.name)
        return self._apis[key]

    async def aclose(self) -> None:
        apis, self._apis = list(self._apis.values()), {}
        for api in apis:
            await anyio.to_thread.run_sync(api.close)

    def describe(self, job: ResolvedJob, image: Image | None) -> dict[str, Any]:
        """The manifest(s) ``submit`` would create, secrets as references, schema-checked."""
        args = manifest.kubernetes_args(job)
        refs.refuse_native_inputs(job, self.name)
        inputs = manifest.input_artifacts(
            preview_mounts(job), args, fetch_flags=_fetch_flags(job), what=_mount_words
        )
        return manifest.describe(
            job,
            image,
            default_namespace=kube.default_namespace(self._cluster(args.config_file, args.context)),
            schema_version=self._options.schema_version,
            args=args,
            inputs=inputs,
        )

    async def submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> KubernetesRun:
        if image is None:
            raise PluginError(
                "runner 'kubernetes' runs container images but the job has none: set "
                "docker.image in the job, or a builder (docker, kaniko) in the queue"
            )
        refs.refuse_native_inputs(job, self.name)
        args = manifest.kubernetes_args(job)
        inputs = manifest.input_artifacts(
            ctx.mounts, args, fetch_flags=_fetch_flags(job), what=_mount_words
        )
        api = await anyio.to_thread.run_sync(self._connect, args.config_file, args.context)
        cluster = self._cluster(args.config_file, args.context)
        namespace_default = await anyio.to_thread.run_sync(kube.default_namespace, cluster)
        workload = manifest.render(
            job,
            image.pinned,
            run_id=ctx.run_id,
            labels=run_labels(ctx),
            env={**ctx.env, **inputs.env},
            secret_names=ctx.secret_names,
            native_secrets=ctx.native_secrets,
            default_namespace=namespace_default,
            schema_version=self._options.schema_version,
            args=args,
            inputs=inputs,
        )
        where = Where(
            workload.group,
            workload.version,
            workload.kind,
            workload.plural,
            workload.namespace,
            workload.name,
            args.config_file,
            args.context,
        )
        with contextlib.suppress(OSError):
            (ctx.workdir / STATE_FILE).write_text(json.dumps(where.__dict__))
        run = KubernetesRun(api, where, ctx.run_id, self._options, log=ctx.emit)
        await _create(run, workload)
        await ctx.emit(
            f"created {where.kind} {where.namespace}/{where.name} running image {image.pinned}"
        )
        return run

    async def attach(self, run_id: str, run_dir: Path) -> KubernetesRun | None:
        """The workload of ``run_id``: by the noted location (or the deterministic name), if any."""
        try:
            where = Where(**json.loads((run_dir / STATE_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            namespace = await anyio.to_thread.run_sync(kube.default_namespace, self._options)
            where = Where("batch", "v1", "Job", "jobs", namespace, manifest.workload_name(run_id))
        api = await anyio.to_thread.run_sync(self._connect, where.kubeconfig, where.context)
        run = KubernetesRun(api, where, run_id, self._options)
        workload = await run._get_workload()
        if workload is None:
            return None
        labels = (workload.get("metadata") or {}).get("labels") or {}
        if labels.get(RUN_LABEL) != manifest.label_value(run_id):
            return None  # a namesake that is not ours
        return run


def preview_mounts(job: ResolvedJob) -> list[Mount]:
    """For ``describe``: the mounts the artifacts stage will give, the version still unknown.

    A mount of an ``s3`` store gets a placeholder ``s3://`` URI, one of a ``file``
    store a ``file://`` URI under the store's root (what ``artifact_volumes`` maps),
    one of any other store none (the runner refuses it as at launch). An input on a
    queue without a store is left out: the artifacts stage fails it with the fix.
    """
    mounts = []
    for ref in refs.mounted_inputs(job):
        try:
            kind, options, name = refs.store_of(ref, job)
        except PluginError:
            continue
        pending = f"<version of {name}:{ref.alias or LATEST}, {manifest.PENDING.strip('<>')}>"
        uri = None
        if kind == "s3":
            uri = f"s3://{options.get('bucket', '<bucket>')}/{pending}/"
        elif kind == "file":
            uri = f"file://{Path(str(options.get('root', '/'))).expanduser()}/{pending}/"
        mounts.append(Mount(None, refs.input_target(ref), refs.input_env(ref), uri=uri))
    return mounts


def _fetch_flags(job: ResolvedJob) -> list[str]:
    """``--region``/``--endpoint-url`` of the queue's s3 store for the fetcher (no credentials:
    those are the pod's own, IRSA or a Secret)."""
    store = job.artifact_store
    if store is None or store.type != "s3":
        return []
    flags = []
    for option, flag in (("region", "--region"), ("endpoint_url", "--endpoint-url")):
        if store.options.get(option):
            flags += [flag, str(store.options[option])]
    return flags


def _mount_words(mount: Mount) -> str:
    return f"at {mount.target}" + (f" (${mount.env})" if mount.env else "")


async def _create(run: KubernetesRun, workload: manifest.Workload) -> None:
    """Secret, then the workload, then the Secret owned by it; nothing left behind on failure."""
    batch, core, custom = run._clients()
    w = run.where
    secret_name = None
    if workload.secret is not None:
        secret_name = workload.secret["metadata"]["name"]
        try:
            await kube.call(core.create_namespaced_secret, w.namespace, workload.secret)
        except Exception as exc:
            if kube.status_of(exc) != 409:
                raise _submit_error(
                    f"cannot create Secret {w.namespace}/{secret_name}", exc
                ) from None
            await kube.call(core.patch_namespaced_secret, secret_name, w.namespace, workload.secret)
    try:
        if w.batch_job:
            created = run._to_dict(
                await kube.call(batch.create_namespaced_job, w.namespace, workload.body)
            )
        else:
            created = await kube.call(
                custom.create_namespaced_custom_object,
                w.group,
                w.version,
                w.namespace,
                w.plural,
                workload.body,
            )
    except Exception as exc:
        if kube.status_of(exc) == 409:
            created = await run._get_workload()  # an earlier try of this same run made it
        else:
            created = None
        if created is None:
            if secret_name is not None:
                with contextlib.suppress(Exception):
                    await kube.call(core.delete_namespaced_secret, secret_name, w.namespace)
            raise _submit_error(f"cannot create {w.kind} {w.namespace}/{w.name}", exc) from None
    if secret_name is not None:
        owner = {
            "apiVersion": w.api_version,
            "kind": w.kind,
            "name": w.name,
            "uid": created["metadata"]["uid"],
            "controller": False,
            "blockOwnerDeletion": False,
        }
        await kube.call(
            core.patch_namespaced_secret,
            secret_name,
            w.namespace,
            {"metadata": {"ownerReferences": [owner]}},
        )


def _submit_error(what: str, exc: BaseException) -> PluginError:
    status = kube.status_of(exc)
    words = kube.explain(exc) if status is not None else f"{type(exc).__name__}: {exc}"
    if status is None or status >= 500 or status == 429:
        return InfrastructureError(f"{what}: {words}")
    return PluginError(f"{what}: {words}")


@hookimpl
def launchplane_register_runners(register: Any) -> None:
    register(KubernetesRunner)

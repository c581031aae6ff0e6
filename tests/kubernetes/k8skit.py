"""A Kubernetes API on loopback for the tests: kmock's emulator, extended, plus a pod controller.

What is real and what is not (each test that uses this says which parts it leans on):

- The API server is kmock's :class:`kmock.KubernetesEmulator` (an in-memory
  store over real HTTP), reached by the real ``kubernetes`` client through a
  kubeconfig file :func:`write_kubeconfig` writes. kmock alone lacks what a
  runner depends on, so :class:`Emulator` adds it here (written for these
  tests, said so): ``metadata.uid``/``resourceVersion``/``creationTimestamp``
  on every write; watches that start *after* a given ``resourceVersion`` and
  end at ``timeoutSeconds``; ``410 Gone`` for a compacted version
  (:meth:`Emulator.expire_watches`) and dropped streams
  (:meth:`Emulator.drop_watches`); label and field selectors on list and
  watch; ``stringData`` of a Secret stored as base64 ``data``; deletion of
  the objects whose ``ownerReferences`` name a deleted object (garbage
  collection; Foreground and Background both delete at once here); and the
  ``pods/log`` subresource (``follow``, ``container``, ``previous``,
  ``tailLines``), fed by the controller.
- :class:`PodController` stands in for kube-controller-manager's Job
  controller, the scheduler and a kubelet: it turns each ``batch/v1`` Job into
  Pods (``backoffLimit`` honoured), runs the pod's first container on the real
  Docker engine (image, command, args, env with ``secretKeyRef`` /
  ``configMapKeyRef`` read from the emulator, ``limits.memory``), streams its
  real output as the pod log, and reports its real exit code in the
  container status and the Job's conditions. ``activeDeadlineSeconds`` is
  enforced (``DeadlineExceeded``); an image Docker cannot pull is
  ``ErrImagePull``/``ImagePullBackOff`` with Docker's message; a kernel OOM
  kill is ``OOMKilled``. What a single Docker host cannot produce is
  scripted with :meth:`PodController.script`: ``Unschedulable`` with a
  scheduler message, ``Evicted`` and preemption. Deleting a pod stops its
  container after the pod's grace period.
- Init containers and volumes, as a kubelet runs them (written for these
  tests, said so): ``spec.initContainers`` run one after the other, each to
  its end, before the first container starts; a non-zero exit fails the pod
  as a kubelet does with ``restartPolicy: Never`` (phase ``Failed``, the init
  container's ``terminated`` state in ``initContainerStatuses``, the job's
  container ``waiting: PodInitializing``: what ``kubectl`` shows as
  ``Init:Error``), and its output is its own ``pods/log`` container. Volumes
  are host directories bind-mounted into the Docker containers (``readOnly``
  as ``:ro``, ``subPath`` a folder below the volume's): ``emptyDir`` a fresh
  directory per pod, ``hostPath`` the host's path itself, and a
  ``persistentVolumeClaim`` the directory a test registered for the claim with
  :meth:`PodController.register_claim` (there is no storage provisioner; an
  unregistered claim leaves the pod ``ContainerCreating``, as an unbound
  claim does). Other volume types are not emulated.
- :meth:`PodController.handle_image` lets a test run a container of some
  image in Python instead of Docker (the kaniko tests simulate the executor
  so; the artifact tests run the real ``launchplane artifact fetch`` as a host
  process in place of the fetcher image): the handler gets the container, its
  resolved environment and its volumes as host directories.

Nothing here sleeps to synchronise: waits are on events, polls have deadlines.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import itertools
import json
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import anyio
import anyio.abc
import anyio.from_thread
import anyio.to_thread
import kmock
import yaml

CONTAINER_LABEL = "lptest-k8skit"
"""Docker label on every container the controller starts (cleanup finds them by it)."""

RESOURCES: dict[str, tuple[str, set[str]]] = {
    "batch/v1/jobs": ("Job", {"status"}),
    "v1/pods": ("Pod", {"status", "log"}),
    "v1/secrets": ("Secret", set()),
    "v1/configmaps": ("ConfigMap", set()),
    "v1/events": ("Event", set()),
    "kubeflow.org/v1/pytorchjobs": ("PyTorchJob", {"status"}),
    "batch.volcano.sh/v1alpha1/jobs": ("Job", {"status"}),
}
"""The kinds the emulator serves: ``group/version/plural`` -> (kind, subresources)."""


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resource_key(resource: Any) -> str:
    """``group/version/plural`` (``v1/pods`` for the core group) of a kmock resource."""
    group = resource.group or ""
    return f"{group}/{resource.version}/{resource.plural}".lstrip("/")


# -- selectors ------------------------------------------------------------------------


def labels_match(selector: str | None, labels: Mapping[str, str]) -> bool:
    """Equality-based label selector (``a=b,c!=d,e,!f``; ``a in (x,y)`` too) against ``labels``."""
    if not selector:
        return True
    for term in _split_selector(selector):
        term = term.strip()
        if not term:
            continue
        if " in " in term or " notin " in term:
            negate = " notin " in term
            key, _, values = term.partition(" notin " if negate else " in ")
            wanted = {v.strip() for v in values.strip().strip("()").split(",")}
            if (labels.get(key.strip()) in wanted) == negate:
                return False
        elif "!=" in term:
            key, _, value = term.partition("!=")
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, _, value = term.replace("==", "=").partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _split_selector(selector: str) -> list[str]:
    """Split on commas outside ``( )``."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    return [*terms, current]


def fields_match(selector: str | None, obj: Mapping[str, Any]) -> bool:
    """``metadata.name=x`` / ``metadata.namespace=y`` / ``status.phase=z`` (``!=`` too)."""
    if not selector:
        return True
    for term in selector.split(","):
        negate = "!=" in term
        path, _, value = term.partition("!=" if negate else "=")
        current: Any = obj
        for part in path.strip().split("."):
            current = current.get(part) if isinstance(current, Mapping) else None
        if (str(current) == value.strip()) == negate:
            return False
    return True


# -- pod logs -------------------------------------------------------------------------


@dataclass
class ContainerLog:
    """The output of one container instance (a restart starts a new one)."""

    data: bytearray = field(default_factory=bytearray)
    closed: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def write(self, chunk: bytes) -> None:
        self.data += chunk
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


# -- the API server -------------------------------------------------------------------


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator with the parts a runner needs added (see the module docstring)."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, (kind, subresources) in RESOURCES.items():
            self.resources[key] = kmock.ResourceInfo(
                kind=kind, namespaced=True, subresources=subresources
            )
        self.resource_version = 0
        self.compacted = 0
        """Watches from a version at or below this get ``410 Gone``."""
        self.history: list[tuple[int, str, dict[str, Any]]] = []
        """Every change: (resourceVersion, ``group/version/plural``, watch event)."""
        self.changed = asyncio.Event()
        self.generation = 0
        """Bumped by :meth:`expire_watches` / :meth:`drop_watches` to end open watches."""
        self.expired_generation = 0
        self.write_lock = asyncio.Lock()
        self.logs: dict[tuple[str, str, str], list[ContainerLog]] = {}
        self.deletions: list[dict[str, Any]] = []
        """Every DELETE: resource, namespace, name, propagationPolicy, gracePeriodSeconds."""
        self.watch_requests = 0
        self.log_requests: list[dict[str, str]] = []

    # --- test controls

    def expire_watches(self) -> None:
        """Compact history: every open watch gets ``410 Gone``, and so does a resume from before."""
        self.compacted = self.resource_version
        self.expired_generation = self.generation + 1
        self._bump_generation()

    def drop_watches(self) -> None:
        """Close every open watch stream without an error (a load balancer's idle cut)."""
        self._bump_generation()

    def _bump_generation(self) -> None:
        self.generation += 1
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object, or None (deleted or never made)."""
        for (res, ns, obj_name), obj in self.objects.items():
            if resource_key(res) == resource and ns == namespace and obj_name == name:
                return None if obj.deleted else copy.deepcopy(obj.raw)
        return None

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The stored objects of ``resource`` (in ``namespace``, or everywhere)."""
        return [
            copy.deepcopy(obj.raw)
            for (res, ns, _), obj in self.objects.items()
            if resource_key(res) == resource
            and (namespace is None or ns == namespace)
            and not obj.deleted
        ]

    def container_log(self, namespace: str, pod: str, container: str) -> ContainerLog:
        """A new log instance for the container (what a start or restart writes to)."""
        log = ContainerLog()
        self.logs.setdefault((namespace, pod, container), []).append(log)
        return log

    async def follow(self, since: int | None = None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Every change after history index ``since`` (default: from now), in order, forever."""
        index = len(self.history) if since is None else since
        while True:
            while index < len(self.history):
                _, resource, event = self.history[index]
                index += 1
                yield resource, event
            await self.changed.wait()

    # --- serving

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None:
            return await super()._handle(request)
        if request.subresource == "log" and request.method == kmock.method.GET:
            return await self._serve_log(request)
        if request.action not in (kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE):
            return await super()._handle(request)
        async with self.write_lock:
            return await self._write(request)

    async def _write(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        resource = resource_key(request.resource)
        data = request.data if isinstance(request.data, dict) else None
        version = self.resource_version + 1
        if request.action == kmock.action.CREATE and data is not None:
            metadata = data.setdefault("metadata", {})
            if not metadata.get("name") and metadata.get("generateName"):
                metadata["name"] = metadata["generateName"] + secrets.token_hex(3)[:5]
            metadata.setdefault("namespace", request.namespace or "default")
            metadata.update(
                uid=str(uuid.uuid4()), resourceVersion=str(version), creationTimestamp=_now()
            )
            _stringdata_to_data(resource, data)
        elif request.action == kmock.action.UPDATE and data is not None:
            data.setdefault("metadata", {})["resourceVersion"] = str(version)
            data["metadata"].pop("uid", None)
            _stringdata_to_data(resource, data)
        elif request.action == kmock.action.DELETE:
            body = data or {}
            self.deletions.append(
                {
                    "resource": resource,
                    "namespace": request.namespace,
                    "name": request.name,
                    "propagationPolicy": request.params.get("propagationPolicy")
                    or body.get("propagationPolicy"),
                    "gracePeriodSeconds": request.params.get("gracePeriodSeconds")
                    or body.get("gracePeriodSeconds"),
                }
            )
        response = await super()._handle(request)
        if response.status >= 400 or request.action is None:
            return response
        name = request.name or (data or {}).get("metadata", {}).get("name")
        namespace = request.namespace or (data or {}).get("metadata", {}).get("namespace")
        if request.action == kmock.action.DELETE:
            last = self._last(request.resource, namespace, name)
            if last is not None:
                self._record("DELETED", resource, last, version)
                self._collect(last["metadata"].get("uid"), version)
        else:
            current = self.get(resource, namespace, name)
            if current is not None:
                kind = "ADDED" if request.action == kmock.action.CREATE else "MODIFIED"
                self._record(kind, resource, current, version)
        return response

    def _last(self, resource: Any, namespace: str | None, name: str | None) -> dict | None:
        for (res, ns, obj_name), obj in self.objects.items():
            if res == resource and ns == namespace and obj_name == name:
                return copy.deepcopy(dict(obj.last.raw))
        return None

    def _record(self, kind: str, resource: str, obj: dict[str, Any], version: int) -> None:
        obj.setdefault("metadata", {})["resourceVersion"] = str(version)
        self.resource_version = version
        self.history.append((version, resource, {"type": kind, "object": obj}))
        self._wake()

    def _collect(self, owner_uid: str | None, version: int) -> None:
        """Delete what the deleted object owned, and what that owned (the garbage collector)."""
        if not owner_uid:
            return
        for (res, _, _), obj in list(self.objects.items()):
            if obj.deleted:
                continue
            owners = obj.raw.get("metadata", {}).get("ownerReferences") or []
            if any(owner.get("uid") == owner_uid for owner in owners):
                last = copy.deepcopy(dict(obj.raw))
                obj.delete()
                version += 1
                self._record("DELETED", resource_key(res), last, version)
                self._collect(last["metadata"].get("uid"), version)

    async def _serve_list(self, request: kmock.Request) -> dict[str, Any]:
        async with self.write_lock:
            return {
                "apiVersion": "v1",
                "kind": "List",
                "metadata": {"resourceVersion": str(self.resource_version)},
                "items": self._matching(request),
            }

    def _matching(self, request: kmock.Request) -> list[dict[str, Any]]:
        resource = resource_key(request.resource)
        return [
            obj for obj in self.list(resource, request.namespace) if self._selected(request, obj)
        ]

    @staticmethod
    def _selected(request: kmock.Request, obj: Mapping[str, Any]) -> bool:
        metadata = obj.get("metadata", {})
        return (
            (request.name is None or metadata.get("name") == request.name)
            and (request.namespace is None or metadata.get("namespace") == request.namespace)
            and labels_match(request.params.get("labelSelector"), metadata.get("labels") or {})
            and fields_match(request.params.get("fieldSelector"), obj)
        )

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[bytes]:
        yield b""  # the headers go out at once, as a real API server sends them
        self.watch_requests += 1
        resource = resource_key(request.resource)
        since = request.params.get("resourceVersion")
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        generation = self.generation
        if since and since != "0" and int(since) <= self.compacted:
            yield _line(_gone(int(since), self.resource_version))
            return
        if since and since != "0":
            index = next((i for i, e in enumerate(self.history) if e[0] > int(since)), None)
            index = len(self.history) if index is None else index
        else:
            index = len(self.history)
            for obj in self._matching(request):
                yield _line({"type": "ADDED", "object": obj})
        deadline = None if timeout is None else anyio.current_time() + timeout
        while True:
            while index < len(self.history):
                _, event_resource, event = self.history[index]
                index += 1
                if event_resource == resource and self._selected(request, event["object"]):
                    yield _line(event)
            if self.generation != generation:
                if self.expired_generation > generation:
                    yield _line(_gone(self.compacted, self.resource_version))
                return
            changed = self.changed
            if deadline is None:
                await changed.wait()
                continue
            with anyio.move_on_after(deadline - anyio.current_time()) as scope:
                await changed.wait()
            if scope.cancelled_caught:
                return

    async def _serve_log(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        params = dict(request.params)
        self.log_requests.append({"pod": request.name or "", **params})
        namespace, pod_name = request.namespace or "default", request.name or ""
        pod = self.get("v1/pods", namespace, pod_name)
        if pod is None:
            raise kmock.KubernetesError(
                status=404, reason="NotFound", message=f'pods "{pod_name}" not found'
            )
        containers = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
        container = params.get("container") or (containers[0] if containers else "")
        instances = self.logs.get((namespace, pod_name, container), [])
        previous = params.get("previous") == "true"
        if len(instances) < (2 if previous else 1):
            what = "previous terminated container" if previous else "container"
            raise kmock.KubernetesError(
                status=400,
                reason="BadRequest",
                message=f'{what} "{container}" in pod "{pod_name}" is waiting to start: '
                "ContainerCreating",
            )
        log = instances[-2] if previous else instances[-1]
        raw: Any = request._raw_request
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(raw)
        tail = params.get("tailLines")
        sent = 0
        if tail is not None:
            lines = bytes(log.data).splitlines(keepends=True)
            start = b"".join(lines[-int(tail) :]) if int(tail) else b""
            await response.write(start)
            sent = len(log.data)
        follow = params.get("follow") == "true"
        while True:
            if len(log.data) > sent:
                chunk = bytes(log.data[sent:])
                sent += len(chunk)
                await response.write(chunk)
            if log.closed or not follow:
                break
            await log.changed.wait()
        await response.write_eof()
        return response


def _line(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event).encode() + b"\n"


def _gone(since: int, current: int) -> dict[str, Any]:
    return {
        "type": "ERROR",
        "object": {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": f"too old resource version: {since} ({current})",
            "reason": "Expired",
            "code": 410,
        },
    }


def _stringdata_to_data(resource: str, body: dict[str, Any]) -> None:
    """What the API server does with a Secret's ``stringData``: merge it into base64 ``data``."""
    if resource != "v1/secrets" or not isinstance(body.get("stringData"), dict):
        return
    data = body.setdefault("data", {}) or {}
    for key, value in body.pop("stringData").items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    body["data"] = data


def write_kubeconfig(path: Path, url: str, namespace: str = "default") -> Path:
    """A kubeconfig whose current context ``kmock`` points the real client at ``url``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [
            {
                "name": "kmock",
                "context": {"cluster": "kmock", "user": "tester", "namespace": namespace},
            }
        ],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


# -- the test-side controller ----------------------------------------------------------


@dataclass(frozen=True)
class Unschedulable:
    """The scheduler finds no node: the pod stays Pending with this message."""

    message: str = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


@dataclass(frozen=True)
class Evicted:
    """The kubelet evicts the pod once its container printed ``after_lines`` lines."""

    message: str = "The node was low on resource: memory. "
    after_lines: int = 1
    reason: str = "Evicted"
    """``Evicted``, or ``Preempted`` (scheduler preemption, with a DisruptionTarget condition)."""


Scenario = Unschedulable | Evicted


@dataclass(frozen=True)
class Outcome:
    """How a container a :meth:`PodController.handle_image` handler ran ended."""

    exit_code: int = 0
    lines: tuple[str, ...] = ()
    """Printed after anything the handler already sent with :meth:`HandledPod.log`."""
    termination_message: str | None = None
    """What the kubelet reads from ``/dev/termination-log`` (kaniko's ``--digest-file``)."""


@dataclass
class HandledPod:
    """What an image handler receives: the pod, the emulator, and the container's log."""

    manifest: dict[str, Any]
    emulator: Emulator
    _log: ContainerLog
    container: dict[str, Any] = field(default_factory=dict)
    """The container the handler runs (an init container, or the pod's first)."""
    env: dict[str, str] = field(default_factory=dict)
    """Its environment as the kubelet resolved it (Secrets, ConfigMaps)."""
    mounts: dict[str, Path] = field(default_factory=dict)
    """Its ``volumeMounts``: path in the container -> the host directory standing in."""

    async def log(self, line: str) -> None:
        """Send one line of the container's output now (streamed to ``pods/log`` readers)."""
        self._log.write(line.encode() + b"\n")

    def host_path(self, path: str) -> Path | None:
        """Where ``path`` of the container is on the host, when a volume holds it."""
        for mount_path, host in sorted(self.mounts.items(), key=lambda m: -len(m[0])):
            if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
                return host / path[len(mount_path) :].lstrip("/")
        return None


ImageHandler = Callable[[HandledPod], Awaitable[Outcome]]


class PodController:
    """Jobs to Pods to Docker containers: a stand-in for controller-manager, scheduler, kubelet."""

    def __init__(self, emulator: Emulator, url: str, docker: Any, work: Path | None = None) -> None:
        self.emulator = emulator
        self.work = work or Path(tempfile.mkdtemp(prefix="k8skit-"))
        """Where ``emptyDir`` volumes live: ``<work>/<pod>/<volume>``."""
        self.claims: dict[str, Path] = {}
        """PersistentVolumeClaim name -> the host directory that is its volume."""
        self.url = url.rstrip("/")
        self.docker = docker
        self.scripts: list[tuple[Callable[[dict[str, Any]], bool], Scenario]] = []
        self.handlers: list[tuple[Callable[[str], bool], ImageHandler]] = []
        self.pod_created: dict[str, float] = {}
        """Pod name -> ``anyio.current_time()`` when the controller created it."""
        self.job_seen: dict[str, float] = {}
        """Job name -> ``anyio.current_time()`` when the controller saw it created."""
        self._session: aiohttp.ClientSession | None = None
        self._stops: dict[str, anyio.Event] = {}
        self._names = itertools.count()

    def script(self, predicate: Callable[[dict[str, Any]], bool], scenario: Scenario) -> None:
        """Pods for which ``predicate(pod)`` is true meet ``scenario`` instead of running."""
        self.scripts.append((predicate, scenario))

    def register_claim(self, name: str, directory: Path) -> None:
        """Pods that mount the PersistentVolumeClaim ``name`` get ``directory`` (bound)."""
        self.claims[name] = directory

    def handle_image(self, predicate: Callable[[str], bool], handler: ImageHandler) -> None:
        """Run pods whose first container's image satisfies ``predicate`` with ``handler``.

        The handler gets a :class:`HandledPod` (the pod manifest, the emulator and
        ``log(line)``) and returns an :class:`Outcome`; the controller writes the
        container status (exit code, termination message) and the Job's conditions
        from it as it does for a Docker container.
        """
        self.handlers.append((predicate, handler))

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED):
        """Watch the emulator's changes and act on them until cancelled."""
        async with aiohttp.ClientSession() as session, anyio.create_task_group() as tg:
            self._session = session
            changes = self.emulator.follow()
            task_status.started()
            async for resource, event in changes:
                obj = event["object"]
                if resource == "batch/v1/jobs" and event["type"] == "ADDED":
                    self.job_seen[obj["metadata"]["name"]] = anyio.current_time()
                    tg.start_soon(self._run_job, obj)
                elif resource == "v1/pods" and event["type"] == "DELETED":
                    stop = self._stops.get(obj["metadata"]["name"])
                    if stop is not None:
                        stop.set()

    # --- API writes (over HTTP, as controllers do)

    async def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        assert self._session is not None
        headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
        async with self._session.request(
            method, self.url + path, json=body, headers=headers
        ) as response:
            data = await response.json(content_type=None)
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: {response.status} {data}")
            return data

    async def _patch_status(self, kind: str, namespace: str, name: str, status: dict) -> None:
        base = "/apis/batch/v1" if kind == "jobs" else "/api/v1"
        with contextlib.suppress(RuntimeError):  # deleted meanwhile
            await self._request(
                "PATCH", f"{base}/namespaces/{namespace}/{kind}/{name}/status", {"status": status}
            )

    # --- the Job controller

    async def _run_job(self, job: dict[str, Any]) -> None:
        metadata, spec = job["metadata"], job.get("spec", {})
        namespace, name = metadata["namespace"], metadata["name"]
        backoff_limit = spec.get("backoffLimit", 6)
        deadline = spec.get("activeDeadlineSeconds")
        started = _now()
        await self._patch_status("jobs", namespace, name, {"startTime": started, "active": 1})
        expired = anyio.Event()
        failed = 0
        async with anyio.create_task_group() as tg:
            if deadline:
                tg.start_soon(self._enforce_deadline, job, deadline, expired)
            while True:
                phase = await self._run_pod(job)
                if expired.is_set():
                    break
                if phase == "Succeeded":
                    status = {
                        "active": 0,
                        "succeeded": 1,
                        "completionTime": _now(),
                        "conditions": [_condition("Complete", "", "")],
                    }
                    await self._patch_status("jobs", namespace, name, status)
                    break
                if phase is None:  # pod deleted, stuck or the job is gone
                    break
                failed += 1
                await self._patch_status("jobs", namespace, name, {"failed": failed})
                if failed > backoff_limit:
                    condition = _condition(
                        "Failed",
                        "BackoffLimitExceeded",
                        "Job has reached the specified backoff limit",
                    )
                    await self._patch_status(
                        "jobs", namespace, name, {"active": 0, "conditions": [condition]}
                    )
                    break
            tg.cancel_scope.cancel()
        if expired.is_set() and self.emulator.get("batch/v1/jobs", namespace, name):
            condition = _condition(
                "Failed", "DeadlineExceeded", "Job was active longer than specified deadline"
            )
            await self._patch_status(
                "jobs",
                namespace,
                name,
                {"active": 0, "failed": failed + 1, "conditions": [condition]},
            )

    async def _enforce_deadline(self, job: dict[str, Any], deadline: float, expired: Any) -> None:
        """``activeDeadlineSeconds`` as the Job controller (1.31+) enforces it.

        At the deadline the Job gets a ``FailureTarget`` condition at once and its
        pods are deleted (the kubelet stops them with their grace); ``Failed``
        follows once they are gone. Cancelling the pod's task instead would wait
        for the container to end on its own and leave it running.
        """
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        await anyio.sleep(deadline)
        expired.set()
        condition = _condition(
            "FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline"
        )
        await self._patch_status("jobs", namespace, name, {"conditions": [condition]})
        for pod in self.emulator.list("v1/pods", namespace):
            if pod["metadata"].get("labels", {}).get("job-name") == name:
                with contextlib.suppress(RuntimeError):
                    await self._request(
                        "DELETE", f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}"
                    )

    async def _run_pod(self, job: dict[str, Any]) -> str | None:
        """Create one pod of the job and run it to its end: its final phase (None: no end)."""
        metadata = job["metadata"]
        namespace, job_name = metadata["namespace"], metadata["name"]
        template = copy.deepcopy(job.get("spec", {}).get("template", {}))
        labels = {
            **(template.get("metadata", {}).get("labels") or {}),
            "job-name": job_name,
            "batch.kubernetes.io/job-name": job_name,
            "controller-uid": metadata["uid"],
        }
        pod_name = f"{job_name}-{secrets.token_hex(3)[:5]}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                **template.get("metadata", {}),
                "name": pod_name,
                "namespace": namespace,
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": job_name,
                        "uid": metadata["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template.get("spec", {}),
            "status": {"phase": "Pending"},
        }
        stop = self._stops[pod_name] = anyio.Event()
        try:
            pod = await self._request("POST", f"/api/v1/namespaces/{namespace}/pods", pod)
            self.pod_created[pod_name] = anyio.current_time()
            scenario = next((s for p, s in self.scripts if p(pod)), None)
            if isinstance(scenario, Unschedulable):
                await self._patch_status(
                    "pods",
                    namespace,
                    pod_name,
                    {
                        "conditions": [
                            _condition("PodScheduled", "Unschedulable", scenario.message, "False")
                        ]
                    },
                )
                await stop.wait()
                return None
            await self._patch_status(
                "pods",
                namespace,
                pod_name,
                {"conditions": [_condition("PodScheduled", "", "")], "startTime": _now()},
            )
            return await self._kubelet(pod, stop, scenario)
        finally:
            self._stops.pop(pod_name, None)

    # --- the kubelet

    async def _kubelet(
        self, pod: dict[str, Any], stop: anyio.Event, scenario: Scenario | None
    ) -> str | None:
        namespace, pod_name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        image = container.get("image", "")
        handler = next((h for p, h in self.handlers if p(image)), None)

        async def waiting(reason: str, message: str) -> None:
            state = {"waiting": {"reason": reason, "message": message}}
            await self._patch_status(
                "pods", namespace, pod_name, {"containerStatuses": [_status(container, state)]}
            )

        await waiting("ContainerCreating", "")
        volumes = self._volumes(pod)
        if volumes is None:  # an unbound claim: the kubelet waits for it
            await waiting("ContainerCreating", "")
            await stop.wait()
            return None
        initialized = await self._init_containers(pod, container, volumes, stop)
        if initialized != "Initialized":
            return initialized
        log = self.emulator.container_log(namespace, pod_name, container["name"])
        if handler is not None:
            await self._running(pod, container, image)
            handled = HandledPod(
                pod,
                self.emulator,
                log,
                container,
                self._env(pod, container),
                self._mounts(container, volumes),
            )
            outcome = await handler(handled)
            for line in outcome.lines:
                log.write(line.encode() + b"\n")
            log.close()
            return await self._terminated(
                pod, container, outcome.exit_code, None, outcome.termination_message
            )
        try:
            await anyio.to_thread.run_sync(self._ensure_image, image)
        except Exception as exc:
            message = f'Failed to pull image "{image}": {_docker_message(exc)}'
            await waiting("ErrImagePull", message)
            await waiting("ImagePullBackOff", f'Back-off pulling image "{image}"')
            self.emulator.logs.pop((namespace, pod_name, container["name"]), None)
            await stop.wait()
            return None
        env = self._env(pod, container)
        binds = self._binds(container, volumes)
        docker_container = await anyio.to_thread.run_sync(
            self._create_container, pod, container, image, env, binds
        )
        try:
            await anyio.to_thread.run_sync(docker_container.start)
            await self._running(pod, container, image)
            return await self._watch_container(
                pod, container, docker_container, log, stop, scenario
            )
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await anyio.to_thread.run_sync(lambda: docker_container.remove(force=True))

    # --- volumes and init containers

    def _volumes(self, pod: dict[str, Any]) -> dict[str, Path] | None:
        """Each volume of the pod as a host directory; None while a claim is unbound."""
        found: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes") or []:
            name = volume["name"]
            if "emptyDir" in volume:
                found[name] = self.work / pod["metadata"]["name"] / name
                found[name].mkdir(parents=True, exist_ok=True)
            elif "hostPath" in volume:
                found[name] = Path(volume["hostPath"]["path"])
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if claim not in self.claims:
                    return None
                found[name] = self.claims[claim]
        return found

    @staticmethod
    def _mounts(container: dict[str, Any], volumes: Mapping[str, Path]) -> dict[str, Path]:
        """``volumeMounts`` of the container: path in it -> host directory (``subPath`` below)."""
        return {
            m["mountPath"]: volumes[m["name"]] / m.get("subPath", "")
            for m in container.get("volumeMounts") or []
            if m["name"] in volumes
        }

    def _binds(self, container: dict[str, Any], volumes: Mapping[str, Path]) -> list[str]:
        """Docker's ``host:container:ro|rw`` of each volume mount."""
        mounts = container.get("volumeMounts") or []
        read_only = {m["mountPath"]: m.get("readOnly", False) for m in mounts}
        return [
            f"{host}:{path}:{'ro' if read_only[path] else 'rw'}"
            for path, host in self._mounts(container, volumes).items()
        ]

    async def _init_containers(
        self,
        pod: dict[str, Any],
        first: dict[str, Any],
        volumes: Mapping[str, Path],
        stop: anyio.Event,
    ) -> str | None:
        """Run ``spec.initContainers`` in order: ``"Initialized"`` when all exited 0,
        ``"Failed"`` when one did not, None (no end) when an image cannot be pulled."""
        namespace, pod_name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        inits = pod["spec"].get("initContainers") or []
        statuses = [_status(c, {"waiting": {"reason": "PodInitializing"}}) for c in inits]
        for index, container in enumerate(inits):
            statuses[index] = _status(container, {"running": {"startedAt": _now()}})
            await self._patch_status(
                "pods", namespace, pod_name, {"initContainerStatuses": statuses}
            )
            code = await self._run_to_end(pod, container, volumes)
            if isinstance(code, str):  # the image cannot be pulled: the kubelet backs off
                message = f'Failed to pull image "{container.get("image")}": {code}'
                statuses[index] = _status(
                    container, {"waiting": {"reason": "ErrImagePull", "message": message}}
                )
                await self._patch_status(
                    "pods", namespace, pod_name, {"initContainerStatuses": statuses}
                )
                await stop.wait()
                return None
            terminated = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": _now(),
                "finishedAt": _now(),
            }
            statuses[index] = _status(container, {"terminated": terminated})
            status: dict[str, Any] = {"initContainerStatuses": statuses}
            if code != 0:
                waiting = {"waiting": {"reason": "PodInitializing"}}
                status.update(phase="Failed", containerStatuses=[_status(first, waiting)])
                await self._patch_status("pods", namespace, pod_name, status)
                return "Failed"
            await self._patch_status("pods", namespace, pod_name, status)
        return "Initialized"

    async def _run_to_end(
        self, pod: dict[str, Any], container: dict[str, Any], volumes: Mapping[str, Path]
    ) -> int | str:
        """Run one (init) container to its end, its output its own ``pods/log``: the exit
        code, or Docker's words when its image cannot be pulled."""
        namespace, pod_name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        log = self.emulator.container_log(namespace, pod_name, container["name"])
        image = container.get("image", "")
        handler = next((h for p, h in self.handlers if p(image)), None)
        env = self._env(pod, container)
        try:
            if handler is not None:
                handled = HandledPod(
                    pod, self.emulator, log, container, env, self._mounts(container, volumes)
                )
                outcome = await handler(handled)
                for line in outcome.lines:
                    log.write(line.encode() + b"\n")
                return outcome.exit_code
            try:
                await anyio.to_thread.run_sync(self._ensure_image, image)
            except Exception as exc:
                return _docker_message(exc)
            binds = self._binds(container, volumes)
            docker_container = await anyio.to_thread.run_sync(
                self._create_container, pod, container, image, env, binds
            )
            try:
                await anyio.to_thread.run_sync(docker_container.start)

                def pump() -> int:
                    for chunk in docker_container.logs(stream=True, follow=True):
                        anyio.from_thread.run_sync(log.write, chunk)
                    return int(docker_container.wait().get("StatusCode", 1))

                return await anyio.to_thread.run_sync(pump)
            finally:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await anyio.to_thread.run_sync(lambda: docker_container.remove(force=True))
        finally:
            log.close()

    async def _running(self, pod: dict[str, Any], container: dict[str, Any], image: str) -> None:
        state = {"running": {"startedAt": _now()}}
        await self._patch_status(
            "pods",
            pod["metadata"]["namespace"],
            pod["metadata"]["name"],
            {"phase": "Running", "containerStatuses": [_status(container, state, image)]},
        )

    async def _watch_container(
        self,
        pod: dict[str, Any],
        container: dict[str, Any],
        docker_container: Any,
        log: ContainerLog,
        stop: anyio.Event,
        scenario: Scenario | None,
    ) -> str | None:
        lines = 0
        evict = anyio.Event()

        def pump() -> None:
            nonlocal lines
            for chunk in docker_container.logs(stream=True, follow=True):
                anyio.from_thread.run_sync(log.write, chunk)
                lines += chunk.count(b"\n")
                if isinstance(scenario, Evicted) and lines >= scenario.after_lines:
                    anyio.from_thread.run_sync(evict.set)

        async def pump_then_wait() -> dict[str, Any]:
            await anyio.to_thread.run_sync(pump)
            return await anyio.to_thread.run_sync(docker_container.wait)

        result: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:

            async def finish() -> None:
                result["wait"] = await pump_then_wait()
                tg.cancel_scope.cancel()

            async def stopper(event: anyio.Event, why: str) -> None:
                await event.wait()
                result["stopped"] = why
                grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
                if why == "deleted":
                    grace = int(self._grace(pod) if self._grace(pod) is not None else grace)
                await anyio.to_thread.run_sync(lambda: docker_container.stop(timeout=grace))

            async def reaper() -> None:
                # Cancelled from outside (a test ended early, the cluster stops): the
                # worker threads above block on the container's logs and wait, which
                # no cancellation interrupts. Killing the container ends both.
                try:
                    await anyio.sleep_forever()
                finally:
                    if "wait" not in result:
                        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                            await anyio.to_thread.run_sync(docker_container.kill)
                            # kill only signals: the container is gone once wait returns
                            await anyio.to_thread.run_sync(
                                lambda: docker_container.wait(timeout=10)
                            )

            tg.start_soon(finish)
            tg.start_soon(stopper, stop, "deleted")
            tg.start_soon(stopper, evict, "evicted")
            tg.start_soon(reaper)
        log.close()
        if result.get("stopped") == "deleted":
            return None
        await anyio.to_thread.run_sync(docker_container.reload)
        state = docker_container.attrs.get("State", {})
        exit_code = int(state.get("ExitCode", result.get("wait", {}).get("StatusCode", 1)))
        if result.get("stopped") == "evicted":
            assert isinstance(scenario, Evicted)
            return await self._evicted(pod, container, exit_code, scenario)
        reason = "OOMKilled" if state.get("OOMKilled") else None
        return await self._terminated(pod, container, exit_code, reason, None)

    def _grace(self, pod: dict[str, Any]) -> int | None:
        """The grace of the pod's deletion, or of its Job's (the garbage collector's cascade)."""
        names = {("v1/pods", pod["metadata"]["name"])} | {
            ("batch/v1/jobs", owner["name"]) for owner in pod["metadata"].get("ownerReferences", [])
        }
        for deletion in reversed(self.emulator.deletions):
            if (deletion["resource"], deletion["name"]) in names:
                grace = deletion["gracePeriodSeconds"]
                return None if grace is None else int(grace)
        return None

    async def _terminated(
        self,
        pod: dict[str, Any],
        container: dict[str, Any],
        exit_code: int,
        reason: str | None,
        message: str | None,
    ) -> str:
        phase = "Succeeded" if exit_code == 0 else "Failed"
        terminated: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": _now(),
            "finishedAt": _now(),
        }
        if message:
            terminated["message"] = message
        await self._patch_status(
            "pods",
            pod["metadata"]["namespace"],
            pod["metadata"]["name"],
            {
                "phase": phase,
                "containerStatuses": [
                    _status(container, {"terminated": terminated}, container.get("image"))
                ],
            },
        )
        return phase

    async def _evicted(
        self, pod: dict[str, Any], container: dict[str, Any], exit_code: int, scenario: Evicted
    ) -> str:
        status: dict[str, Any] = {
            "phase": "Failed",
            "reason": scenario.reason,
            "message": scenario.message,
            "containerStatuses": [
                _status(
                    container,
                    {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": "Error",
                            "finishedAt": _now(),
                        }
                    },
                )
            ],
        }
        if scenario.reason == "Preempted":
            status["conditions"] = [
                _condition("DisruptionTarget", "PreemptionByScheduler", scenario.message)
            ]
            status.pop("reason")
        await self._patch_status(
            "pods", pod["metadata"]["namespace"], pod["metadata"]["name"], status
        )
        return "Failed"

    # --- Docker

    def _ensure_image(self, image: str) -> None:
        import docker.errors

        try:
            self.docker.images.get(image)
        except docker.errors.ImageNotFound:
            self.docker.images.pull(image)

    def _env(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        """The container's environment as a kubelet resolves it (Secrets, ConfigMaps, fields)."""
        namespace = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            if "secretRef" in source:
                secret = self.emulator.get("v1/secrets", namespace, source["secretRef"]["name"])
                for key, value in ((secret or {}).get("data") or {}).items():
                    env[key] = base64.b64decode(value).decode()
            if "configMapRef" in source:
                config = self.emulator.get(
                    "v1/configmaps", namespace, source["configMapRef"]["name"]
                )
                env.update((config or {}).get("data") or {})
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
                continue
            ref = item.get("valueFrom") or {}
            if "secretKeyRef" in ref:
                secret = self.emulator.get("v1/secrets", namespace, ref["secretKeyRef"]["name"])
                value = ((secret or {}).get("data") or {}).get(ref["secretKeyRef"]["key"])
                if value is not None:
                    env[item["name"]] = base64.b64decode(value).decode()
            elif "configMapKeyRef" in ref:
                config = self.emulator.get(
                    "v1/configmaps", namespace, ref["configMapKeyRef"]["name"]
                )
                value = ((config or {}).get("data") or {}).get(ref["configMapKeyRef"]["key"])
                if value is not None:
                    env[item["name"]] = value
            elif "fieldRef" in ref:
                path = ref["fieldRef"]["fieldPath"]
                env[item["name"]] = {
                    "metadata.name": pod["metadata"]["name"],
                    "metadata.namespace": namespace,
                }.get(path, "")
        return env

    def _create_container(
        self,
        pod: dict[str, Any],
        container: dict[str, Any],
        image: str,
        env: dict[str, str],
        binds: list[str] | None = None,
    ) -> Any:
        limits = (container.get("resources") or {}).get("limits") or {}
        memory = limits.get("memory")
        kwargs: dict[str, Any] = {}
        if memory:
            kwargs["mem_limit"] = _docker_memory(str(memory))
            kwargs["memswap_limit"] = kwargs["mem_limit"]
        if container.get("command"):
            kwargs["entrypoint"] = container["command"]
        if container.get("args") is not None:
            kwargs["command"] = container["args"]
        elif container.get("command"):
            kwargs["command"] = []
        if container.get("workingDir"):
            kwargs["working_dir"] = container["workingDir"]
        if binds:
            kwargs["volumes"] = binds
        return self.docker.containers.create(
            image,
            environment=env,
            name=f"k8skit-{pod['metadata']['name']}-{next(self._names)}",
            labels={CONTAINER_LABEL: "1"},
            detach=True,
            **kwargs,
        )


def _docker_memory(quantity: str) -> str:
    """A Kubernetes memory quantity (``64Mi``, ``1Gi``, ``500M``) as Docker's ``mem_limit``."""
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "K": 1000, "M": 1000**2, "G": 1000**3}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return str(int(float(quantity[: -len(suffix)]) * factor))
    return str(int(float(quantity)))


def _docker_message(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


def _condition(kind: str, reason: str, message: str, status: str = "True") -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": _now(),
    }


def _status(container: dict[str, Any], state: dict[str, Any], image: str | None = None) -> dict:
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": image or "",
        "ready": "running" in state,
        "restartCount": 0,
        "started": "running" in state,
        "state": state,
    }


def cleanup_containers(docker: Any) -> None:
    """Remove every container the controller started (a test that failed may leave some)."""
    for container in docker.containers.list(all=True, filters={"label": CONTAINER_LABEL}):
        with contextlib.suppress(Exception):
            container.remove(force=True)


@dataclass
class Cluster:
    """What the ``kube`` fixture yields: the emulator, its URL, a kubeconfig, the controller."""

    emulator: Emulator
    url: str
    kubeconfig: Path
    controller: PodController

    async def wait_for(
        self, check: Callable[[], Any], timeout: float = 20, what: str = "the cluster"
    ) -> Any:
        """Poll ``check()`` (sync) until it returns something truthy; fail after ``timeout``."""
        with anyio.move_on_after(timeout):
            while True:
                value = check()
                if value:
                    return value
                await anyio.sleep(0.02)
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


@contextlib.asynccontextmanager
async def cluster(tmp: Path, docker: Any) -> AsyncIterator[Cluster]:
    """An emulator on a loopback port, its kubeconfig in ``tmp``, and a running controller."""
    # Not strict: API errors (404, 409, 410) are answers here, not failures of the emulator.
    async with Emulator(strict=False) as emulator, kmock.Server(emulator) as server:
        url = str(server.url).rstrip("/")
        kubeconfig = write_kubeconfig(tmp / "kubeconfig", url)
        controller = PodController(emulator, url, docker, tmp / "kubelet")
        async with anyio.create_task_group() as tg:
            await tg.start(controller.run)
            try:
                yield Cluster(emulator, url, kubeconfig, controller)
            finally:
                tg.cancel_scope.cancel()
        bugs = [e for e in emulator.errors if not isinstance(e, kmock.KubernetesError)]
        assert not bugs, f"the emulator failed to serve: {bugs!r}"

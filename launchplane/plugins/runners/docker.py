"""The ``docker`` runner: a job as a container on a Docker engine.

Container
    Named ``lp-<job_id>-<attempt>`` (the run id) and labelled
    ``launchplane.job_id``, ``launchplane.attempt``, ``launchplane.run_id``,
    ``launchplane.queue`` (plus labels from ``launchplane_prepare_job`` and
    ``resource_args.docker.labels``), so a restarted agent finds it again
    (:meth:`DockerRunner.attach`). It runs the image the builder produced,
    by its pin (registry digest or local image id). The command is
    ``command`` + ``args``, else ``entry_point`` + ``args`` (a ``.py`` entry
    point runs with ``python``), else the image's own ``CMD``
    (:func:`launchplane.core.launch.job_argv`). ``init`` (tini)
    is on by default, so SIGTERM reaches the job and zombies are reaped.

Environment
    ``PYTHONUNBUFFERED=1`` (output reaches the log line by line), then
    ``resource_args.docker.env``, then ``ctx.env`` (the job's env, secret
    values, ``LAUNCHPLANE_*``). It is given to the engine when the container
    is created and nowhere else: never to a build, never to a log line. Like
    ``docker run -e``, the values are visible to whoever may ``docker
    inspect`` the container - access to the engine is root on the host anyway.

Outputs
    The run's output directory (``<run dir>/output`` on the agent host) is
    bind-mounted at ``/launchplane/output`` and ``LAUNCHPLANE_OUTPUT_DIR``
    points there. It is made world-writable (mode 0777) so the image's user,
    whatever its uid, can write checkpoints; it sits in the agent's work
    directory, whose permissions the operator controls. The mount needs the
    engine on the agent's host (the default ``unix://`` socket).

Input artifacts
    Each of ``ctx.mounts`` (the agent's cache entry of an input artifact) is
    bind-mounted read-only (``-v <cache entry>:<target>:ro``); a relative
    target is under ``/launchplane`` (the default ``artifacts/<name>`` is
    ``/launchplane/artifacts/<name>``), an absolute one is used as it is, and
    none may be in ``/launchplane/output``. The mount's variable
    (``LAUNCHPLANE_ARTIFACT_<NAME>``) holds the path in the container. Like
    the output directory, this needs the engine on the agent's host.

Lifetime
    Logs are followed from the start of the container (so a re-adopted run
    repeats them); each blocking docker-py call runs in a worker thread, one
    hop per chunk of output. ``cancel(grace)`` is ``docker stop`` (SIGTERM,
    then SIGKILL after ``grace``) and the run ends ``cancelled``. The result:
    exit code 0 -> succeeded; ``State.OOMKilled`` -> failed with ``OOMKilled:
    container exceeded its memory limit (512m)``; anything else -> failed with
    the exit code and the last lines of output. Once the result and the logs
    are collected the container is removed, unless ``keep: true``. The
    runner's docker-py clients are closed by ``aclose()`` when the agent stops.
"""

from __future__ import annotations

import contextlib
import math
import posixpath
import re
import signal
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.from_thread
import anyio.to_thread
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from launchplane.core.config import artifacts as artifact_refs
from launchplane.core.hookspecs import hookimpl
from launchplane.core.interfaces import (
    ADMIN_ONLY,
    Image,
    InfrastructureError,
    JobContext,
    MissingExtraError,
    Mount,
    PluginError,
    Run,
    Runner,
    RunResult,
    RunState,
)
from launchplane.core.launch import (
    LABEL_PREFIX,
    RUN_LABEL,
    job_argv,
    preview_labels,
    run_labels,
)
from launchplane.core.output import decode
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.runners.lines import read_lines

if TYPE_CHECKING:
    from docker import DockerClient

NAME_PREFIX = "lp-"
KEEP_LABEL = "launchplane.keep"
RUN_ROOT = "/launchplane"
"""In the container, what the run directory is on the host: a relative mount target is under it."""
OUTPUT_DIR = f"{RUN_ROOT}/output"
"""Where the run's output directory is mounted inside the container."""
TAIL_LINES = 10
"""How many of the last output lines a failure reason quotes."""
STDERR_LINES = 5
"""How many of the last stderr lines a failure reason always includes (the traceback's end)."""
STDERR_WINDOW = 1000
"""How many of the last log entries are searched for those stderr lines."""
"""A line longer than this (a progress bar without newlines) is cut into pieces."""
LOG_EOF_SECONDS = 5.0
"""After the container exits, how long ``wait`` lets a log reader reach the end."""
GPU_DRIVER = "nvidia"
_SIZE = re.compile(r"(\d+(?:\.\d+)?)([bkmgt]?)b?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_NAME_INVALID = re.compile(r"[^a-zA-Z0-9_.-]")


def parse_size(value: str | int) -> int:
    """``512m`` / ``2g`` / ``1.5g`` / ``1048576`` -> bytes, as ``docker run --memory`` does."""
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a size; use a number of bytes or e.g. 512m, 2g")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def format_size(size: int) -> str:
    """Bytes -> the shortest exact ``docker run`` spelling (``33554432`` -> ``32m``)."""
    for unit in ("t", "g", "m", "k"):
        if size >= _UNITS[unit] and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return f"{size}b"


def device_requests(gpus: str | int | None) -> list[dict[str, Any]]:
    """``--gpus`` semantics as docker-py ``DeviceRequest`` keyword arguments.

    ``all`` -> every GPU; an integer (or its digits) -> that many;
    ``device=0,1`` (or ``"device=0,1"``, quoted as the docker CLI wants it)
    -> those GPUs by index or UUID.
    """
    if gpus is None:
        return []
    text = str(gpus).strip().strip("\"'")
    request: dict[str, Any] = {"driver": GPU_DRIVER, "capabilities": [["gpu"]]}
    if text == "all":
        return [{**request, "count": -1}]
    if text.isdigit() and not isinstance(gpus, bool):
        if int(text) < 1:
            raise ValueError("gpus must be at least 1 (leave it out for no GPU)")
        return [{**request, "count": int(text)}]
    if text.startswith("device="):
        ids = [part.strip() for part in text.removeprefix("device=").split(",") if part.strip()]
        if ids:
            return [{**request, "device_ids": ids}]
    raise ValueError(f'{gpus!r} is not a GPU request; use "all", a count (2) or "device=0,1"')


def _spec_list(value: Any, joiner: str, check: Callable[[str], object]) -> Any:
    """``{name: value}``, ``"name<joiner>value"`` or a list of those, as a checked list of
    strings (``ulimits``, ``extra_hosts``); anything else is left for pydantic to refuse."""
    if isinstance(value, dict):
        value = [f"{name}{joiner}{item}" for name, item in value.items()]
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        for spec in value:
            check(str(spec))
        return [str(spec) for spec in value]
    return value


def _check_extra_host(spec: str) -> None:
    host, sep, address = spec.partition(":")
    if not sep or not host or not address:
        raise ValueError(f"{spec!r} is not HOST:IP (e.g. host.docker.internal:host-gateway)")


class DockerArgs(BaseModel):
    """``resource_args.docker``: an allow-list of ``docker run`` options; others are errors."""

    model_config = ConfigDict(extra="forbid")

    gpus: str | int | None = Field(default=None, description='"all", a count, or "device=0,1"')
    env: dict[str, str] = Field(default_factory=dict, description='Mapping or ["K=V", ...]')
    volumes: list[str] = Field(
        default_factory=list,
        description='["/host:/container[:ro]"] or {"/host": "/container"}',
        json_schema_extra=ADMIN_ONLY,
    )
    shm_size: str | int | None = Field(default=None, description="/dev/shm size, e.g. 2g")
    memory: str | int | None = Field(default=None, description="Memory limit, e.g. 512m")
    memory_reservation: str | int | None = Field(
        default=None, description="Soft memory limit (--memory-reservation), e.g. 256m"
    )
    memory_swap: str | int | None = Field(
        default=None,
        description="Memory plus swap (--memory-swap), e.g. 1g; -1 for unlimited swap. "
        "Default: equal to memory (no swap)",
    )
    cpus: float | None = Field(default=None, gt=0, description="CPU limit, e.g. 1.5")
    cpu_shares: int | None = Field(default=None, ge=0, description="Relative CPU weight (1024)")
    cpu_period: int | None = Field(
        default=None, ge=1000, le=1_000_000, description="CFS period in microseconds"
    )
    cpu_quota: int | None = Field(
        default=None, ge=-1, description="CFS quota in microseconds per period (-1: none)"
    )
    cpuset_cpus: str | None = Field(default=None, description="CPUs to run on, e.g. 0-3 or 0,1")
    cpuset_mems: str | None = Field(default=None, description="Memory nodes (NUMA), e.g. 0")
    pids_limit: int | None = Field(
        default=None, ge=-1, description="Most processes at once (-1: unlimited)"
    )
    ulimits: list[str] = Field(
        default_factory=list,
        description='["nofile=1024:2048", "nproc=512"] (NAME=SOFT[:HARD]) or {nofile: "1024:2048"}',
    )
    platform: str | None = Field(
        default=None, description="Image platform os[/arch[/variant]], e.g. linux/amd64"
    )
    extra_hosts: list[str] = Field(
        default_factory=list,
        description='["HOST:IP", ...] added to /etc/hosts (--add-host); IP may be host-gateway',
        json_schema_extra=ADMIN_ONLY,
    )
    network: str | None = Field(
        default=None, description="bridge, host, none or a network", json_schema_extra=ADMIN_ONLY
    )
    user: str | None = Field(
        default=None,
        description="User (name or uid[:gid]) to run as",
        json_schema_extra=ADMIN_ONLY,
    )
    workdir: str | None = Field(default=None, description="Working directory in the container")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra container labels", json_schema_extra=ADMIN_ONLY
    )
    runtime: str | None = Field(
        default=None, description="OCI runtime, e.g. nvidia", json_schema_extra=ADMIN_ONLY
    )
    init: bool = Field(default=True, description="Run an init (tini) as PID 1")
    keep: bool = Field(default=False, description="Keep the container after the run")

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, value: str | int | None) -> str | int | None:
        device_requests(value)
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if isinstance(value, list):
            pairs = {}
            for item in value:
                name, sep, text = str(item).partition("=")
                if not sep or not name:
                    raise ValueError(
                        f"{item!r} is not NAME=value (to pass a variable from the agent, "
                        "list it in the queue's passthrough_env)"
                    )
                pairs[name] = text
            return pairs
        if isinstance(value, dict):
            return {str(k): v if isinstance(v, str) else _scalar_text(v) for k, v in value.items()}
        return value

    @field_validator("volumes", mode="before")
    @classmethod
    def _volumes(cls, value: Any) -> Any:
        if isinstance(value, dict):
            specs = []
            for source, target in value.items():
                if isinstance(target, dict):
                    mode = target.get("mode", "rw")
                    specs.append(f"{source}:{target.get('bind')}:{mode}")
                else:
                    specs.append(f"{source}:{target}")
            value = specs
        if isinstance(value, list):
            for spec in value:
                parts = str(spec).split(":")
                if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
                    raise ValueError(
                        f"{spec!r} is not SOURCE:/container/path[:ro|rw] "
                        "(SOURCE an absolute host path or a volume name)"
                    )
        return value

    @field_validator("memory", "shm_size", "memory_reservation")
    @classmethod
    def _size(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_size(value)
        return value

    @field_validator("memory_swap")
    @classmethod
    def _swap(cls, value: str | int | None) -> str | int | None:
        if value is not None and str(value).strip() != "-1":
            parse_size(value)
        return value

    @model_validator(mode="after")
    def _swap_needs_memory(self) -> DockerArgs:
        # The engine refuses a swap limit without a memory limit, or one below it.
        if self.memory_swap is None or str(self.memory_swap).strip() == "-1":
            return self
        if self.memory is None:
            raise ValueError("memory_swap needs memory (the swap limit counts memory plus swap)")
        if parse_size(self.memory_swap) < parse_size(self.memory):
            raise ValueError(
                f"memory_swap {self.memory_swap} is below memory {self.memory}; "
                "it counts memory plus swap, so it must be at least memory"
            )
        return self

    @field_validator("ulimits", mode="before")
    @classmethod
    def _ulimits(cls, value: Any) -> Any:
        return _spec_list(value, "=", ulimit)

    @field_validator("extra_hosts", mode="before")
    @classmethod
    def _extra_hosts(cls, value: Any) -> Any:
        return _spec_list(value, ":", _check_extra_host)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(key for key in value if key.startswith(LABEL_PREFIX))
        if reserved:
            raise ValueError(f"labels starting with {LABEL_PREFIX!r} are launchplane's: {reserved}")
        return value


def ulimit(spec: str) -> dict[str, Any]:
    """``nofile=1024:2048`` (``docker run --ulimit``) -> docker-py ``Ulimit`` keyword arguments.

    One number sets both limits, as the docker CLI does; ``-1`` is unlimited.
    """
    name, sep, limits = spec.partition("=")
    soft, _, hard = limits.partition(":")
    try:
        if not sep or not name.strip():
            raise ValueError
        low = int(soft)
        high = int(hard) if hard else low
    except ValueError:
        raise ValueError(
            f"{spec!r} is not NAME=SOFT[:HARD] (e.g. nofile=1024:2048, memlock=-1)"
        ) from None
    return {"name": name.strip(), "soft": low, "hard": high}


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def docker_args(job: ResolvedJob) -> DockerArgs:
    """``resource_args.docker`` validated; a bad field fails with its path."""
    try:
        return DockerArgs.model_validate(job.resource_args.get(DockerRunner.name, {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(['resource_args.docker', *(str(p) for p in e['loc'])])}: {e['msg']}"
            for e in exc.errors()
        )
        raise PluginError(problems) from None


def container_name(run_id: str) -> str:
    """``lp-<job_id>-<attempt>``: deterministic, so a restarted agent can find it."""
    return NAME_PREFIX + _NAME_INVALID.sub("-", run_id)


def mount_target(mount: Mount) -> str:
    """Where ``mount`` is in the container: a relative target under :data:`RUN_ROOT`."""
    target = posixpath.normpath(posixpath.join(RUN_ROOT, mount.target))
    if target == OUTPUT_DIR or target.startswith(OUTPUT_DIR + "/") or target == "/":
        raise PluginError(
            f"input artifact path {mount.target!r} would be mounted at {target}, over the "
            f"output directory ({OUTPUT_DIR}) or the root; give the artifact another path"
        )
    return target


def preview_mounts(job: ResolvedJob) -> list[Mount]:
    """For ``describe``: the mounts the artifacts stage will give, with placeholder sources."""
    return [
        Mount(
            Path(f"<agent artifact cache>/{artifact_refs.short_name(ref.name)}"),
            artifact_refs.input_target(ref),
            artifact_refs.input_env(ref),
        )
        for ref in artifact_refs.mounted_inputs(job)
    ]


def container_create_kwargs(
    job: ResolvedJob,
    image_ref: str,
    *,
    name: str,
    labels: Mapping[str, str],
    env: Mapping[str, str],
    output_dir: Path | str | None,
    mounts: Sequence[Mount] = (),
) -> dict[str, Any]:
    """The keyword arguments of docker-py's ``containers.create`` for a job: pure, no I/O.

    ``submit`` creates the container with exactly this; ``describe`` shows it
    (with placeholder identity and env names only).
    """
    args = docker_args(job)
    environment = {"PYTHONUNBUFFERED": "1", **args.env, **env}
    volumes = list(args.volumes)
    if output_dir is not None:
        environment["LAUNCHPLANE_OUTPUT_DIR"] = OUTPUT_DIR
        volumes.append(f"{output_dir}:{OUTPUT_DIR}:rw")
    for mount in mounts:
        target = mount_target(mount)
        volumes.append(f"{mount.source}:{target}:{'ro' if mount.read_only else 'rw'}")
        if mount.env:
            environment[mount.env] = target
    memory = parse_size(args.memory) if args.memory is not None else None
    # Swap limit = memory limit unless set: the job gets what was asked for, not that in swap too.
    swap = memory
    if args.memory_swap is not None:
        text = str(args.memory_swap).strip()
        swap = -1 if text == "-1" else parse_size(args.memory_swap)
    kwargs: dict[str, Any] = {
        "image": image_ref,
        "name": name,
        "command": job_argv(job),
        "environment": environment,
        "labels": {**args.labels, **labels},
        "init": args.init,
        "volumes": volumes,
        "device_requests": device_requests(args.gpus) or None,
        "mem_limit": memory,
        "memswap_limit": swap,
        "mem_reservation": (
            parse_size(args.memory_reservation) if args.memory_reservation is not None else None
        ),
        "nano_cpus": round(args.cpus * 1e9) if args.cpus is not None else None,
        "cpu_shares": args.cpu_shares,
        "cpu_period": args.cpu_period,
        "cpu_quota": args.cpu_quota,
        "cpuset_cpus": args.cpuset_cpus,
        "cpuset_mems": args.cpuset_mems,
        "pids_limit": args.pids_limit,
        "ulimits": [ulimit(spec) for spec in args.ulimits] or None,
        "platform": args.platform,
        "extra_hosts": list(args.extra_hosts) or None,
        "shm_size": parse_size(args.shm_size) if args.shm_size is not None else None,
        "network_mode": args.network,
        "user": args.user,
        "working_dir": args.workdir,
        "runtime": args.runtime,
    }
    return {key: value for key, value in kwargs.items() if value is not None}


class _Clients:
    """Two docker-py clients: one for short calls, one without a read timeout.

    Following logs and waiting for the exit may block for hours; docker-py's
    default 60 s read timeout would break a quiet job's log stream.
    """

    def __init__(self) -> None:
        try:
            import docker
        except ImportError:
            raise MissingExtraError("runner", "docker", "docker") from None
        try:
            self.short: DockerClient = docker.from_env()
            self.long: DockerClient = docker.from_env(timeout=None, max_pool_size=64)
        except docker.errors.DockerException as exc:
            raise PluginError(
                f"cannot reach the Docker engine: {exc} "
                "(start it, e.g. scripts/services/docker.sh, or set DOCKER_HOST)"
            ) from None

    def close(self) -> None:
        """Close both clients' connection pools (worker thread: it may touch sockets)."""
        self.short.close()
        self.long.close()


class DockerRun(Run):
    """A container started (or re-adopted) by the docker runner."""

    def __init__(
        self, clients: _Clients, container_id: str, name: str, run_id: str, keep: bool
    ) -> None:
        self.id = run_id
        self.name = name
        self.container_id = container_id
        self._clients = clients
        self._keep = keep
        self._cancelled = False
        self._result: RunResult | None = None
        self._readers: set[anyio.Event] = set()
        self._wait_lock = anyio.Lock()
        # Waits and log reads block for the run's whole life: their own thread
        # budget, so many long jobs cannot starve anyio's default pool.
        self._long_calls = anyio.CapacityLimiter(math.inf)

    def facts(self) -> dict[str, str]:
        """The container's name and id, as ``docker ps``/``docker logs`` take them."""
        return {"container": self.name, "container_id": self.container_id}

    async def status(self) -> RunState:
        if self._result is not None:
            return self._result.state
        attrs = await anyio.to_thread.run_sync(self._inspect)
        if attrs is None:
            return RunState.FAILED
        status = attrs["State"]["Status"]
        if status == "created":
            return RunState.PENDING
        if status in ("exited", "dead"):
            return self._result_of(attrs, tail="").state
        return RunState.RUNNING

    def logs(self) -> AsyncIterator[str]:
        """stdout and stderr merged, line by line, from the container's start until it ends.

        The reader is registered now, not at its first iteration, so a
        ``wait`` that returns quickly still lets it read everything before
        the container is removed.
        """
        done = anyio.Event()
        self._readers.add(done)
        return self._read_lines(done)

    async def _read_lines(self, done: anyio.Event) -> AsyncIterator[str]:
        stream = None
        try:
            stream = await anyio.to_thread.run_sync(self._open_logs)
            if stream is None:
                return
            chunks = iter(stream)
            async for line in read_lines(chunks, self._long_calls):
                yield line
        finally:
            if stream is not None:
                # Closes the socket, which also ends a worker blocked on it.
                with contextlib.suppress(Exception):
                    stream.close()
            done.set()
            self._readers.discard(done)

    def _open_logs(self) -> Any:
        import docker

        try:
            return self._clients.long.api.logs(
                self.container_id, stdout=True, stderr=True, stream=True, follow=True
            )
        except docker.errors.NotFound:
            return None

    async def wait(self) -> RunResult:
        """Until the container exits; then its result, its logs drained, the container removed."""
        async with self._wait_lock:
            if self._result is None:
                await anyio.to_thread.run_sync(
                    self._block_until_exit, abandon_on_cancel=True, limiter=self._long_calls
                )
                with anyio.move_on_after(LOG_EOF_SECONDS):
                    for done in list(self._readers):
                        await done.wait()
                self._result = await anyio.to_thread.run_sync(self._collect)
        return self._result

    def _block_until_exit(self) -> None:
        import docker

        with contextlib.suppress(docker.errors.NotFound):
            self._clients.long.api.wait(self.container_id, timeout=None)

    def _collect(self) -> RunResult:
        """The result from the exited container (worker thread); removes it unless kept."""
        import docker

        attrs = self._inspect()
        if attrs is None:
            return RunResult(
                RunState.FAILED,
                None,
                f"container {self.name} disappeared before its result was read "
                "(removed outside launchplane?)",
                infrastructure_failure=True,
            )
        state = attrs["State"]
        quiet = self._cancelled or state.get("OOMKilled") or state.get("ExitCode") == 0
        result = self._result_of(attrs, tail="" if quiet else self._tail())
        if not self._keep:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self._clients.short.api.remove_container(self.container_id, force=True)
        return result

    def _result_of(self, attrs: Mapping[str, Any], tail: str) -> RunResult:
        state = attrs["State"]
        code = state.get("ExitCode")
        if self._cancelled:
            return RunResult(RunState.CANCELLED, code, "cancelled")
        if state.get("OOMKilled"):
            limit = (attrs.get("HostConfig") or {}).get("Memory") or 0
            why = (
                f"OOMKilled: container exceeded its memory limit ({format_size(limit)})"
                if limit
                else "OOMKilled: the host ran out of memory (the container has no memory limit)"
            )
            return RunResult(RunState.FAILED, code, why)
        if code == 0:
            return RunResult(RunState.SUCCEEDED, 0)
        why = f"exit code {code}"
        if isinstance(code, int) and code > 128:
            with contextlib.suppress(ValueError):
                why += f" (killed by {signal.Signals(code - 128).name})"
        if state.get("Error"):
            why += f": {state['Error']}"
        return RunResult(RunState.FAILED, code, why + tail)

    def _tail(self) -> str:
        """The last lines of output, for a failure reason (worker thread).

        Docker orders stdout and stderr only by when it read each pipe, so a
        traceback written right after a burst of output can land above it in
        the merged log (or out of its tail). The last stderr lines - a
        crash's traceback - are therefore put last, where a reader looks.
        """
        import docker

        api = self._clients.short.api
        try:
            merged = _text_lines(api.logs(self.container_id, tail=TAIL_LINES))
            # The engine applies ``tail`` before the stream filter: look further back.
            errors = _text_lines(
                api.logs(self.container_id, stdout=False, stderr=True, tail=STDERR_WINDOW)
            )[-STDERR_LINES:]
        except docker.errors.APIError:
            return ""
        lines = [line for line in merged if line not in errors] + errors
        if not lines:
            return ""
        lines = [line if len(line) <= 300 else line[:300] + "..." for line in lines]
        return "; last lines of output:\n" + "\n".join(lines)

    def _inspect(self) -> dict[str, Any] | None:
        import docker

        try:
            return dict(self._clients.short.api.inspect_container(self.container_id))
        except docker.errors.NotFound:
            return None

    async def cancel(self, grace: float = 10.0) -> None:
        """``docker stop``: SIGTERM, SIGKILL after ``grace`` seconds; the run ends cancelled."""
        if self._result is not None:
            return
        attrs = await anyio.to_thread.run_sync(self._inspect)
        if attrs is None or attrs["State"]["Status"] in ("exited", "dead"):
            return  # it ended on its own first: report how it ended
        self._cancelled = True
        await anyio.to_thread.run_sync(self._stop, max(0, math.ceil(grace)))

    def _stop(self, grace: int) -> None:
        import docker

        with contextlib.suppress(docker.errors.NotFound):
            self._clients.short.api.stop(self.container_id, timeout=grace)


def _text_lines(raw: bytes) -> list[str]:
    return [decode(line) for line in raw.splitlines()]


class DockerRunner(Runner):
    """Runs each job as one container on the engine at ``DOCKER_HOST``."""

    name: ClassVar[str] = "docker"
    needs_image: ClassVar[bool] = True
    resource_args_model: ClassVar[type[BaseModel] | None] = DockerArgs

    def __init__(self) -> None:
        super().__init__()
        self._clients: _Clients | None = None
        self._lock = threading.Lock()

    async def aclose(self) -> None:
        """Close the docker-py clients (the agent stops; its runs have ended or been released)."""
        with self._lock:
            clients, self._clients = self._clients, None
        if clients is not None:
            await anyio.to_thread.run_sync(clients.close)

    def _connect(self) -> _Clients:
        with self._lock:
            if self._clients is None:
                self._clients = _Clients()
            return self._clients

    def describe(self, job: ResolvedJob, image: Image | None) -> dict[str, Any]:
        """The ``containers.create`` arguments, with env *names* and secrets as references."""
        artifact_refs.refuse_native_inputs(job, self.name)
        kwargs = container_create_kwargs(
            job,
            image.pinned if image is not None else "<image built by the queue's builder>",
            name=f"{NAME_PREFIX}<job_id>-<attempt>",
            labels=preview_labels(job),
            env={},
            output_dir="<run dir>/output",
            mounts=preview_mounts(job),
        )
        names = set(kwargs.pop("environment")) | set(job.env)
        kwargs["environment"] = {
            "names": sorted(names - set(job.secrets)),
            "secrets": dict(sorted(job.secrets.items())),
        }
        return kwargs

    async def submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> DockerRun:
        if image is None:
            raise PluginError(
                "runner 'docker' runs container images but the job has none: set docker.image "
                "in the job, or builder.type: docker in the queue to build one"
            )
        args = docker_args(job)
        artifact_refs.refuse_native_inputs(job, self.name)
        output_dir = ctx.workdir / "output"
        output_dir.mkdir(parents=True, exist_ok=True)
        output_dir.chmod(0o777)
        name = container_name(ctx.run_id)
        kwargs = container_create_kwargs(
            job,
            image.pinned,
            name=name,
            labels={**run_labels(ctx), **({KEEP_LABEL: "true"} if args.keep else {})},
            env=ctx.env,
            output_dir=output_dir,
            mounts=ctx.mounts,
        )
        clients = await anyio.to_thread.run_sync(self._connect)
        container_id = await anyio.to_thread.run_sync(_create_and_start, clients, kwargs, ctx)
        await ctx.emit(f"started container {name} from image {image.pinned}")
        return DockerRun(clients, container_id, name, ctx.run_id, args.keep)

    async def attach(self, run_id: str, run_dir: Path) -> DockerRun | None:
        """The container of ``run_id`` (by its deterministic name, checked by label), if any.

        ``run_dir`` is not needed: the engine knows the container. A
        container that was created but never started (the agent died in
        between) is removed: the job is re-queued and starts over.
        """
        clients = await anyio.to_thread.run_sync(self._connect)
        attrs = await anyio.to_thread.run_sync(_find, clients, run_id)
        if attrs is None:
            return None
        labels = attrs["Config"].get("Labels") or {}
        return DockerRun(
            clients, attrs["Id"], container_name(run_id), run_id, labels.get(KEEP_LABEL) == "true"
        )


def _find(clients: _Clients, run_id: str) -> dict[str, Any] | None:
    import docker

    api = clients.short.api
    try:
        attrs = api.inspect_container(container_name(run_id))
    except docker.errors.NotFound:
        return None
    if (attrs["Config"].get("Labels") or {}).get(RUN_LABEL) != run_id:
        return None
    if attrs["State"]["Status"] == "created":
        with contextlib.suppress(docker.errors.APIError):
            api.remove_container(attrs["Id"], force=True)
        return None
    return dict(attrs)


def _create_and_start(clients: _Clients, kwargs: dict[str, Any], ctx: JobContext) -> str:
    """Create and start the container (worker thread), pulling its image if missing; its id."""
    import docker

    client = clients.short
    name = kwargs["name"]
    _remove_leftover(client, name, ctx)
    try:
        try:
            container = client.containers.create(**kwargs)
        except docker.errors.ImageNotFound:
            _pull(client, kwargs["image"], ctx, kwargs.get("platform"))
            container = client.containers.create(**kwargs)
    except docker.errors.DockerException as exc:
        raise PluginError(f"cannot create container {name}: {_explain(exc)}") from None
    try:
        container.start()
    except docker.errors.DockerException as exc:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
        raise PluginError(f"container {name} did not start: {_explain(exc)}") from None
    return str(container.id)


def _remove_leftover(client: DockerClient, name: str, ctx: JobContext) -> None:
    """A container with this run's name is a leftover of this very run (nobody else owns it)."""
    import docker

    try:
        attrs = client.api.inspect_container(name)
    except docker.errors.NotFound:
        return
    if (attrs["Config"].get("Labels") or {}).get(RUN_LABEL) != ctx.run_id:
        raise PluginError(
            f"a container named {name} exists and is not launchplane's run {ctx.run_id}; "
            "remove or rename it"
        )
    client.api.remove_container(attrs["Id"], force=True)
    anyio.from_thread.run(ctx.emit, f"removed leftover container {name} of an earlier try")


def _pull(client: DockerClient, ref: str, ctx: JobContext, platform: str | None = None) -> None:
    from docker.utils import parse_repository_tag

    if ref.startswith("sha256:"):
        raise PluginError(
            f"image {ref} is not on this engine; it was built by another engine without a "
            "registry (set builder.options.registry so every engine can pull it)"
        )
    import docker

    repository, tag = parse_repository_tag(ref)
    anyio.from_thread.run(ctx.emit, f"pulling image {ref}")
    # A failed pull is the infrastructure's failure (registry down, image gone),
    # not the job's: a queue's retry policy may re-run it.
    try:
        chunks = client.api.pull(repository, tag=tag, stream=True, decode=True, platform=platform)
        for chunk in chunks:
            if "error" in chunk:
                raise InfrastructureError(f"cannot pull image {ref}: {chunk['error']}")
    except docker.errors.DockerException as exc:
        raise InfrastructureError(f"cannot pull image {ref}: {_explain(exc)}") from None


def _explain(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc)


@hookimpl
def launchplane_register_runners(register: Any) -> None:
    register(DockerRunner)

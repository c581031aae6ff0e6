"""Async client of the queue server's HTTP API (docs/api.md), and ``launchplane.submit``.

Used by the CLI, the agent and Python callers. It imports only httpx, anyio
and the standard library at import time, so the agent and ``launchplane --help``
never load the server stack; the agent's calls (claim, register) parse their
answers into :class:`~launchplane.core.lease.Lease` objects (pydantic), loaded
on first use.

Failures are exceptions a caller can act on: :class:`ServerUnreachable` when
no server answers, :class:`ApiError` subclasses for 4xx answers
(:class:`Unauthorized`, :class:`NotFound`, :class:`Conflict` and its
:class:`StaleLease`, :class:`ValidationFailed` with every error and its path).
Connection errors and 5xx answers are retried with jittered exponential
backoff, but only for calls that are safe to repeat: a request that never
reached the server (connect error) is always retried; one that may have been
processed is retried only when the call is idempotent. ``submit_job`` is made
idempotent by always sending an ``Idempotency-Key``.
"""

from __future__ import annotations

import ipaddress
import os
import random
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import httpx

from launchplane.core import paths
from launchplane.core.states import FINAL_STATES

if TYPE_CHECKING:
    from launchplane.core.lease import Lease

API_PREFIX = "/api/v1"
LONG_POLL_MARGIN = 15.0
"""Seconds a long-poll's read timeout exceeds its ``wait``, for a slow or busy server."""


class ClientError(Exception):
    """Base of every error this client raises."""


class ServerUnreachable(ClientError):
    def __init__(self, server: str, cause: BaseException | None = None) -> None:
        self.server = server
        detail = f" ({cause})" if cause and str(cause) else ""
        super().__init__(
            f"cannot reach the queue server at {server}: is 'launchplane server' running?{detail}"
        )


class ConnectionLost(ServerUnreachable):
    """The connection broke after the request was sent; it may or may not have been processed."""

    def __init__(self, server: str, cause: BaseException | None = None) -> None:
        self.server = server
        ClientError.__init__(
            self, f"lost the connection to the queue server at {server}: {cause or 'no answer'}"
        )


class ApiError(ClientError):
    """The server answered with an error status; ``errors`` lists ``{path, message}``."""

    def __init__(self, status: int, message: str, errors: Sequence[Mapping[str, str]] = ()) -> None:
        self.status = status
        self.message = message
        self.errors = [dict(error) for error in errors]
        super().__init__(f"{status}: {message}")


class Unauthorized(ApiError):
    """401 (missing or unknown token) or 403 (the token's role or queues do not allow it)."""


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class StaleLease(Conflict):
    """A lease call was fenced: the lease expired or was re-queued; stop that workload."""


class ValidationFailed(ApiError):
    pass


class UnsafeTokenFile(ClientError):
    """The local admin-token file is not as the server writes it (the message says the fix)."""


def find_token(server: str | None = None, token: str | None = None) -> str | None:
    """The token to use: explicit, else ``$LAUNCHPLANE_TOKEN``, else the local admin token.

    The admin-token file is read only for a server on this machine (a loopback
    address): a remote server must never be sent the local admin token. And
    only when it is as the server writes it (``paths.token_file_problem``): a
    file anyone else could have read or planted is refused with
    :class:`UnsafeTokenFile`, never used.
    """
    if token:
        return token
    if os.environ.get("LAUNCHPLANE_TOKEN"):
        return os.environ["LAUNCHPLANE_TOKEN"]
    if not _is_loopback(server or paths.default_server_url()):
        return None
    path = paths.admin_token_path()
    problem = paths.token_file_problem(path)
    if problem is not None:
        raise UnsafeTokenFile(f"not using the admin token: {problem}")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _is_loopback(server: str) -> bool:
    host = urlsplit(server if "://" in server else f"http://{server}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LaunchplaneClient:
    """One connection pool to one server; use as ``async with LaunchplaneClient(...) as c``."""

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.server = (server or paths.default_server_url()).rstrip("/").removesuffix(API_PREFIX)
        self.token = find_token(self.server, token)
        self.timeout = timeout
        self.retries = max(retries, 0)
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.AsyncClient(
            base_url=self.server + API_PREFIX,
            headers=headers,
            transport=transport,
        )

    async def __aenter__(self) -> LaunchplaneClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing --------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
        lease: bool = False,
    ) -> httpx.Response:
        """Send one call, retrying what is safe to retry; raise ApiError on a 4xx/5xx answer."""
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        if read_timeout is not None:
            timeout = httpx.Timeout(
                self.timeout, connect=min(self.timeout, 10.0), read=read_timeout
            )
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = await self._http.request(
                    method, path, json=json, params=params, headers=headers, timeout=timeout
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if last:
                    raise ServerUnreachable(self.server, exc) from exc
            except httpx.TransportError as exc:
                if last or not idempotent:
                    raise ConnectionLost(self.server, exc) from exc
            else:
                if response.status_code < 500 or last or not idempotent:
                    _raise_for_status(response, lease=lease)
                    return response
            await anyio.sleep(random.uniform(0, min(self.backoff * 2**attempt, 5.0)))
        raise AssertionError("unreachable")

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._call(method, path, **kwargs)
        return None if response.status_code == 204 else response.json()

    # -- server and tokens -----------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return await self._json("GET", "/health", idempotent=True)

    async def create_token(
        self,
        role: str,
        queues: Sequence[str] = (),
        name: str | None = None,
        expires_in_seconds: float | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"role": role, "name": name, "queues": list(queues)}
        if expires_in_seconds is not None:
            body["expires_in_seconds"] = expires_in_seconds
        return await self._json("POST", "/tokens", json=body, idempotent=False)

    async def list_tokens(self) -> list[dict[str, Any]]:
        return (await self._json("GET", "/tokens", idempotent=True))["tokens"]

    async def revoke_token(self, token_id: int) -> dict[str, Any]:
        return await self._json("POST", f"/tokens/{token_id}/revoke", idempotent=True)

    # -- queues ----------------------------------------------------------------

    async def create_queue(self, name: str, config: Mapping[str, Any]) -> dict[str, Any]:
        body = {"name": name, "config": dict(config)}
        return await self._json("POST", "/queues", json=body, idempotent=False)

    async def update_queue(self, name: str, config: Mapping[str, Any]) -> dict[str, Any]:
        body = {"config": dict(config)}
        return await self._json("PUT", f"/queues/{name}", json=body, idempotent=True)

    async def get_queue(self, name: str) -> dict[str, Any]:
        return await self._json("GET", f"/queues/{name}", idempotent=True)

    async def list_queues(self) -> list[dict[str, Any]]:
        return (await self._json("GET", "/queues", idempotent=True))["queues"]

    # -- jobs ------------------------------------------------------------------

    async def submit_job(
        self,
        queue: str,
        job: Mapping[str, Any],
        overrides: Sequence[Mapping[str, Any]] = (),
        template_variables: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        priority: str | int | None = None,
        *,
        strict_pins: bool = False,
    ) -> dict[str, Any]:
        """Queue a job. A key is always sent, so a retried submit never makes a second job.

        ``priority`` (``critical``/``high``/``medium``/``low``, or W&B's 0..3) is
        applied by the server as a last override layer; None leaves the job's own
        (and is not sent, so servers from before priorities accept the body).
        ``strict_pins``: the server refuses the job (ValidationFailed) if an input is
        unpinned, instead of listing it in the answer's ``warnings`` (sent only when set).
        """
        body: dict[str, Any] = {
            "queue": queue,
            "job": dict(job),
            "overrides": [dict(layer) for layer in overrides],
            "template_variables": dict(template_variables or {}),
        }
        if priority is not None:
            body["priority"] = priority
        if strict_pins:
            body["strict_pins"] = True
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        return await self._json("POST", "/jobs", json=body, headers=headers, idempotent=True)

    async def list_jobs(
        self, queue: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Newest first, up to ``limit`` jobs, over as many pages as the server makes.

        The server caps a page in bytes as well as in jobs and says where the
        next one starts (``next``); a server without pages answers once.
        """
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(found) < limit:
            wanted = {"queue": queue, "state": state, "limit": limit - len(found), "cursor": cursor}
            params = {k: v for k, v in wanted.items() if v}
            page = await self._json("GET", "/jobs", params=params, idempotent=True)
            found.extend(page["jobs"])
            cursor = page.get("next")
            if not cursor or not page["jobs"]:
                break
        return found

    async def get_job(self, job_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/jobs/{job_id}", idempotent=True)

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/jobs/{job_id}/cancel", idempotent=True)

    async def get_record(self, job_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/jobs/{job_id}/record", idempotent=True)

    async def read_logs(self, job_id: str, after: int = 0, wait: float = 0) -> dict[str, Any]:
        """One page: ``{"lines": [{"seq", "attempt", "line"}], "next", "done"}``; ``wait``
        long-polls."""
        return await self._json(
            "GET",
            f"/jobs/{job_id}/logs",
            params={"after": after, "wait": wait},
            read_timeout=wait + LONG_POLL_MARGIN,
            idempotent=True,
        )

    async def follow_logs(
        self, job_id: str, after: int = 0, wait: float = 30.0
    ) -> AsyncIterator[dict[str, Any]]:
        """Every line (``{"seq", "attempt", "line"}``) from ``after`` on, until the job ends."""
        while True:
            page = await self.read_logs(job_id, after=after, wait=wait)
            for line in page["lines"]:
                yield line
            after = page["next"]
            if page["done"]:
                return

    async def wait_for_job(
        self,
        job_id: str,
        *,
        poll: float = 2.0,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Return the job once it is final; ``on_update`` sees it at least every ``poll`` s.

        Waits on the log long-poll, which the server also ends when the job
        finishes, so the end is seen at once rather than at the next poll.
        """
        after = 0
        while True:
            job = await self.get_job(job_id)
            if on_update is not None:
                on_update(job)
            if job["state"] in FINAL_STATES:
                return job
            page = await self.read_logs(job_id, after=after, wait=poll)
            after = page["next"]

    # -- agents ----------------------------------------------------------------

    async def register_agent(
        self,
        agent_id: str,
        *,
        host: str = "",
        queues: Sequence[str] = (),
        version: str = "",
        plugins: Mapping[str, str] | None = None,
    ) -> list[Lease]:
        """Say the agent is here; the leases the server says it still holds (to re-adopt).

        Raises :class:`~launchplane.core.lease.UnreadableLease` for a held
        lease whose job this version cannot read.
        """
        from launchplane.core.lease import Lease  # pydantic: only agents pay for it

        body = {
            "agent_id": agent_id,
            "host": host,
            "queues": list(queues),
            "version": version,
            "plugins": dict(plugins or {}),
        }
        answer = await self._json("POST", "/agents", json=body, idempotent=True)
        return [Lease.from_answer(lease) for lease in answer.get("leases") or []]

    async def list_agents(self) -> list[dict[str, Any]]:
        return (await self._json("GET", "/agents", idempotent=True))["agents"]

    async def claim(self, queue: str, agent_id: str, wait: float = 30.0) -> Lease | None:
        """A Lease, or None when no job arrived within ``wait`` seconds.

        Not retried once the request may have reached the server: a lost
        answer would leave a claimed job nobody runs (until its lease expires).
        A lease whose job this version cannot read raises
        :class:`~launchplane.core.lease.UnreadableLease` (the job is claimed:
        the caller should fail it with the reason).
        """
        from launchplane.core.lease import Lease  # pydantic: only agents pay for it

        answer = await self._json(
            "POST",
            f"/queues/{queue}/claim",
            params={"wait": wait},
            json={"agent_id": agent_id},
            read_timeout=wait + LONG_POLL_MARGIN,
            idempotent=False,
        )
        return None if answer is None else Lease.from_answer(answer)

    async def heartbeat(self, agent_id: str, leases: Sequence[str]) -> dict[str, Any]:
        body = {"agent_id": agent_id, "leases": list(leases)}
        return await self._json("POST", "/heartbeat", json=body, idempotent=True)

    async def post_event(
        self,
        lease_id: str,
        state: str,
        stage: str | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        body = {"state": state, "stage": stage, "reason": reason, "details": details}
        await self._call(
            "POST", f"/leases/{lease_id}/events", json=body, idempotent=True, lease=True
        )

    async def append_logs(
        self, lease_id: str, lines: Sequence[str], first_seq: int | None = None
    ) -> int:
        """Store lines in order; returns the seq of the last line in the log.

        With ``first_seq`` (the seq the first line should get) the server
        stores a repeated batch once, so the call is retried like any
        idempotent one; without it, it is not retried (it could store twice).
        """
        body: dict[str, Any] = {"lines": list(lines)}
        if first_seq is not None:
            body["first_seq"] = first_seq
        response = await self._json(
            "POST",
            f"/leases/{lease_id}/logs",
            json=body,
            idempotent=first_seq is not None,
            lease=True,
        )
        return int(response["next"])

    async def append_late_logs(self, lease_id: str, lines: Sequence[str], first_seq: int) -> int:
        """Store lines of an ended lease's run that its agent could not send while it lived.

        ``first_seq`` numbers the first line in the lease's own numbering (as
        :meth:`append_logs` batches); lines the lease has stored are skipped,
        so the call is retried like any idempotent one. Returns the lease's log
        position (the number of its last line stored: empty ``lines`` only asks
        for it). A live lease, or one ended over 7 days ago, is refused
        (:class:`StaleLease`).
        """
        response = await self._json(
            "POST",
            f"/leases/{lease_id}/late-logs",
            json={"lines": list(lines), "first_seq": first_seq},
            idempotent=True,
            lease=True,
        )
        return int(response["position"])

    async def complete(
        self,
        lease_id: str,
        state: str,
        exit_code: int | None = None,
        stage: str | None = None,
        reason: str | None = None,
        record: Mapping[str, Any] | None = None,
        infrastructure_failure: bool = False,
    ) -> dict[str, Any]:
        """Finish the job; safe to retry (the server answers a repeated completion).

        ``infrastructure_failure``: the job failed for the infrastructure, not
        its code; the queue's retry policy may re-queue it (the answer is then
        the job, queued again).
        """
        body: dict[str, Any] = {
            "state": state,
            "exit_code": exit_code,
            "stage": stage,
            "reason": reason,
            "record": dict(record or {}),
        }
        if infrastructure_failure:  # sent only when set: older servers refuse unknown fields
            body["infrastructure_failure"] = True
        return await self._json(
            "POST", f"/leases/{lease_id}/complete", json=body, idempotent=True, lease=True
        )

    async def release(self, lease_id: str, reason: str | None = None) -> None:
        await self._call(
            "POST",
            f"/leases/{lease_id}/release",
            json={"reason": reason},
            idempotent=True,
            lease=True,
        )


def _raise_for_status(response: httpx.Response, *, lease: bool) -> None:
    status = response.status_code
    if status < 400:
        return
    message, errors = _problem(response)
    if status in (401, 403):
        raise Unauthorized(status, message, errors)
    if status == 404:
        raise NotFound(status, message, errors)
    if status == 409:
        raise (StaleLease if lease else Conflict)(status, message, errors)
    if status == 422:
        raise ValidationFailed(status, message, errors)
    raise ApiError(status, message, errors)


def _problem(response: httpx.Response) -> tuple[str, list[dict[str, str]]]:
    """The ``{"detail": {"message", "errors"}}`` body, or the raw text of a foreign answer."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, dict) and "message" in detail:
        return str(detail["message"]), list(detail.get("errors") or [])
    if isinstance(detail, str):
        return detail, []
    return (response.text.strip()[:300] or response.reason_phrase), []


# -- Python API -----------------------------------------------------------------


class QueuedJob(dict[str, Any]):
    """A submitted job: the API's Job object (``job["id"]``), plus W&B ``QueuedRun``'s waits.

    A dict, so code written for the Job object keeps working; the waits
    refresh it in place from the server it was submitted to.
    ``wait_until_running()`` / ``wait_until_finished()`` block (like W&B's);
    from async code use ``wait_until_running_async()`` /
    ``wait_until_finished_async()``. Where W&B's return a W&B ``Run``,
    these return the job itself (its ``state``, ``exit_code``, ``reason``).
    """

    def __init__(
        self, job: Mapping[str, Any], *, server: str | None = None, token: str | None = None
    ) -> None:
        super().__init__(job)
        self._server = server
        self._token = token

    @property
    def id(self) -> str:
        return str(self["id"])

    @property
    def queue_name(self) -> str:
        """The queue's name (W&B's ``QueuedRun.queue_name``)."""
        return str(self["queue"])

    @property
    def state(self) -> str:
        """The job's state now, fetched from the server (as W&B's ``QueuedRun.state``)."""
        return self.refresh()["state"]

    def refresh(self) -> QueuedJob:
        """Fetch the job again; returns itself, updated."""
        return anyio.run(self.refresh_async)

    async def refresh_async(self) -> QueuedJob:
        async with LaunchplaneClient(self._server, self._token) as client:
            self.update(await client.get_job(self.id))
        return self

    def wait_until_running(self, *, poll: float = 2.0, timeout: float | None = None) -> QueuedJob:
        """Block until the job runs (or has already ended: check ``["state"]``); itself.

        ``timeout`` seconds (None: no limit) raises TimeoutError.
        """
        return anyio.run(partial(self.wait_until_running_async, poll=poll, timeout=timeout))

    async def wait_until_running_async(
        self, *, poll: float = 2.0, timeout: float | None = None
    ) -> QueuedJob:
        with anyio.fail_after(timeout):
            async with LaunchplaneClient(self._server, self._token) as client:
                while True:
                    self.update(await client.get_job(self.id))
                    if self["state"] == "running" or self["state"] in FINAL_STATES:
                        return self
                    await anyio.sleep(poll)

    def wait_until_finished(self, *, poll: float = 2.0, timeout: float | None = None) -> QueuedJob:
        """Block until the job has ended (succeeded, failed or cancelled); itself.

        ``timeout`` seconds (None: no limit) raises TimeoutError.
        """
        return anyio.run(partial(self.wait_until_finished_async, poll=poll, timeout=timeout))

    async def wait_until_finished_async(
        self, *, poll: float = 2.0, timeout: float | None = None
    ) -> QueuedJob:
        with anyio.fail_after(timeout):
            async with LaunchplaneClient(self._server, self._token) as client:
                self.update(await client.wait_for_job(self.id, poll=poll))
        return self

    def __repr__(self) -> str:
        return f"<QueuedJob {self.get('queue')} ({self.get('id')}) {self.get('state')}>"


def submit(
    job: str | Path | Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    queue_name: str | None = None,
    uri: str | None = None,
    config: Mapping[str, Any] | None = None,
    template_variables: Mapping[str, Any] | None = None,
    project: str | None = None,
    entity: str | None = None,
    resource: str | None = None,
    entry_point: str | Sequence[str] | None = None,
    name: str | None = None,
    version: str | None = None,
    docker_image: str | None = None,
    project_queue: str | None = None,
    resource_args: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    build: bool | None = False,
    repository: str | None = None,
    sweep_id: str | None = None,
    author: str | None = None,
    priority: str | int | None = None,
    server: str | None = None,
    token: str | None = None,
    idempotency_key: str | None = None,
    strict_pins: bool = False,
) -> QueuedJob:
    """Submit a job to a queue; the job (a dict) with W&B ``QueuedRun``'s waits.

    The counterpart of W&B's ``launch_add``: every one of its keywords means
    what it means there (:mod:`launchplane.core.launch_args` maps them), and
    ``queue`` is ``queue_name`` (W&B's default queue, ``"default"``, when
    neither is given). ``job`` is a W&B job name (``entity/project/name:alias``),
    a downloaded W&B job directory, a job file (YAML/JSON) or a dict;
    ``config`` is a W&B launch spec or a launchplane override layer (both
    spellings are read); ``template_variables`` are the queue's variable
    values; ``priority`` is ``critical|high|medium|low`` or W&B's 0..3.
    Each unpinned input of the resolved job (a branch without a commit, an
    image by tag, an artifact by alias: :mod:`launchplane.core.pins`) is an
    :class:`~launchplane.core.pins.UnpinnedInputWarning`; with ``strict_pins``
    the server refuses the job instead (:class:`ValidationFailed`, each listed).
    As in W&B, ``config`` holding both ``resource_args`` and
    ``template_variables`` loses its ``resource_args`` (a warning says so).
    Synchronous: from async code use :func:`asubmit`.
    """
    call = partial(
        asubmit,
        job,
        queue=queue,
        queue_name=queue_name,
        uri=uri,
        config=config,
        template_variables=template_variables,
        project=project,
        entity=entity,
        resource=resource,
        entry_point=entry_point,
        name=name,
        version=version,
        docker_image=docker_image,
        project_queue=project_queue,
        resource_args=resource_args,
        run_id=run_id,
        build=build,
        repository=repository,
        sweep_id=sweep_id,
        author=author,
        priority=priority,
        server=server,
        token=token,
        idempotency_key=idempotency_key,
        strict_pins=strict_pins,
    )
    return anyio.run(call)


async def asubmit(
    job: str | Path | Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    queue_name: str | None = None,
    uri: str | None = None,
    config: Mapping[str, Any] | None = None,
    template_variables: Mapping[str, Any] | None = None,
    project: str | None = None,
    entity: str | None = None,
    resource: str | None = None,
    entry_point: str | Sequence[str] | None = None,
    name: str | None = None,
    version: str | None = None,
    docker_image: str | None = None,
    project_queue: str | None = None,
    resource_args: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    build: bool | None = False,
    repository: str | None = None,
    sweep_id: str | None = None,
    author: str | None = None,
    priority: str | int | None = None,
    server: str | None = None,
    token: str | None = None,
    idempotency_key: str | None = None,
    strict_pins: bool = False,
) -> QueuedJob:
    """The async twin of :func:`submit`."""
    import warnings

    from launchplane.core.launch_args import LaunchArgs, LaunchSpecWarning, launch_layers
    from launchplane.core.pins import UnpinnedInputWarning

    if queue is not None and queue_name is not None and queue != queue_name:
        raise ValueError(f"queue={queue!r} and queue_name={queue_name!r}: give one")
    spec, wandb_job = _job_document(job)
    layers = launch_layers(
        LaunchArgs(
            uri=uri,
            job=wandb_job,
            config=config,
            template_variables=template_variables,
            project=project,
            entity=entity,
            resource=resource,
            entry_point=entry_point,
            name=name,
            version=version,
            docker_image=docker_image,
            project_queue=project_queue,
            resource_args=resource_args,
            run_id=run_id,
            build=bool(build),
            repository=repository,
            sweep_id=sweep_id,
            author=author,
            priority=priority,
        ),
        spec,
    )
    for message in layers.warnings:
        warnings.warn(message, LaunchSpecWarning, stacklevel=2)
    target = queue or queue_name or layers.job.get("queue") or "default"
    async with LaunchplaneClient(server, token) as client:
        submitted = await client.submit_job(
            target,
            layers.job,
            overrides=layers.overrides,
            template_variables=layers.template_values,
            idempotency_key=idempotency_key,
            strict_pins=strict_pins,
        )
    for message in submitted.get("warnings", ()):
        warnings.warn(message, UnpinnedInputWarning, stacklevel=2)
    return QueuedJob(submitted, server=server, token=token)


def _job_document(job: str | Path | Mapping[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    """The job layer, and ``job`` when it names a W&B job or job directory instead.

    A string that is not a YAML/JSON file's path is W&B's ``job`` (a name, or
    a downloaded job's directory: :func:`~.launch_args.launch_layers` tells).
    """
    if job is None:
        return {}, None
    if isinstance(job, Mapping):
        return dict(job), None
    path = Path(job)
    if path.suffix.lower() not in (".yaml", ".yml", ".json") or path.name == "wandb-job.json":
        return {}, str(job)
    # The config loader (YAML, base_config chains) is needed only for a file.
    from launchplane.core.config import load_job_file, resolve_local_workdir

    return resolve_local_workdir(load_job_file(path), path), None

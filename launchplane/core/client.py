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


def find_token(server: str | None = None, token: str | None = None) -> str | None:
    """The token to use: explicit, else ``$LAUNCHPLANE_TOKEN``, else the local admin token.

    The admin-token file is read only for a server on this machine (a loopback
    address): a remote server must never be sent the local admin token.
    """
    if token:
        return token
    if os.environ.get("LAUNCHPLANE_TOKEN"):
        return os.environ["LAUNCHPLANE_TOKEN"]
    if not _is_loopback(server or paths.default_server_url()):
        return None
    try:
        return paths.admin_token_path().read_text().strip() or None
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
        self, role: str, queues: Sequence[str] = (), name: str | None = None
    ) -> dict[str, Any]:
        body = {"role": role, "name": name, "queues": list(queues)}
        return await self._json("POST", "/tokens", json=body, idempotent=False)

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
    ) -> dict[str, Any]:
        """Queue a job. A key is always sent, so a retried submit never makes a second job.

        ``priority`` (``critical``/``high``/``medium``/``low``, or W&B's 0..3) is
        applied by the server as a last override layer; None leaves the job's own
        (and is not sent, so servers from before priorities accept the body).
        """
        body: dict[str, Any] = {
            "queue": queue,
            "job": dict(job),
            "overrides": [dict(layer) for layer in overrides],
            "template_variables": dict(template_variables or {}),
        }
        if priority is not None:
            body["priority"] = priority
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        return await self._json("POST", "/jobs", json=body, headers=headers, idempotent=True)

    async def list_jobs(
        self, queue: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"queue": queue, "state": state, "limit": limit}.items() if v}
        return (await self._json("GET", "/jobs", params=params, idempotent=True))["jobs"]

    async def get_job(self, job_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/jobs/{job_id}", idempotent=True)

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/jobs/{job_id}/cancel", idempotent=True)

    async def get_record(self, job_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/jobs/{job_id}/record", idempotent=True)

    async def read_logs(self, job_id: str, after: int = 0, wait: float = 0) -> dict[str, Any]:
        """One page: ``{"lines": [{"seq", "line"}], "next", "done"}``; ``wait`` long-polls."""
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
        """Every line (``{"seq", "line"}``) from ``after`` on, until the job ends."""
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


def submit(
    job: str | Path | Mapping[str, Any] | None = None,
    *,
    queue: str,
    config: Mapping[str, Any] | None = None,
    resource_args: Mapping[str, Any] | None = None,
    template_variables: Mapping[str, Any] | None = None,
    entry_point: str | Sequence[str] | None = None,
    docker_image: str | None = None,
    project: str | None = None,
    entity: str | None = None,
    name: str | None = None,
    server: str | None = None,
    token: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Submit a job to a queue and return it (the API's Job object).

    The counterpart of W&B's ``launch_add``: ``job`` is a YAML/JSON file or
    a dict; ``config`` is an override layer; ``resource_args`` becomes the
    layer ``{"resource_args": ...}``; ``entry_point``, ``docker_image``,
    ``project``, ``entity`` and ``name`` set those job fields. Synchronous:
    from async code use :func:`asubmit`.
    """
    call = partial(
        asubmit,
        job,
        queue=queue,
        config=config,
        resource_args=resource_args,
        template_variables=template_variables,
        entry_point=entry_point,
        docker_image=docker_image,
        project=project,
        entity=entity,
        name=name,
        server=server,
        token=token,
        idempotency_key=idempotency_key,
    )
    return anyio.run(call)


async def asubmit(
    job: str | Path | Mapping[str, Any] | None = None,
    *,
    queue: str,
    config: Mapping[str, Any] | None = None,
    resource_args: Mapping[str, Any] | None = None,
    template_variables: Mapping[str, Any] | None = None,
    entry_point: str | Sequence[str] | None = None,
    docker_image: str | None = None,
    project: str | None = None,
    entity: str | None = None,
    name: str | None = None,
    server: str | None = None,
    token: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """The async twin of :func:`submit`."""
    spec = _job_document(job)
    fields = {"entry_point": entry_point, "project": project, "entity": entity, "name": name}
    spec.update({key: value for key, value in fields.items() if value is not None})
    if isinstance(spec.get("entry_point"), tuple):
        spec["entry_point"] = list(spec["entry_point"])
    if docker_image is not None:
        spec["docker"] = {**(spec.get("docker") or {}), "image": docker_image}
    overrides: list[Mapping[str, Any]] = []
    if config:
        overrides.append(config)
    if resource_args:
        overrides.append({"resource_args": dict(resource_args)})
    async with LaunchplaneClient(server, token) as client:
        return await client.submit_job(
            queue,
            spec,
            overrides=overrides,
            template_variables=template_variables,
            idempotency_key=idempotency_key,
        )


def _job_document(job: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    if job is None:
        return {}
    if isinstance(job, Mapping):
        return dict(job)
    # The config loader (YAML, base_config chains) is needed only for a file.
    from launchplane.core.config import load_job_file

    return load_job_file(job)

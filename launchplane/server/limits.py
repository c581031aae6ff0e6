"""What one client can hold of the server: body size, connection time, connections.

* Bodies: a declared ``Content-Length`` over the limit is refused with 413 at
  once; a body sent without one (chunked) is counted as it streams and refused
  when it crosses the limit. Pure ASGI, so it costs one header lookup per request.
* Connections (:class:`GuardedH11Protocol`, uvicorn's HTTP protocol with three
  additions): a deadline for each request's head, one for its body, and a cap
  on open connections below the process's descriptor limit (``docs/api.md``,
  "Limits").
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` mid-stream; FastAPI re-raises HTTPExceptions from body parsing."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _refuse(send, self.max_bytes)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _refuse(send, self.max_bytes)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        {"detail": {"message": f"request body larger than {limit} bytes", "errors": []}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- answers --------------------------------------------------------------------------

LOG_PAGE_BYTES = 1 << 20
"""A page of ``GET /jobs/{id}/logs`` holds lines up to about this much text (at least one
line; ``next`` reads on). 1,000 lines of 1 MB each made a 1 GB answer."""
JOB_PAGE_BYTES = 4 << 20
"""A page of ``GET /jobs`` holds jobs up to about this much of their documents (at least one
job; ``next`` is the cursor of the following page). Over large jobs a page was gigabytes."""


# -- connections: header and idle timeouts, a connection cap -----------------------------

HEADER_TIMEOUT_SECONDS = 10.0
"""From when a connection waits for a request to when its head (request line and headers)
is complete. uvicorn has no such timeout: its keep-alive timer stops at the first byte, so a
client sending headers a byte at a time (slowloris) held its connection for ever."""
BODY_TIMEOUT_SECONDS = 30.0
"""From when a request's head is complete to when its body must be: a client that sends
headers then trickles the body (a byte now and then) held a connection and a request task
for ever. 30 s is 1 MiB, the default body limit, at 35 KB/s."""
IDLE_TIMEOUT_SECONDS = 5
"""A keep-alive connection with no new request for this long is closed (uvicorn's
``timeout_keep_alive``; the client opens a new one when it needs it)."""
DESCRIPTOR_HEADROOM = 128
"""Descriptors kept for everything but client connections: the database pool and SQLite's
files, the PostgreSQL listener, logs, and what ``launchplane run``'s agent opens."""


def connection_limit(requested: int | None = None) -> int:
    """The most client connections to keep open: ``requested``, or what descriptors allow.

    The soft ``RLIMIT_NOFILE`` is first raised to the hard one (as Go's
    runtime does): 1,024 is a default of shells, not a choice. Past the limit
    ``accept()`` would fail with EMFILE and asyncio stop accepting, so that not
    even ``/health`` got in; the cap keeps the server below it with
    :data:`DESCRIPTOR_HEADROOM` (a quarter of a small limit) to spare.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError):
            pass
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    allowed = max(1, soft - min(DESCRIPTOR_HEADROOM, soft // 4))
    return allowed if requested is None else min(requested, allowed)


_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)
_FULL_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
)


def _answer(template: bytes, message: str) -> bytes:
    body = json.dumps({"detail": {"message": message, "errors": []}}).encode()
    return template % (len(body), body)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with request-head and body deadlines and a connection cap.

    * A connection waiting for a request (new, or after a response) must
      complete the request's head within ``header_timeout`` seconds, however
      slowly its bytes come; otherwise it gets a 408 and is closed.
    * A request's body must be complete within ``body_timeout`` seconds of its
      head; otherwise it gets a 408 (or, if the app answered already without
      reading the body, is just closed) and the app sees a disconnect.
    * Past ``max_connections`` a new connection closes the connection idle
      for longest (one waiting for a request, none in the middle of one);
      when every connection is busy, the new one gets a 503 with
      ``Retry-After`` and is closed. Idle keep-alive connections are cheap to
      reopen; a health check or an agent's call is not to be refused for them.
    """

    def __init__(
        self,
        *args: Any,
        header_timeout: float,
        max_connections: int,
        body_timeout: float = BODY_TIMEOUT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.idle_since: float | None = None
        """Loop time since when it waits for a request; None while one is under way."""
        self._head_deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        self._wait_for_request()
        if len(self.connections) > self.max_connections and not self._evict_idle():
            self.logger.warning("refused a connection: %d open", len(self.connections) - 1)
            self._close_with(_FULL_ANSWER, "too many connections: retry in a moment")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self._cancel_body_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        super().data_received(data)
        self._check_started(before)
        if self._body_deadline is not None and (self.cycle is None or not self.cycle.more_body):
            self._cancel_body_deadline()  # the body is complete

    def on_response_complete(self) -> None:
        before = self.cycle
        self._cancel_body_deadline()
        super().on_response_complete()
        if not self.transport.is_closing():
            self._wait_for_request()
            self._check_started(before)  # a pipelined request may have begun already

    def _wait_for_request(self) -> None:
        self._cancel_deadline()
        self.idle_since = self.loop.time()
        self._head_deadline = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _check_started(self, before: Any) -> None:
        if self.cycle is not before and self.cycle is not None:
            self._cancel_deadline()
            self.idle_since = None
            self._cancel_body_deadline()
            if self.cycle.more_body:
                self._body_deadline = self.loop.call_later(self.body_timeout, self._body_timed_out)

    def _cancel_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _body_timed_out(self) -> None:
        self._body_deadline = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or self.transport.is_closing():
            return
        self.logger.info("closed a request whose body took over %g s", self.body_timeout)
        if cycle.response_started:
            self.transport.close()  # answered without its body: nothing more to say
            return
        self._close_with(
            _TIMEOUT_ANSWER,
            f"request body not complete within {self.body_timeout:g} s of its head",
        )

    def _cancel_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.idle_since is not None and not self.transport.is_closing():
            self._close_with(
                _TIMEOUT_ANSWER, f"no complete request head within {self.header_timeout:g} s"
            )

    def _evict_idle(self) -> bool:
        """Close the connection idle for longest, but not this new one; whether one was."""
        idle = [
            other
            for other in self.connections
            if other is not self
            and isinstance(other, GuardedH11Protocol)
            and other.idle_since is not None
            and not other.transport.is_closing()
        ]
        if not idle:
            return False
        oldest = min(idle, key=lambda other: other.idle_since or 0.0)
        oldest._cancel_deadline()
        oldest.transport.close()
        oldest.connections.discard(oldest)  # closed now; connection_lost follows
        return True

    def _close_with(self, template: bytes, message: str) -> None:
        self._cancel_deadline()
        self.idle_since = None
        self.transport.write(_answer(template, message))
        self.transport.close()
        self.connections.discard(self)


def guarded_protocol(
    header_timeout: float, max_connections: int, body_timeout: float = BODY_TIMEOUT_SECONDS
) -> Any:
    """uvicorn's ``http`` setting: :class:`GuardedH11Protocol` with these limits."""
    return functools.partial(
        GuardedH11Protocol,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        max_connections=max_connections,
    )

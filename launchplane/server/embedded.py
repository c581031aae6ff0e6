"""Run the queue server inside the current event loop.

``launchplane run`` starts a server and an agent in one process, tests start
a real server on a random loopback port, and ``launchplane server`` runs the
same thing in the foreground. All three use :class:`EmbeddedServer`::

    async with EmbeddedServer(data_dir=tmp) as srv:
        token = await srv.create_token("agent", queues=["default"])
        await srv.ensure_queue("default", {"resource": "local-process"})
        ... srv.url ...

The listening socket is bound before uvicorn starts, so ``port=0`` works and
a port in use raises ``OSError`` here rather than ending the process (uvicorn
calls ``sys.exit`` when it fails to bind by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import anyio
import anyio.abc
import uvicorn

from launchplane.core import paths
from launchplane.server.app import bootstrap, build_state, create_app
from launchplane.server.auth import hash_token, new_token
from launchplane.server.limits import connection_limit, guarded_protocol
from launchplane.server.problems import NotFound
from launchplane.server.schemas import Queue
from launchplane.server.settings import ServerSettings

SHUTDOWN_GRACE_SECONDS = 5.0


class EmbeddedServer:
    """An async context manager that serves the queue API until the block ends."""

    def __init__(
        self,
        data_dir: Path | None = None,
        db_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        settings: ServerSettings | None = None,
        log_level: str = "warning",
        handle_signals: bool = False,
    ) -> None:
        self.settings = settings or ServerSettings(
            data_dir=data_dir if data_dir is not None else paths.data_dir(), db_url=db_url
        )
        self.host = host
        self.port = port
        self.state = build_state(self.settings)
        self.app = create_app(state=self.state)
        self._log_level = log_level
        self._handle_signals = handle_signals
        self._server: _Uvicorn | None = None
        self._stack = contextlib.AsyncExitStack()
        self._tasks: anyio.abc.TaskGroup | None = None
        self._finished: anyio.Event | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def admin_token(self) -> str:
        if self.state.admin_token is None:
            raise RuntimeError("the server has not started")
        return self.state.admin_token

    @property
    def admin_token_path(self) -> Path:
        return self.settings.admin_token_path

    async def create_token(
        self, role: str, queues: Sequence[str] | None = None, *, name: str | None = None
    ) -> str:
        """A new token of ``role`` (agent tokens name their queues); shown only here."""
        token = new_token()
        await self.state.store.add_token(hash_token(token), role, name, list(queues or []))
        return token

    async def ensure_queue(self, name: str, config: dict[str, Any]) -> Queue:
        """Create the queue, or update it when its config differs; raises ConfigError."""
        warnings = self.state.validator.check_queue(config)
        try:
            existing = await self.state.store.get_queue(name)
        except NotFound:
            return await self.state.store.create_queue(name, config, warnings)
        if existing.config == config:
            return existing
        return await self.state.store.update_queue(name, config, warnings)

    async def wait_closed(self) -> None:
        """Block until the server stops (a signal, when ``handle_signals`` is set)."""
        if self._finished is None:
            raise RuntimeError("the server has not started")
        await self._finished.wait()

    async def __aenter__(self) -> EmbeddedServer:
        try:
            await bootstrap(self.state)
            sock = _bind(self.host, self.port)
        except BaseException:
            await self.state.store.close()
            raise
        self.port = sock.getsockname()[1]
        self._finished = finished = anyio.Event()
        config = uvicorn.Config(
            self.app,
            log_level=self._log_level,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
            http=guarded_protocol(
                self.settings.header_timeout,
                connection_limit(self.settings.max_connections),
                self.settings.body_timeout,
            ),
            timeout_keep_alive=self.settings.idle_timeout,  # type: ignore[arg-type]
        )
        self._server = _Uvicorn(config, on_exit=self.state.hub.close, signals=self._handle_signals)
        self._tasks = await self._stack.enter_async_context(anyio.create_task_group())
        self._tasks.start_soon(self._serve, self._server, sock, finished)
        while not self._server.started:
            if finished.is_set():
                await self._stack.aclose()
                await self.state.store.close()
                raise RuntimeError("the queue server failed to start (see the log above)")
            await anyio.sleep(0.005)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, finished, tasks = self._server, self._finished, self._tasks
        if server is not None and finished is not None and tasks is not None:
            self.state.hub.close()
            server.should_exit = True
            # Shielded so that a cancelled host still shuts the server down cleanly.
            with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_GRACE_SECONDS * 2):
                await finished.wait()
            if not finished.is_set():
                tasks.cancel_scope.cancel()
            await self._stack.aclose()
        await self.state.store.close()

    @staticmethod
    async def _serve(server: _Uvicorn, sock: socket.socket, finished: anyio.Event) -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit:
            pass  # uvicorn's way of saying startup failed; reported by __aenter__
        finally:
            sock.close()
            finished.set()


class _Uvicorn(uvicorn.Server):
    """uvicorn that wakes long-polls on exit and never re-raises the signal it caught.

    uvicorn re-raises a captured SIGINT after a graceful shutdown, which would
    turn a clean Ctrl-C of ``launchplane server`` into a traceback, and as
    an embedded server it must not take SIGINT/SIGTERM from its host at all.
    """

    def __init__(self, config: uvicorn.Config, *, on_exit: Callable[[], None], signals: bool):
        super().__init__(config)
        self._on_exit = on_exit
        self._signals = signals
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self._signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        self._loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM)
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_exit)
        super().handle_exit(sig, frame)


def _bind(host: str, port: int) -> socket.socket:
    """A bound TCP socket. ``proto`` must be IPPROTO_TCP: asyncio sets TCP_NODELAY on
    accepted connections only then, and without it every keep-alive response stalls
    ~40 ms (Nagle's algorithm meeting delayed ACKs)."""
    family, kind, proto, _, _ = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock

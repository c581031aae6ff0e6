"""The FastAPI application: routers, error format, body limit, startup and background tasks.

``create_app`` builds a fresh app around one :class:`Store`; nothing is
global, so tests and ``EmbeddedServer`` can run several servers in one
process. Its lifespan runs the lease sweeper and, on PostgreSQL, the LISTEN
connection that wakes this process's long-polls (``listener.py``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from launchplane._version import __version__
from launchplane.core import paths
from launchplane.core.errors import ConfigError
from launchplane.server import routes_admin, routes_agents, routes_jobs
from launchplane.server import tables as t
from launchplane.server.auth import TokenResolver, ensure_admin_token
from launchplane.server.deps import ServerState
from launchplane.server.hub import Hub
from launchplane.server.limits import BodyLimit
from launchplane.server.problems import Problem, storage_full
from launchplane.server.settings import ServerSettings
from launchplane.server.store import Store
from launchplane.server.validation import Validator

API_PREFIX = "/api/v1"
SWEEP_EVERY_SECONDS = 5.0
log = logging.getLogger("launchplane.server")


def build_state(settings: ServerSettings, store: Store | None = None) -> ServerState:
    hub = store.hub if store is not None else Hub(settings.hub_poll_interval)
    store = store or Store(settings.database_url, hub)
    return ServerState(
        settings=settings,
        store=store,
        hub=hub,
        tokens=TokenResolver(store),
        validator=Validator(settings.plugins),
    )


async def bootstrap(state: ServerState) -> None:
    """Open the database and make sure the admin token exists; safe to call twice.

    Opening also renews every live lease (``Store.renew_all_leases``): agents
    could not heartbeat while this server was down, and must not lose their
    jobs for it.
    """
    paths.private_dir(state.settings.data_dir)
    if not state.store.is_open:
        await state.store.open()
        renewed = await state.store.renew_all_leases()
        if renewed:
            log.info("renewed %d live lease(s) held from before this start", renewed)
    if state.admin_token is None:
        state.admin_token = await ensure_admin_token(state.store, state.settings.admin_token_path)


def create_app(settings: ServerSettings | None = None, state: ServerState | None = None) -> FastAPI:
    state = state or build_state(settings or ServerSettings.default())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await bootstrap(state)
        stop = anyio.Event()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(sweep_forever, state, stop)
            tasks.start_soon(state.store.listen, stop)
            yield
            state.hub.close()
            stop.set()
        await state.store.close()

    app = FastAPI(
        title="launchplane queue server",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.launchplane = state
    for module in (routes_admin, routes_jobs, routes_agents):
        app.include_router(module.router, prefix=API_PREFIX)
    app.add_middleware(BodyLimit, max_bytes=state.settings.max_body_bytes)
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(ConfigError, _config_invalid)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _storage_error)
    app.add_exception_handler(OSError, _storage_error)
    app.add_exception_handler(Exception, _unexpected)
    return app


async def sweep_forever(state: ServerState, stop: anyio.Event) -> None:
    """End expired leases and retry backoffs, every 5 s or sooner when one is due.

    Sooner means a third of the shortest live lease TTL, or the end of the
    earliest backoff. Stopped by ``stop`` between sweeps, never cancelled
    inside one: a database call cancelled half-way leaves a connection the
    pool cannot close cleanly.
    """
    while True:
        interval = state.settings.sweep_interval
        if interval is None:
            try:
                due = await state.store.sweep_due_in(t.utcnow())
            except Exception:
                log.exception("lease sweep failed; retrying")
                due = None
            interval = SWEEP_EVERY_SECONDS if due is None else min(SWEEP_EVERY_SECONDS, due)
        with anyio.move_on_after(max(interval, 0.01)):
            await stop.wait()
        if stop.is_set():
            return
        try:
            await state.store.sweep()
        except Exception:
            log.exception("lease sweep failed; retrying")


def _error(status: int, message: str, errors: list[dict[str, str]] | None = None) -> JSONResponse:
    return JSONResponse({"detail": {"message": message, "errors": errors or []}}, status)


async def _problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    response = JSONResponse(exc.body(), exc.status)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _config_invalid(_: Request, exc: Exception) -> JSONResponse:
    """A job or queue config that fails validation: every problem, each with its path."""
    assert isinstance(exc, ConfigError)
    head = exc.source or "invalid configuration"
    if len(exc.errors) == 1:
        message = f"{head}: {exc.errors[0]}"
    else:
        message = f"{head}: {len(exc.errors)} problems"
    return _error(422, message, exc.as_dicts())


async def _request_invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_field_error(item) for item in exc.errors()]
    if any(item.get("type") == "json_invalid" for item in exc.errors()):
        message = "malformed JSON body"
    elif len(errors) == 1:
        message = f"invalid request: {errors[0]['path'] or '<body>'}: {errors[0]['message']}"
    else:
        message = f"invalid request: {len(errors)} problems"
    return _error(422, message, errors)


def _field_error(item: dict[str, Any]) -> dict[str, str]:
    loc = [str(part) for part in item.get("loc", ())]
    if loc and loc[0] == "body":
        loc = loc[1:]
    return {"path": ".".join(loc), "message": str(item.get("msg", "invalid"))}


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        # FastAPI's only 400: a body its JSON parser gave up on (nesting too deep).
        return _error(422, f"malformed JSON body: {exc.detail}")
    response = _error(exc.status_code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _storage_error(request: Request, exc: Exception) -> JSONResponse:
    """A database or file error: a full disk is a 507 that says so, logged in one line.

    Any other such error is re-raised, to :func:`_unexpected` (a 500 whose
    traceback uvicorn logs). The log line names the request, never the
    statement or its parameters (they can hold a job's spec).
    """
    full = storage_full(exc)
    if full is None:
        raise exc
    log.warning("%s %s: 507, the server's storage is full", request.method, request.url.path)
    return await _problem(request, full)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    """A bug: the answer keeps the error format; uvicorn logs the traceback."""
    return _error(500, "internal server error")

"""YAML request bodies: queue configs and jobs are written in YAML, so the API takes them as is.

A route built with :class:`YamlBodyRoute` accepts its body as JSON or, with
``Content-Type: application/yaml`` (or ``application/x-yaml``), as YAML. The
YAML is parsed by :func:`launchplane.core.yamlsafe.load_document` - the same
safe loader as config files: plain data only (an unknown tag such as
``!!python/object`` is refused), duplicate keys refused, and bounded size,
nesting depth and alias expansion, so a "billion laughs" body is refused in
milliseconds - and then handed to the route exactly as the equivalent JSON
body would be. A JSON body's text is held to the loader's character rule as
well (no control character but tab, newline and CR, no non-character), so
both forms of a document are refused alike, naming the character, its line
and its column. Every refusal is a ``422`` in the API's error format.

Parsing runs in a worker thread: a large YAML document takes the pure-Python
parser a noticeable time, which must not stall the event loop that serves
every long-poll and heartbeat.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import anyio.to_thread
from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from launchplane.core.errors import ConfigError
from launchplane.core.yamlsafe import check_characters, load_document

YAML_MEDIA_TYPES = ("application/yaml", "application/x-yaml")
SOURCE = "request body"


def yaml_alternative(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` that documents the YAML form of a route's ``model`` body."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"content": {media: {"schema": schema} for media in YAML_MEDIA_TYPES}}}


class YamlBodyRoute(APIRoute):
    """An API route whose JSON body may also be sent as YAML (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            if _media_type(request) in YAML_MEDIA_TYPES:
                request = _JsonView(request, await _yaml_to_json(await request.body()))
            else:
                _check_json_text(await request.body())
            return await handler(request)

        return handle


class _JsonView(Request):
    """The request as the route sees it: the YAML body replaced by its JSON equivalent."""

    def __init__(self, request: Request, body: bytes) -> None:
        headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
        scope = {**request.scope, "headers": [*headers, (b"content-type", b"application/json")]}
        super().__init__(scope, request.receive)
        self._json_body = body

    async def body(self) -> bytes:
        return self._json_body


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def _check_json_text(raw: bytes) -> None:
    """Refuse a JSON document whose text holds a character a config may not hold.

    A body that is not UTF-8 is left to the JSON parser, which refuses it.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    check_characters(text, source=SOURCE, syntax="json")


async def _yaml_to_json(raw: bytes) -> bytes:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"the YAML body is not UTF-8 text (byte {exc.start})", source=SOURCE
        ) from None
    data = await anyio.to_thread.run_sync(
        partial(load_document, text, source=SOURCE, syntax="yaml")
    )
    try:
        return json.dumps(data).encode()
    except (TypeError, ValueError) as exc:  # e.g. a mapping used as a key
        raise ConfigError(f"the YAML body holds what JSON cannot: {exc}", source=SOURCE) from None

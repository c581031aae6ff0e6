"""Hostile request bodies are refused fast, in the API's error format, and never crash the server.

* every write endpoint (taken from the OpenAPI document) answers 413 to a body
  over the limit, declared or streamed;
* queue and job bodies may be YAML; alias bombs, deep nesting, unknown tags and
  duplicate keys are refused with 422 in milliseconds;
* what JSON parsers accept but no store keeps (NUL, lone surrogates, NaN,
  absurd nesting) is a 422, never a 500.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

QUEUE = "hostile"
LIMIT = 1 << 20
YAML_TYPES = ("application/yaml", "application/x-yaml")
BILLION_LAUGHS = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{chr(98 + n)}: &{chr(98 + n)} [{', '.join(['*' + chr(97 + n)] * 9)}]"
            for n in range(8)
        ),
    ]
)
"""Nine levels of nine aliases: a billion "lol"s if expanded."""


@pytest.fixture
async def http(server: EmbeddedServer) -> AsyncIterator[httpx.AsyncClient]:
    await server.ensure_queue(QUEUE, {"resource": "local-process"})
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with httpx.AsyncClient(base_url=server.url + "/api/v1", headers=headers) as client:
        yield client


async def write_operations(http: httpx.AsyncClient) -> list[tuple[str, str]]:
    document = (await http.get("/openapi.json")).json()
    operations = [
        (method.upper(), path.removeprefix("/api/v1").replace("{", "").replace("}", ""))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    ]
    assert len(operations) >= 10
    return operations


async def test_every_write_endpoint_refuses_an_oversized_body(http: httpx.AsyncClient) -> None:
    oversized = b'{"x": "' + b"x" * LIMIT + b'"}'

    async def streamed() -> AsyncIterator[bytes]:
        for start in range(0, len(oversized), 64 * 1024):
            yield oversized[start : start + 64 * 1024]

    for method, path in await write_operations(http):
        for content in (oversized, streamed()):
            answer = await http.request(
                method, path, content=content, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code == 413, (method, path, answer.text)
            assert answer.json()["detail"]["message"] == f"request body larger than {LIMIT} bytes"


@pytest.mark.parametrize("media_type", YAML_TYPES)
async def test_queue_and_job_bodies_may_be_yaml(http: httpx.AsyncClient, media_type: str) -> None:
    headers = {"Content-Type": media_type}
    created = await http.post(
        "/queues",
        headers=headers,
        content=b"name: yaml-queue\nconfig:\n  resource: local-process\n  env: {LR: '3e-4'}\n",
    )
    assert created.status_code == 201, created.text
    assert created.json()["config"] == {"resource": "local-process", "env": {"LR": "3e-4"}}
    updated = await http.put(
        "/queues/yaml-queue", headers=headers, content=b"config:\n  lease_ttl_seconds: 5\n"
    )
    assert (updated.status_code, updated.json()["version"]) == (200, 2)
    job = "queue: yaml-queue\njob:\n  command: [python, train.py]\n  hyperparameters: {lr: 3e-4}\n"
    submitted = await http.post("/jobs", headers=headers, content=job.encode())
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["spec"]["hyperparameters"] == {"lr": 0.0003}
    assert (await http.delete("/queues/yaml-queue")).status_code == 405


YAML_ATTACKS = {
    "billion laughs": f"name: bomb\nconfig:\n  {BILLION_LAUGHS.replace(chr(10), chr(10) + '  ')}\n",
    "alias fan-out": "name: fan\nconfig:\n  a: &x [1, 2, 3, 4, 5, 6, 7, 8]\n  b: ["
    + ", ".join(["*x"] * 150)
    + "]\n",
    "deep nesting": "name: deep\nconfig: " + "[" * 5000 + "]" * 5000 + "\n",
    "python tag": "name: pwn\nconfig: !!python/object/apply:os.system ['touch /tmp/pwned']\n",
    "custom tag": "name: tag\nconfig: !vault {path: secret}\n",
    "binary tag": "name: bin\nconfig: {blob: !!binary aGVsbG8=}\n",
    "duplicate key": "name: dup\nconfig: {resource: local-process, resource: docker}\n",
    "not a mapping": "- just\n- a list\n",
    "broken syntax": "name: [unclosed\n",
    "infinity": "name: inf\nconfig: {lease_ttl_seconds: .inf}\n",
}


@pytest.mark.parametrize("attack", list(YAML_ATTACKS))
async def test_hostile_yaml_is_refused_in_milliseconds(
    http: httpx.AsyncClient, attack: str
) -> None:
    started = time.perf_counter()
    answer = await http.post(
        "/queues", headers={"Content-Type": "application/yaml"}, content=YAML_ATTACKS[attack]
    )
    elapsed = (time.perf_counter() - started) * 1000
    print(f"\n{attack}: {answer.status_code} in {elapsed:.1f} ms")
    assert answer.status_code in (400, 422), answer.text
    assert answer.json()["detail"]["message"]
    assert elapsed < 2000
    assert (await http.get("/health")).status_code == 200


async def test_yaml_that_is_not_utf8_is_refused(http: httpx.AsyncClient) -> None:
    answer = await http.post(
        "/jobs", headers={"Content-Type": "application/yaml"}, content=b"queue: \xff\xfe\n"
    )
    assert answer.status_code == 422
    assert "not UTF-8" in answer.json()["detail"]["message"]


HOSTILE_JSON: dict[str, tuple[str, str, bytes]] = {
    "nesting 100k deep": ("POST", "/jobs", b'{"queue": "q", "job": ' + b"[" * 100_000 + b"}"),
    "nesting under the parser's limit": (
        "POST",
        "/queues",
        b'{"name": "deep", "config": {"a": ' + b'{"a": ' * 500 + b"1" + b"}" * 502,
    ),
    "lone surrogate in a job": (
        "POST",
        "/jobs",
        b'{"queue": "hostile", "job": {"name": "\\ud800"}}',
    ),
    "lone surrogate as a key": (
        "POST",
        "/queues",
        b'{"name": "k", "config": {"env": {"\\udfff": "x"}}}',
    ),
    "NUL in a job": ("POST", "/jobs", b'{"queue": "hostile", "job": {"args": ["a\\u0000b"]}}'),
    "NUL in a queue name": ("POST", "/jobs", b'{"queue": "host\\u0000ile", "job": {}}'),
    "NaN": ("POST", "/jobs", b'{"queue": "hostile", "job": {"hyperparameters": {"x": NaN}}}'),
    "Infinity": (
        "POST",
        "/jobs",
        b'{"queue": "hostile", "job": {"hyperparameters": {"x": 1e999}}}',
    ),
    "huge integer": (
        "POST",
        "/jobs",
        b'{"queue": "hostile", "template_variables": {"n": 1' + b"0" * 5000 + b"}}",
    ),
    "surrogate in a lease id": ("POST", "/heartbeat", b'{"agent_id": "a", "leases": ["\\ud800"]}'),
    "unknown key that looks like a type (found by fuzzing)": (
        "POST",
        "/queues",
        b'{"name": "typed", "config": {"list[str]": 1, "[|": [[], {}]}}',
    ),
    "NUL in an agent id": ("POST", "/agents", b'{"agent_id": "a\\u0000", "queues": []}'),
    "surrogate in a variable": (
        "POST",
        "/jobs",
        b'{"queue": "hostile", "template_variables": {"\\ud800": 1}}',
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE_JSON))
async def test_hostile_json_is_a_422_not_a_500(http: httpx.AsyncClient, case: str) -> None:
    method, path, body = HOSTILE_JSON[case]
    answer = await http.request(
        method, path, content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    detail: dict[str, Any] = answer.json()["detail"]
    assert detail["message"] and all(set(e) == {"path", "message"} for e in detail["errors"])


async def test_hostile_path_and_query_values_are_not_500(http: httpx.AsyncClient) -> None:
    for path in (
        "/jobs/j-%00",
        "/jobs/%ED%A0%80/logs",
        "/queues/%00",
        "/jobs?state=sucess",
        "/jobs?queue=%00",
        "/jobs?limit=99999999999999999999999",
    ):
        answer = await http.get(path)
        assert answer.status_code in (404, 422), (path, answer.text)


CHARACTERS = {
    "\x00": "control character U+0000 (NUL)",
    "\x07": "control character U+0007 (BEL)",
    "\x1b": "control character U+001B (ESC)",
    "\x7f": "control character U+007F (DEL)",
    "\x85": "control character U+0085 (C1 control)",
    "\ufffe": "non-character U+FFFE",
    "\U0010ffff": "non-character U+10FFFF",
}
"""What a document's text may not hold, as the error names it."""
DOCUMENTS = {
    # route, syntax -> the body with "@" where the character goes (line 3, column 10)
    ("/jobs", "yaml"): "queue: hostile\njob:\n  name: a@b\n",
    ("/jobs", "json"): '{"queue": "hostile",\n "job": {\n  "name": "a@b"}}',
    ("/queues", "yaml"): "name: odd\nconfig:\n  env: {X: a@b}\n",
    ("/queues", "json"): '{"name": "odd",\n "config": {\n "env": "a@b"}}',
}


@pytest.mark.parametrize("document", list(DOCUMENTS), ids="-".join)
@pytest.mark.parametrize("character", list(CHARACTERS), ids=ascii)
async def test_a_control_character_or_non_character_is_a_422_naming_it_and_where(
    http: httpx.AsyncClient, document: tuple[str, str], character: str
) -> None:
    route, syntax = document
    body = DOCUMENTS[document].replace("@", character)
    column = DOCUMENTS[document].splitlines()[2].index("@") + 1
    media_type = "application/yaml" if syntax == "yaml" else "application/json"
    answer = await http.post(route, content=body.encode(), headers={"Content-Type": media_type})
    assert answer.status_code == 422, answer.text
    message = answer.json()["detail"]["message"]
    assert message.startswith(
        f"request body: line 3: {CHARACTERS[character]} is not allowed in {syntax.upper()} "
        f"(column {column})"
    ), message
    assert (await http.get("/health")).status_code == 200


async def test_control_characters_written_as_escapes_are_data(http: httpx.AsyncClient) -> None:
    yaml_job = 'queue: hostile\njob: {name: "bell\\a esc\\e"}\n'
    json_job = '{"queue": "hostile", "job": {"name": "bell\\u0007 esc\\u001b"}}'
    for media_type, body in (("application/yaml", yaml_job), ("application/json", json_job)):
        answer = await http.post("/jobs", content=body, headers={"Content-Type": media_type})
        assert answer.status_code == 201, answer.text
        assert answer.json()["spec"]["name"] == "bell\a esc\x1b"

"""Request and response bodies of the HTTP API (docs/api.md), as pydantic models.

They double as the store's return types, so a row is turned into its API
shape in exactly one place and the OpenAPI document describes what is sent.
Request models forbid unknown keys: a misspelt field is a 422 naming it, not
a silently ignored option.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from launchplane.core.spec import Priority, priority_name
from launchplane.core.yamlsafe import MAX_DEPTH

Role = Literal["admin", "submitter", "agent"]
Scalar = str | int | float | bool
# Spelled out for the OpenAPI document; tests/server/test_lifecycle.py checks that they
# name the states of launchplane.core.states.
ActiveState = Literal["claimed", "resolving", "building", "running"]
FinalState = Literal["succeeded", "failed", "cancelled"]
JobState = Literal[
    "queued", "claimed", "resolving", "building", "running", "succeeded", "failed", "cancelled"
]

QUEUE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
INT32 = 2**31
MAX_SEQ = 2**62


def _text_problem(text: str) -> str | None:
    """Why a string cannot be stored and sent back as UTF-8 JSON on every backend, if it cannot.

    A NUL cannot be stored in a PostgreSQL text or JSONB value (nor passed to a
    process in an argument or environment variable), and a lone surrogate
    (``"\\ud800"`` is valid JSON) cannot be encoded as UTF-8 at all: both would
    fail deep in the server as a 500, so they are refused at the door.
    """
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (it holds a lone surrogate such as \\ud800)"
    return None


def _clean_text(text: str) -> str:
    problem = _text_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


def _plain_document(document: dict[str, Any]) -> dict[str, Any]:
    """Refuse what JSON parsers accept but no backend stores faithfully.

    * nesting deeper than a config file may be (as ``yamlsafe`` does): a small
      body can nest deeply enough to break serialising the answer later;
    * NUL characters and lone surrogates in keys or strings (see ``_text_problem``);
    * ``NaN`` and ``Infinity``, which Python's JSON parser accepts but JSON, and
      PostgreSQL's ``jsonb``, do not.

    The message names the path of the first offending value.
    """
    stack: list[tuple[Any, tuple[str, ...]]] = [(document, ())]
    while stack:
        value, path = stack.pop()
        where = ".".join(path) or "<root>"
        if isinstance(value, str):
            problem = _text_problem(value)
            if problem is not None:
                raise ValueError(f"{where}: {problem}")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where}: {value} is not a JSON number")
        elif isinstance(value, dict | list):
            if len(path) >= MAX_DEPTH:
                raise ValueError(f"{where}: nested deeper than {MAX_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in items:
                segment = str(key)
                problem = _text_problem(segment) if isinstance(key, str) else None
                if problem is not None:
                    raise ValueError(f"{where}: a key {problem}")
                stack.append((child, (*path, segment)))
    return document


def _clean_mapping(mapping: dict[str, Any]) -> dict[str, Any]:
    """Keys and string values checked as a whole, so no bad key ends up in an error's path."""
    for key, value in mapping.items():
        problem = _text_problem(key)
        if problem is not None:
            raise ValueError(f"a key {problem}")
        problem = _text_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise ValueError(f"{key}: {problem}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key}: {value} is not a JSON number")
    return mapping


Text = Annotated[str, AfterValidator(_clean_text)]
"""A string from a client that the database and the answer's JSON can hold."""


def _encodable(lines: list[str]) -> list[str]:
    """Log lines may hold a NUL (programs print binary; the store replaces it), not a surrogate.

    One pass over the whole batch: a batch can hold ~350,000 short lines, and
    a validator per line cost 0.2 s of the event loop. The line at fault is
    looked for only when the pass finds one.
    """
    try:
        "".join(lines).encode("utf-8")
    except UnicodeEncodeError:
        for index, line in enumerate(lines):
            problem = _text_problem(line.replace("\x00", ""))
            if problem is not None:
                raise ValueError(f"line {index} {problem}") from None
    return lines


OutputLines = Annotated[list[str], AfterValidator(_encodable)]

Document = Annotated[dict[str, Any], AfterValidator(_plain_document)]
"""A free-form JSON object from a client (a config, a job, a record), depth-limited."""


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(BaseModel):
    status: str
    version: str


class TokenCreate(Request):
    role: Role
    name: Text | None = Field(default=None, max_length=200)
    queues: list[Text] = Field(
        default_factory=list,
        description="Agent tokens only: the queues it may claim from ('*' for all).",
    )
    expires_in_seconds: float | None = Field(
        default=None,
        gt=0,
        le=100 * 365 * 86400,
        description="Refused this many seconds after creation (`--expires 30d`); default: never.",
    )


class TokenOut(BaseModel):
    token: str = Field(description="Shown once; only its SHA-256 hash is stored.")
    id: int
    role: Role
    name: str | None
    queues: list[str]
    expires_at: datetime | None


class TokenInfo(BaseModel):
    """A token as ``GET /tokens`` lists it: never its value (the server does not have it)."""

    id: int
    role: Role
    name: str | None
    queues: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    state: Literal["active", "expired", "revoked"]


class TokenList(BaseModel):
    tokens: list[TokenInfo]


class QueueCreate(Request):
    name: str = Field(pattern=QUEUE_NAME_PATTERN)
    config: Document = Field(description="A QueueConfig.")


class QueueUpdate(Request):
    config: Document = Field(description="A QueueConfig.")


class Queue(BaseModel):
    name: str
    config: dict[str, Any]
    version: int
    warnings: list[str]
    created_at: datetime
    updated_at: datetime


class QueueList(BaseModel):
    queues: list[Queue]


class JobSubmit(Request):
    queue: Text
    job: Document = Field(default_factory=dict, description="A JobSpec.")
    overrides: list[Document] = Field(
        default_factory=list, description="Override layers, applied in order over the job."
    )
    template_variables: Annotated[dict[str, Scalar], AfterValidator(_clean_mapping)] = Field(
        default_factory=dict, description="Values for the queue's template variables."
    )
    priority: Annotated[Priority | None, BeforeValidator(priority_name)] = Field(
        default=None,
        description="critical, high, medium or low (or W&B's number, 0 critical .. 3 low; "
        "any case): applied as a last override layer, over the job and every other layer "
        "(so a queue's lock on priority refuses it too). Claims take the highest priority "
        "first, the oldest first within one.",
    )
    strict_pins: bool = Field(
        default=False,
        description="Refuse the job (422, each path with its fix) if an input is unpinned: "
        "what the answer's `warnings` would list (`--strict-pins`).",
    )


class Event(BaseModel):
    state: str
    stage: str | None = None
    reason: str | None = None
    attempt: int
    at: datetime
    details: dict[str, Any] | None = None


class Job(BaseModel):
    id: str
    queue: str
    state: str
    attempt: int
    created_at: datetime
    updated_at: datetime
    spec: dict[str, Any]
    overrides: list[dict[str, Any]]
    template_variables: dict[str, Any]
    queue_version: int
    resolved: dict[str, Any]
    priority: Priority = Field(
        description="The resolved job's priority (medium when it names none): its place in "
        "the claim order."
    )
    agent_id: str | None
    exit_code: int | None
    failure_stage: str | None
    reason: str | None
    cancel_requested: bool
    events: list[Event] = Field(default_factory=list)


class JobAnswer(Job):
    """A job as the API answers it: with the warnings of its resolved spec (derived on
    each answer from the stored ``resolved``, not stored themselves)."""

    warnings: list[str] = Field(
        default_factory=list,
        description="`path: message` of each unpinned input of the resolved job (a branch "
        "without a commit, an image by tag, an artifact by alias, an unpinned requirement), "
        "with its fix.",
    )


class JobList(BaseModel):
    jobs: list[JobAnswer]
    next: str | None = Field(
        default=None,
        description="Pass as `cursor` for the next page; null: this is the last page. A page "
        "holds up to `limit` jobs and about 4 MiB of their documents (at least one job).",
    )


class LogLine(BaseModel):
    seq: int
    attempt: int = Field(
        description="The attempt whose run printed the line (late lines of an earlier "
        "attempt come after a later attempt's: see `POST /leases/{id}/late-logs`)."
    )
    line: str


class LogPage(BaseModel):
    lines: list[LogLine] = Field(
        description="Up to 1,000 lines and about 1 MiB of text (at least one line, if any)."
    )
    next: int = Field(description="Pass as `after` to read on from here.")
    done: bool = Field(description="The job is final and every line has been read.")


class AgentRegister(Request):
    agent_id: Text = Field(min_length=1, max_length=200)
    host: Text = Field(default="", max_length=255)
    queues: list[Text] = Field(default_factory=list)
    version: Text = Field(default="", max_length=100)
    plugins: Annotated[dict[str, str], AfterValidator(_clean_mapping)] = Field(default_factory=dict)


class Agent(BaseModel):
    agent_id: str
    host: str
    queues: list[str]
    version: str
    plugins: dict[str, str]
    last_heartbeat: datetime | None
    registered_at: datetime


class AgentList(BaseModel):
    agents: list[Agent]


class ClaimRequest(Request):
    agent_id: Text = Field(min_length=1, max_length=200)


class Lease(BaseModel):
    """A claimed job, as the agent receives it (the agent's typed view: ``core/lease.py``)."""

    lease_id: str
    job_id: str
    attempt: int
    queue: str
    queue_version: int = Field(description="The queue config version the job was resolved with.")
    resolved: dict[str, Any] = Field(
        description="The job as the server resolved it at submit (a ResolvedJob), sent as "
        "stored: the agent launches it without resolving it again."
    )
    lease_ttl_seconds: float
    expires_at: datetime
    cancel_requested: bool
    log_count: int = Field(
        default=0,
        description="Where the lease's log numbering stands: the next line the agent "
        "sends is numbered log_count + 1 (its `first_seq`). At a claim, the lines in the "
        "job's log; for a lease handed back at registration, the number of the lease's "
        "last line stored. It is the seq the line gets unless late lines of an ended lease "
        "were appended meanwhile.",
    )


class Registered(BaseModel):
    agent_id: str
    leases: list[Lease]


class HeartbeatRequest(Request):
    agent_id: Text = Field(min_length=1, max_length=200)
    leases: list[Text] = Field(default_factory=list)


class HeartbeatResponse(BaseModel):
    renewed: list[str]
    stale: list[str]
    cancel: list[str]
    lease_ttl_seconds: float


class EventIn(Request):
    state: ActiveState
    stage: Text | None = Field(default=None, max_length=64)
    reason: Text | None = None
    details: Document | None = None


class LogsIn(Request):
    lines: OutputLines = Field(
        description="Output lines, stored in order; a NUL is stored as U+FFFD."
    )
    first_seq: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SEQ,
        description="The seq the sender expects the first line to get. With it a retried "
        "batch is stored once: lines the log already holds (seq <= its count) are skipped. "
        "Without it, every line is appended.",
    )


class LogsAppended(BaseModel):
    next: int = Field(description="The seq of the last line stored.")


class LateLogsIn(Request):
    lines: OutputLines = Field(
        description="Output lines the lease's run wrote that its agent could not send while "
        "the lease lived; stored in order at the log's end with the lease's attempt. "
        "Empty: only asks for `position`."
    )
    first_seq: int = Field(
        ge=1,
        le=MAX_SEQ,
        description="The seq of the first line in the lease's own numbering (as its "
        "`/logs` batches are numbered, from the claim's `log_count` + 1): lines the lease "
        "has stored (seq <= its `position`) are skipped, so a retried batch is stored once.",
    )


class LateLogsAppended(BaseModel):
    next: int = Field(description="The seq of the log's last line.")
    position: int = Field(
        description="The seq, in the lease's own numbering, of the last line stored under "
        "the lease: its next late line is numbered position + 1."
    )


class CompleteIn(Request):
    state: FinalState
    exit_code: int | None = Field(default=None, ge=-INT32, lt=INT32)
    stage: Text | None = Field(default=None, max_length=64)
    reason: Text | None = None
    record: Document = Field(default_factory=dict)
    infrastructure_failure: bool = Field(
        default=False,
        description="A failed job failed for the infrastructure (image pull, eviction, lost "
        "node), not its code: the queue's retry policy may run it again.",
    )


class ReleaseIn(Request):
    reason: Text | None = None


class Empty(BaseModel):
    pass

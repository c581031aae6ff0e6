"""Request and response bodies of the HTTP API (docs/api.md), as pydantic models.

They double as the store's return types, so a row is turned into its API
shape in exactly one place and the OpenAPI document describes what is sent.
Request models forbid unknown keys: a misspelt field is a 422 naming it, not
a silently ignored option.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from launchplane.core.yamlsafe import MAX_DEPTH

Role = Literal["admin", "submitter", "agent"]
Scalar = str | int | float | bool
ActiveState = Literal["claimed", "resolving", "building", "running"]
FinalState = Literal["succeeded", "failed", "cancelled"]

FINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE_STATES: frozenset[str] = frozenset({"claimed", "resolving", "building", "running"})

QUEUE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
INT32 = 2**31
MAX_SEQ = 2**62


def _within_depth(document: dict[str, Any]) -> dict[str, Any]:
    """Refuse documents nested deeper than a config file may be (as ``yamlsafe`` does).

    Without a bound a small body can nest deeply enough to break JSON
    serialisation of the answer, long after it was stored.
    """
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)
    return document


Document = Annotated[dict[str, Any], AfterValidator(_within_depth)]
"""A free-form JSON object from a client (a config, a job, a record), depth-limited."""


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(BaseModel):
    status: str
    version: str


class TokenCreate(Request):
    role: Role
    name: str | None = Field(default=None, max_length=200)
    queues: list[str] = Field(
        default_factory=list,
        description="Agent tokens only: the queues it may claim from ('*' for all).",
    )


class TokenOut(BaseModel):
    token: str = Field(description="Shown once; only its SHA-256 hash is stored.")
    role: Role
    name: str | None
    queues: list[str]


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
    queue: str
    job: Document = Field(default_factory=dict, description="A JobSpec.")
    overrides: list[Document] = Field(
        default_factory=list, description="Override layers, applied in order over the job."
    )
    template_variables: dict[str, Scalar] = Field(
        default_factory=dict, description="Values for the queue's template variables."
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
    agent_id: str | None
    exit_code: int | None
    failure_stage: str | None
    reason: str | None
    cancel_requested: bool
    events: list[Event] = Field(default_factory=list)


class JobList(BaseModel):
    jobs: list[Job]


class LogLine(BaseModel):
    seq: int
    line: str


class LogPage(BaseModel):
    lines: list[LogLine]
    next: int = Field(description="Pass as `after` to read on from here.")
    done: bool = Field(description="The job is final and every line has been read.")


class AgentRegister(Request):
    agent_id: str = Field(min_length=1, max_length=200)
    host: str = ""
    queues: list[str] = Field(default_factory=list)
    version: str = ""
    plugins: dict[str, str] = Field(default_factory=dict)


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
    agent_id: str = Field(min_length=1, max_length=200)


class Lease(BaseModel):
    lease_id: str
    job_id: str
    attempt: int
    queue: str
    queue_version: int
    queue_config: dict[str, Any]
    spec: dict[str, Any]
    overrides: list[dict[str, Any]]
    template_variables: dict[str, Any]
    lease_ttl_seconds: float
    expires_at: datetime
    cancel_requested: bool


class Registered(BaseModel):
    agent_id: str
    leases: list[Lease]


class HeartbeatRequest(Request):
    agent_id: str = Field(min_length=1, max_length=200)
    leases: list[str] = Field(default_factory=list)


class HeartbeatResponse(BaseModel):
    renewed: list[str]
    stale: list[str]
    cancel: list[str]
    lease_ttl_seconds: float


class EventIn(Request):
    state: ActiveState
    stage: str | None = Field(default=None, max_length=64)
    reason: str | None = None
    details: Document | None = None


class LogsIn(Request):
    lines: list[str]


class LogsAppended(BaseModel):
    next: int = Field(description="The seq of the last line stored.")


class CompleteIn(Request):
    state: FinalState
    exit_code: int | None = Field(default=None, ge=-INT32, lt=INT32)
    stage: str | None = Field(default=None, max_length=64)
    reason: str | None = None
    record: Document = Field(default_factory=dict)


class ReleaseIn(Request):
    reason: str | None = None


class Empty(BaseModel):
    pass

"""Request and response bodies of the HTTP API; the OpenAPI document is built from them."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from lg_deploy.db import jsonb
from lg_deploy.models import (
    ExecutionEvent,
    ExecutionState,
    ExecutionStatus,
    PageCursor,
    UnservedGraph,
)
from lg_deploy.webhooks.allowlist import URL_PATTERN, parse_webhook_url

GRAPH_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"


MAX_JSON_DEPTH = 32
MAX_STRING_CHARS = 262_144


def _webhook_url(value: str) -> str:
    """The URL when it is one lg-deploy can send to (parse_webhook_url's rules)."""
    parse_webhook_url(value)
    return value


# A webhook URL as run and execution bodies take it (the allow-list is checked apart).
WebhookUrl = Annotated[str, AfterValidator(_webhook_url)]


def check_storable(value: Any) -> Any:
    """Refuse JSON nested deeper than 32, strings over 256 Ki characters, and what jsonb refuses."""
    _check_shape(value)
    char = jsonb.unstorable_char(value)
    if char == jsonb.NUL:
        raise ValueError("must not contain NUL (\\u0000) characters")
    if char is not None:
        raise ValueError("must not contain unpaired surrogate characters")
    return value


def json_number(value: Any) -> Any:
    """Refuse what lax validation would turn into a number: booleans and strings."""
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number")
    return value


def _check_shape(value: Any) -> None:
    """Walk `value` without recursion; ValueError on the first limit it passes."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str) and len(item) > MAX_STRING_CHARS:
            raise ValueError(f"strings must be at most {MAX_STRING_CHARS} characters")
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"must not be nested deeper than {MAX_JSON_DEPTH} levels")
        children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children)


class SubmitExecution(BaseModel):
    """Body of POST /executions. Unknown fields are refused (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid")

    graph_id: str = Field(pattern=GRAPH_ID_PATTERN, description="a name from GET /graphs")
    input: dict[str, Any] = Field(default_factory=dict, description="the graph's input object")
    priority: int = Field(default=0, ge=-100, le=100, description="higher runs first")
    max_attempts: int | None = Field(
        default=None, ge=1, le=1000, description="claims allowed; default LG_DEPLOY_MAX_ATTEMPTS"
    )
    run_at: AwareDatetime | None = Field(default=None, description="not started before this")
    delay_seconds: float | None = Field(
        default=None, ge=0, le=31_536_000, description="not started before now plus this"
    )
    timeout_seconds: float | None = Field(
        default=None, gt=0, le=604_800, description="fail a run that lasts longer"
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="a second submit with this key returns the first execution",
    )
    webhook: WebhookUrl | None = Field(
        default=None,
        max_length=2048,
        description="POST the execution here once final, signed, retried (docs/webhooks.md)",
        json_schema_extra={"pattern": URL_PATTERN},
    )

    @model_validator(mode="after")
    def _one_schedule(self) -> SubmitExecution:
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("give run_at or delay_seconds, not both")
        return self

    @field_validator("priority", "max_attempts", "delay_seconds", "timeout_seconds", mode="before")
    @classmethod
    def _numbers_only(cls, value: Any) -> Any:
        return json_number(value)

    @field_validator("run_at", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValueError("must be an RFC 3339 date-time string")
        return value

    @field_validator("input")
    @classmethod
    def _storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        checked: dict[str, Any] = check_storable(value)
        return checked


class ExecutionPage(BaseModel):
    """One page of GET /executions, newest first."""

    items: list[ExecutionState]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null at end")


class EventList(BaseModel):
    """The history of one execution, oldest first."""

    items: list[ExecutionEvent]


class GraphInfo(BaseModel):
    """A graph this process serves."""

    graph_id: str


class GraphList(BaseModel):
    """The graphs this process serves (its workers claim only these), and those nobody serves."""

    items: list[GraphInfo] = Field(description="the graphs this process serves")
    worker_id: str = Field(description="this process's worker, as in lg_deploy.workers")
    unserved: list[UnservedGraph] = Field(
        description="graphs with QUEUED executions that no live worker serves"
    )


class Health(BaseModel):
    """Liveness or readiness, with the checks behind it."""

    status: str
    checks: dict[str, bool] = Field(default_factory=dict)
    graphs: list[str] | None = Field(default=None, description="the graphs this process serves")
    worker_id: str | None = None


class ErrorBody(BaseModel):
    """Every error response: a code, a readable message and the request id."""

    error: str = Field(description="machine-readable code, e.g. not_found")
    message: str
    request_id: str
    details: list[dict[str, Any]] | None = None
    known_graphs: list[str] | None = None


class ListQuery(BaseModel):
    """Query parameters of GET /executions."""

    model_config = ConfigDict(extra="forbid")

    status: ExecutionStatus | None = None
    graph_id: str | None = Field(default=None, pattern=GRAPH_ID_PATTERN)
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=200)


class NoQuery(BaseModel):
    """Routes that take no query parameters refuse any (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class WaitQuery(BaseModel):
    """Query parameters of GET /executions/{id}/wait."""

    model_config = ConfigDict(extra="forbid")

    timeout: float = Field(default=30.0, gt=0, le=300, description="seconds to wait at most")


def encode_cursor(state: ExecutionState) -> str:
    """An opaque cursor continuing after `state` in a newest-first listing."""
    raw = json.dumps([state.created_at.isoformat(), state.execution_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> PageCursor:
    """The position in an opaque cursor; ValueError when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, execution_id = json.loads(base64.urlsafe_b64decode(padded))
        return PageCursor(created_at=created_at, execution_id=execution_id)
    except Exception as error:
        raise ValueError("cursor is not valid; use next_cursor from a previous page") from error

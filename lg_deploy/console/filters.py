"""The executions page's filter form: query parameters to an ExecutionFilter, and back."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from lg_deploy.console.reads import ExecutionFilter, Keyset
from lg_deploy.models import ExecutionStatus

FILTER_FIELDS = ("status", "graph", "after", "before", "metadata", "thread", "q")
PAGE_SIZES = (25, 50, 100)
STATUSES = tuple(status.value for status in ExecutionStatus)


@dataclass
class FilterForm:
    """The form as submitted (to show it again), the filter it means, and what was wrong."""

    values: dict[str, str]
    wanted: ExecutionFilter
    cursor: Keyset | None = None
    limit: int = PAGE_SIZES[0]
    problems: dict[str, str] = field(default_factory=dict)

    def query_string(self, **changes: str) -> str:
        """This form's filters as a query string, with `changes` (empty values dropped)."""
        merged = {**self.values, "limit": str(self.limit), **changes}
        return urlencode({key: value for key, value in merged.items() if value})


def _uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _moment(text: str) -> datetime:
    """A datetime-local value (or ISO text) as an aware datetime; naive values are UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def encode_keyset(created_at: datetime, row_id: str) -> str:
    """An opaque cursor continuing strictly before (created_at, row_id)."""
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_keyset(cursor: str) -> Keyset:
    """The position in a cursor; ValueError when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, row_id = json.loads(base64.urlsafe_b64decode(padded))
        return Keyset(_moment(str(created_at)), str(uuid.UUID(str(row_id))))
    except Exception as error:
        raise ValueError("not a page cursor of this console") from error


def _metadata(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("metadata must be a JSON object")
    return value


def parse_filters(params: dict[str, str]) -> FilterForm:
    """The filter the parameters ask for; a value that cannot be read is named in `problems`
    and ignored (the page shows it beside its field), never an error page."""
    values = {name: params.get(name, "").strip()[:500] for name in FILTER_FIELDS}
    problems: dict[str, str] = {}
    fields: dict[str, Any] = {}
    if values["status"]:
        if values["status"] in STATUSES:
            fields["status"] = values["status"]
        else:
            problems["status"] = f"status must be one of {', '.join(STATUSES)}"
    if values["graph"]:
        fields["graph_id"] = values["graph"]
    for name, target in (("after", "created_after"), ("before", "created_before")):
        if values[name]:
            try:
                fields[target] = _moment(values[name])
            except ValueError:
                problems[name] = "give a date and time, e.g. 2026-12-07T09:30 (UTC)"
    if values["metadata"]:
        try:
            fields["metadata"] = _metadata(values["metadata"])
        except ValueError:
            problems["metadata"] = 'give a JSON object, e.g. {"customer": "acme"}'
    if values["thread"]:
        fields["thread_id"] = _uuid(values["thread"])
        if fields["thread_id"] is None:
            problems["thread"] = "a thread id is a UUID"
    if values["q"]:
        found = _uuid(values["q"])
        fields["execution_id" if found else "idempotency_key"] = found or values["q"]
    form = FilterForm(values, ExecutionFilter(**fields), problems=problems)
    _page(form, params)
    return form


def _page(form: FilterForm, params: dict[str, str]) -> None:
    limit = params.get("limit", "")
    form.limit = int(limit) if limit.isdigit() and int(limit) in PAGE_SIZES else PAGE_SIZES[0]
    cursor = params.get("cursor", "")
    if cursor:
        try:
            form.cursor = decode_keyset(cursor)
        except ValueError as error:
            form.problems["cursor"] = str(error)

"""The executions page's filter form: what each parameter means, and what it refuses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from lg_deploy.console.filters import decode_keyset, encode_keyset, parse_filters
from lg_deploy.console.reads import ExecutionFilter

pytestmark = pytest.mark.req("CONSOLE-EXECUTIONS")


def test_every_filter_becomes_its_column_condition() -> None:
    """Status, graph, times (naive as UTC), metadata, thread and page size are read as given."""
    thread = str(uuid.uuid4())
    form = parse_filters(
        {
            "status": "FAILED",
            "graph": "echo",
            "after": "2026-12-07T09:30",
            "before": "2026-12-07T10:00:05+01:00",
            "metadata": '{"customer": "acme"}',
            "thread": thread.upper(),
            "limit": "50",
        }
    )
    assert form.problems == {}
    assert form.wanted == ExecutionFilter(
        status="FAILED",
        graph_id="echo",
        created_after=datetime(2026, 12, 7, 9, 30, tzinfo=UTC),
        created_before=datetime.fromisoformat("2026-12-07T10:00:05+01:00"),
        metadata={"customer": "acme"},
        thread_id=thread,
    )
    assert form.limit == 50


def test_search_reads_a_uuid_as_an_id_and_anything_else_as_an_idempotency_key() -> None:
    """q holding a UUID searches execution ids; other text searches idempotency keys."""
    execution_id = str(uuid.uuid4())
    assert parse_filters({"q": execution_id}).wanted.execution_id == execution_id
    assert parse_filters({"q": " order-77 "}).wanted.idempotency_key == "order-77"


def test_unreadable_values_are_named_beside_their_field_and_ignored() -> None:
    """A bad status, time, metadata, thread, page size or cursor filters nothing and says why."""
    form = parse_filters(
        {
            "status": "DONE",
            "after": "yesterday",
            "metadata": "[1]",
            "thread": "t-1",
            "limit": "7",
            "cursor": "garbage",
        }
    )
    assert set(form.problems) == {"status", "after", "metadata", "thread", "cursor"}
    assert form.wanted == ExecutionFilter()
    assert form.limit == 25


def test_a_keyset_cursor_round_trips_and_the_query_string_keeps_the_filters() -> None:
    """encode_keyset/decode_keyset give back the position; the next page's query keeps every
    filter and drops empty ones."""
    moment = datetime(2026, 12, 7, 9, 30, 1, 250_000, tzinfo=UTC)
    row_id = str(uuid.uuid4())
    position = decode_keyset(encode_keyset(moment, row_id))
    assert (position.created_at, position.row_id) == (moment, row_id)
    form = parse_filters({"status": "QUEUED", "graph": "a b"})
    assert form.query_string(cursor="c") == "status=QUEUED&graph=a+b&limit=25&cursor=c"

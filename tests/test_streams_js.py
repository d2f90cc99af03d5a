"""Streams driven by the unmodified JS SDK (@langchain/langgraph-sdk) against a real serve:
runs.stream on a thread and without one, and runs.joinStream replaying them from the start."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support.graphs import THREAD_API_KEY
from tests.support.js import run_js

Event = dict[str, Any]
PROMPT = "hello there friend"


@pytest.fixture
def streamed(thread_server: str) -> dict[str, Any]:
    """What tests/js/streams.mjs saw: each stream's events as {event, data, id}."""
    done = run_js("streams.mjs", thread_server, THREAD_API_KEY)
    assert done.returncode == 0, done.stderr + done.stdout
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


def named(events: list[Event], name: str) -> list[Any]:
    """The data of the events called `name`, in order."""
    return [e["data"] for e in events if e["event"] == name]


def ids_increase(events: list[Event]) -> bool:
    """True when every event carries an id, each above the one before."""
    ids = [int(e["id"]) for e in events]
    return ids == sorted(set(ids))


@pytest.mark.req("STREAM-EVENTS", "STREAM-MODES")
def test_the_js_sdk_streams_a_runs_tokens_custom_events_and_values(
    streamed: dict[str, Any],
) -> None:
    """runs.stream with values, messages-tuple, custom and updates: metadata first naming the
    run, the chat model's tokens joining to the reply, the node's custom event, its update,
    and last values holding the AI message; every event has an id, increasing."""
    events: list[Event] = streamed["streamed"]
    assert events[0]["event"] == "metadata"
    assert isinstance(events[0]["data"]["run_id"], str)
    chunks = [message for message, _metadata in named(events, "messages")]
    assert len(chunks) > 1
    assert "".join(chunk["content"] for chunk in chunks) == PROMPT
    assert named(events, "custom") == [{"progress": "speaking"}]
    assert any("speak" in update for update in named(events, "updates"))
    last = named(events, "values")[-1]
    assert (last["messages"][-1]["type"], last["messages"][-1]["content"]) == ("ai", PROMPT)
    assert events[-1]["event"] == "values"
    assert ids_increase(events)


@pytest.mark.req("STREAM-EVENTS", "STREAM-RESUME")
def test_the_js_sdk_joins_a_finished_stream_from_its_first_event(
    streamed: dict[str, Any],
) -> None:
    """runs.joinStream with lastEventId -1 replays the run's events: same names, data and ids,
    in the same order."""
    assert streamed["joined"] == streamed["streamed"]


@pytest.mark.req("STREAM-EVENTS", "STREAM-MODES", "STREAM-RESUME")
def test_the_js_sdk_streams_and_joins_a_thread_less_run(streamed: dict[str, Any]) -> None:
    """runs.stream(null, ...) streams the default values mode (metadata, then the output) and
    joinStream(null, ...) replays it."""
    alone: list[Event] = streamed["alone"]
    assert [e["event"] for e in alone] == ["metadata", "values"]
    assert alone[-1]["data"] == {"hello": "world"}
    assert alone[0]["data"]["run_id"] != streamed["streamed"][0]["data"]["run_id"]
    assert streamed["aloneJoined"] == alone
    assert ids_increase(alone)


@pytest.mark.req("STREAM-EVENTS")
def test_the_streamed_events_are_the_rows_of_run_events(
    streamed: dict[str, Any], sql: psycopg.Connection[Any]
) -> None:
    """What the SDK got is lg_deploy.run_events as psql reads it (plus the thread's run_done)."""
    run_id = streamed["streamed"][0]["data"]["run_id"]
    rows = sql.execute(
        "SELECT event_id, event, data FROM lg_deploy.run_events"
        " WHERE execution_id = %s ORDER BY event_id",
        (run_id,),
    ).fetchall()
    assert [row[1] for row in rows][-1] == "run_done"
    recorded = [{"event": e, "data": json.loads(d), "id": str(i)} for i, e, d in rows[:-1]]
    assert recorded == streamed["streamed"]

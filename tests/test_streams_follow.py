"""The stream loop every SSE stream runs: a failed database read does not cut the stream."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import psycopg
import pytest

from lg_deploy.http.langgraph_streams import follow
from lg_deploy.runtime import Runtime
from lg_deploy.settings import Settings
from lg_deploy.streams.hub import StreamHub


@pytest.mark.req("STREAM-RESUME")
async def test_a_read_the_database_fails_is_tried_again_and_the_stream_goes_on() -> None:
    """The first read raises OperationalError (a restart): the loop reads again at the next
    poll and sends what that read found, then ends when the read says it is over."""
    reads: list[str] = []

    async def read() -> tuple[list[bytes], bool, bool]:
        reads.append("read")
        if len(reads) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return [b"event: values\r\ndata: {}\r\n\r\n"], False, True

    runtime = cast(Runtime, SimpleNamespace(hub=StreamHub()))
    settings = Settings(poll_interval_seconds=0.01, keepalive_seconds=60)
    sent: list[Any] = [chunk async for chunk in follow(runtime, "run", settings, read)]
    assert reads == ["read", "read"]
    assert sent == [b"event: values\r\ndata: {}\r\n\r\n"]

"""The chaos checker's stream figures: what each streaming client received of its run, against
what lg_deploy.run_events holds for that run at the end (the rows a join would send: not the
thread streams' run_done rows)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import psycopg

Event = tuple[int, str, str]  # (event_id, event, data) as sent: the SSE id, name and JSON text

_STORED = """
SELECT execution_id::text, event_id, event, data, attempt
FROM lg_deploy.run_events
WHERE execution_id = ANY(%(runs)s::uuid[]) AND event <> 'run_done'
ORDER BY execution_id, event_id
"""


@dataclass
class ReceivedStream:
    """One client's following of one run: every event it received, in arrival order, over all
    its connections, and how those connections went."""

    run_id: str
    path: str  # the stream route it followed
    events: list[Event] = field(default_factory=list)
    connections: int = 0  # requests answered 200
    hangups: int = 0  # connections (or requests) the client itself cut
    broken: int = 0  # connections that broke under it (server killed, database restarted)
    refused: int = 0  # requests that failed or answered other than 200
    finished: bool = False  # a connection ended cleanly: the run was final and all sent
    last_error: str = ""

    @property
    def last_id(self) -> int | None:
        """The last event id it saw (None: none yet): its next Last-Event-ID."""
        return self.events[-1][0] if self.events else None


@dataclass
class StreamFigures:
    """The stream figures of one chaos run."""

    streamed_runs: int = 0  # runs that streaming clients followed
    clients: int = 0
    connections: int = 0
    reconnects: int = 0  # connections after each client's first
    hangups: int = 0
    broken: int = 0
    refused: int = 0
    retried_runs: int = 0  # followed runs whose stored events come from more than one attempt
    stored_events: int = 0  # rows of the followed runs
    received_events: int = 0  # events received by all clients
    lost: int = 0  # stored events a finished client never received
    duplicated: int = 0  # events a client received more than once
    out_of_order: int = 0  # events received after one with a larger id
    mismatched: int = 0  # events received with an id not stored, or another event or data
    unfinished: int = 0  # clients whose stream never ended cleanly in time
    silent: int = 0  # followed runs with no stored event at all (nothing was recorded)

    @property
    def faults(self) -> int:
        """Lost, duplicated, out of order, mismatched, unfinished and silent."""
        return (
            self.lost
            + self.duplicated
            + self.out_of_order
            + self.mismatched
            + self.unfinished
            + self.silent
        )


def stored_events(
    conn: psycopg.Connection[Any], runs: Sequence[str]
) -> tuple[dict[str, list[Event]], set[str]]:
    """{run: its stored events in id order}, and the runs with events of several attempts."""
    stored: defaultdict[str, list[Event]] = defaultdict(list)
    attempts: defaultdict[str, set[int]] = defaultdict(set)
    for run_id, event_id, event, data, attempt in conn.execute(_STORED, {"runs": list(runs)}):
        stored[run_id].append((int(event_id), str(event), str(data)))
        attempts[run_id].add(int(attempt))
    return dict(stored), {run for run, seen in attempts.items() if len(seen) > 1}


def stream_figures(
    conn: psycopg.Connection[Any], received: Sequence[ReceivedStream]
) -> tuple[StreamFigures, list[str]]:
    """The figures of `received` against the stored events, and notes on the first faults."""
    runs = sorted({stream.run_id for stream in received})
    stored, retried = stored_events(conn, runs)
    figures = StreamFigures(
        streamed_runs=len(runs),
        clients=len(received),
        retried_runs=len(retried),
        stored_events=sum(len(events) for events in stored.values()),
        silent=sum(1 for run in runs if not stored.get(run)),
    )
    notes: list[str] = []
    for stream in received:
        faults = _judge(stream, stored.get(stream.run_id, []), figures)
        if faults and len(notes) < 10:
            notes.append(f"stream of run {stream.run_id} via {stream.path}: {faults}")
    return figures, notes


def _judge(stream: ReceivedStream, stored: list[Event], figures: StreamFigures) -> str:
    """Add one client's figures; what was wrong with it, in words ('' for nothing)."""
    ids = [event_id for event_id, _, _ in stream.events]
    by_id = {event_id: (event, data) for event_id, event, data in stored}
    lost = sorted(set(by_id) - set(ids)) if stream.finished else []
    duplicated = len(ids) - len(set(ids))
    out_of_order = sum(1 for before, after in pairwise(ids) if after < before)
    mismatched = [i for i, event, data in stream.events if by_id.get(i) != (event, data)]
    figures.connections += stream.connections
    figures.reconnects += max(0, stream.connections - 1)
    figures.hangups += stream.hangups
    figures.broken += stream.broken
    figures.refused += stream.refused
    figures.received_events += len(ids)
    figures.lost += len(lost)
    figures.duplicated += duplicated
    figures.out_of_order += out_of_order
    figures.mismatched += len(mismatched)
    figures.unfinished += 0 if stream.finished else 1
    faults = [
        f"lost ids {lost[:5]}" if lost else "",
        f"{duplicated} duplicated" if duplicated else "",
        f"{out_of_order} out of order" if out_of_order else "",
        f"mismatched ids {mismatched[:5]}" if mismatched else "",
        "" if stream.finished else f"unfinished ({stream.last_error or 'no clean end'})",
    ]
    return "; ".join(fault for fault in faults if fault)

"""The chaos checker's thread and stream figures, fed hand-made histories of two runs on one
thread on a real PostgreSQL: one run after the other is clean; overlapping RUNNING spans and a
younger run claimed while an older one was not final are counted; and a streaming client's
events lost, duplicated, out of order or unlike the stored ones are counted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.chaos.checker import check
from tests.chaos.processes import SqlConn
from tests.chaos.stream_checker import Event, ReceivedStream

Step = tuple[str, float]  # a status the run went to, seconds after the start of the history
BEGAN = datetime(2026, 1, 1, tzinfo=UTC)


def thread_with_two_runs(sql: SqlConn) -> tuple[str, list[str]]:
    """A thread and two runs on it, the older first (one statement each)."""
    row = sql.execute("INSERT INTO lg_deploy.threads DEFAULT VALUES RETURNING thread_id").fetchone()
    assert row is not None
    runs = []
    for number in (1, 2):
        run = sql.execute(
            "INSERT INTO lg_deploy.executions (graph_id, input, thread_id)"
            " VALUES ('turns', jsonb_build_object('run', %s::integer), %s)"
            " RETURNING execution_id",
            (number, row[0]),
        ).fetchone()
        assert run is not None
        runs.append(str(run[0]))
    return str(row[0]), runs


def write_histories(sql: SqlConn, histories: dict[str, list[Step]]) -> None:
    """Events for each run's `steps`, from QUEUED on, written in time order across the runs, as
    the history trigger would have written them."""
    events = []
    for execution_id, steps in histories.items():
        before = "QUEUED"
        for status, seconds in steps:
            events.append((seconds, execution_id, before, status))
            before = status
    for seconds, execution_id, before, status in sorted(events):
        sql.execute(
            "INSERT INTO lg_deploy.execution_events (execution_id, from_status, to_status, at,"
            " attempt) VALUES (%s, %s, %s, %s, 1)",
            (execution_id, before, status, BEGAN + timedelta(seconds=seconds)),
        )


@pytest.mark.req("FAULT-NEGATIVE", "MULTITASK")
@pytest.mark.parametrize(
    ("older", "younger", "overlaps", "out_of_order"),
    [
        pytest.param(
            [("RUNNING", 0), ("COMPLETED", 1)],
            [("RUNNING", 2), ("COMPLETED", 3)],
            0,
            0,
            id="one-after-the-other",
        ),
        pytest.param(
            [("RUNNING", 0), ("COMPLETED", 2)],
            [("RUNNING", 1), ("COMPLETED", 3)],
            1,
            1,
            id="overlapping",
        ),
        pytest.param(
            [("RUNNING", 0)],
            [("RUNNING", 1), ("COMPLETED", 2)],
            1,
            1,
            id="beside-one-still-running",
        ),
        pytest.param(
            [("RUNNING", 2), ("COMPLETED", 3)],
            [("RUNNING", 0), ("COMPLETED", 1)],
            0,
            1,
            id="younger-first",
        ),
        pytest.param(
            [("RUNNING", 0), ("QUEUED", 1), ("RUNNING", 3), ("COMPLETED", 4)],
            [("RUNNING", 1.5), ("COMPLETED", 2)],
            0,
            1,
            id="between-the-older-runs-attempts",
        ),
    ],
)
def test_checker_counts_overlapping_and_out_of_order_runs_on_a_thread(
    sql: SqlConn,
    db_url: str,
    older: list[Step],
    younger: list[Step],
    overlaps: int,
    out_of_order: int,
) -> None:
    """Overlapping RUNNING spans and a run claimed before an older one was final are counted."""
    thread_id, (first, second) = thread_with_two_runs(sql)
    write_histories(sql, {first: older, second: younger})
    report = check(db_url, [first, second], [thread_id])
    assert (report.threads, report.thread_runs) == (1, 2)
    assert (report.overlaps, report.out_of_order) == (overlaps, out_of_order)


@pytest.mark.req("FAULT-NEGATIVE", "MULTITASK")
def test_checker_orders_events_as_written_not_by_their_transaction_start(
    sql: SqlConn, db_url: str
) -> None:
    """A claim written after the older run ended, in a transaction that began before, is no
    overlap: `at` is the transaction's start, the event id the order of writing."""
    thread_id, (first, second) = thread_with_two_runs(sql)
    write_histories(sql, {first: [("RUNNING", 0), ("COMPLETED", 2)]})
    write_histories(sql, {second: [("RUNNING", 1), ("COMPLETED", 3)]})
    report = check(db_url, [first, second], [thread_id])
    assert (report.overlaps, report.out_of_order) == (0, 0)


def complete(sql: SqlConn, execution_id: str, turns: list[int]) -> None:
    """Claim and complete a run from SQL, its output listing `turns` as the `turns` graph would."""
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'RUNNING', attempts = 1, worker_id = 'w',"
        " lease_expires_at = now() + interval '1 minute' WHERE execution_id = %s",
        (execution_id,),
    )
    sql.execute(
        "UPDATE lg_deploy.executions SET status = 'COMPLETED',"
        " output = jsonb_build_object('heard', %s::jsonb, 'answered', %s::jsonb)"
        " WHERE execution_id = %s",
        (str(turns), str(turns), execution_id),
    )


@pytest.mark.req("FAULT-NEGATIVE", "THREAD-RUNS")
@pytest.mark.parametrize(
    ("second_output", "wrong"),
    [
        pytest.param([1, 2], 0, id="each-run-once-in-order"),
        pytest.param([1, 1, 2], 1, id="a-run-twice"),
        pytest.param([2], 1, id="a-run-missing"),
        pytest.param([2, 1], 1, id="out-of-order"),
    ],
)
def test_checker_counts_outputs_and_values_that_miss_or_repeat_a_run(
    sql: SqlConn, db_url: str, second_output: list[int], wrong: int
) -> None:
    """A run's output, and the thread's values it leaves, must list each run so far once."""
    thread_id, (first, second) = thread_with_two_runs(sql)
    complete(sql, first, [1])
    complete(sql, second, second_output)
    report = check(db_url, [first, second], [thread_id])
    assert report.thread_runs_completed_once == 2
    assert (report.wrong_outputs, report.wrong_values) == (wrong, wrong)
    assert (report.overlaps, report.out_of_order, report.busy_left) == (0, 0, 0)


@pytest.mark.req("FAULT-NEGATIVE", "THREAD-RUNS")
def test_checker_counts_a_thread_left_busy(sql: SqlConn, db_url: str) -> None:
    """A thread still 'busy' once all its runs are final is counted."""
    thread_id, (first, second) = thread_with_two_runs(sql)
    complete(sql, first, [1])
    complete(sql, second, [1, 2])
    assert check(db_url, [first, second], [thread_id]).busy_left == 0
    sql.execute("UPDATE lg_deploy.threads SET status = 'busy' WHERE thread_id = %s", (thread_id,))
    assert check(db_url, [first, second], [thread_id]).busy_left == 1


def stored_stream(sql: SqlConn, run_id: str) -> list[Event]:
    """Two attempts' events of the run, as workers record them, then the thread's run_done row
    (which a run's stream never sends); the run's events as a join sends them."""
    rows = [
        (1, "metadata", f'{{"run_id":"{run_id}","attempt":1}}'),
        (1, "values", '{"heard":[1]}'),
        (2, "metadata", f'{{"run_id":"{run_id}","attempt":2}}'),
        (2, "values", '{"heard":[1],"answered":[1]}'),
        (2, "run_done", f'{{"status":"run_done","run_id":"{run_id}"}}'),
    ]
    for attempt, event, data in rows:
        sql.execute(
            "INSERT INTO lg_deploy.run_events (execution_id, thread_id, attempt, event, data)"
            " SELECT execution_id, thread_id, %s, %s, %s FROM lg_deploy.executions"
            " WHERE execution_id = %s",
            (attempt, event, data, run_id),
        )
    stored = sql.execute(
        "SELECT event_id, event, data FROM lg_deploy.run_events"
        " WHERE execution_id = %s AND event <> 'run_done' ORDER BY event_id",
        (run_id,),
    ).fetchall()
    return [(int(event_id), str(event), str(data)) for event_id, event, data in stored]


def _swapped(events: list[Event]) -> list[Event]:
    return [events[0], events[2], events[1], *events[3:]]


def _altered(events: list[Event]) -> list[Event]:
    event_id, event, _ = events[1]
    return [events[0], (event_id, event, '{"heard":[2]}'), *events[2:]]


@pytest.mark.req("FAULT-NEGATIVE", "STREAM-RESUME")
@pytest.mark.parametrize(
    ("received", "finished", "expected"),
    [
        pytest.param(lambda e: e, True, {}, id="each-once-in-order"),
        pytest.param(lambda e: e[:1] + e[2:], True, {"lost": 1}, id="one-lost"),
        pytest.param(lambda e: e[:3] + e[2:], True, {"duplicated": 1}, id="one-twice"),
        pytest.param(lambda e: e[:2] + e, True, {"duplicated": 2, "out_of_order": 1}, id="replay"),
        pytest.param(_swapped, True, {"out_of_order": 1}, id="out-of-order"),
        pytest.param(_altered, True, {"mismatched": 1}, id="other-data"),
        pytest.param(
            lambda e: [*e, (e[-1][0] + 9, "values", "{}")], True, {"mismatched": 1}, id="unknown"
        ),
        pytest.param(lambda e: e[:2], False, {"unfinished": 1}, id="never-ended"),
    ],
)
def test_checker_counts_stream_events_lost_duplicated_or_out_of_order(
    sql: SqlConn,
    db_url: str,
    received: Callable[[list[Event]], list[Event]],
    finished: bool,
    expected: dict[str, int],
) -> None:
    """A client's received events against the run's stored ones: each stored event once, in
    order, with its data, in a stream that ended; the thread's run_done row is no event of it."""
    thread_id, (run_id, _) = thread_with_two_runs(sql)
    stored = stored_stream(sql, run_id)
    stream = ReceivedStream(
        run_id, "/runs/x/stream", received(stored), connections=3, hangups=2, finished=finished
    )
    report = check(db_url, [run_id], [thread_id], streams=[stream])
    counted = {
        name: getattr(report.streams, name)
        for name in ("lost", "duplicated", "out_of_order", "mismatched", "unfinished", "silent")
    }
    assert counted == {name: expected.get(name, 0) for name in counted}
    assert report.streams.faults == sum(expected.values())
    assert (report.streams.stored_events, report.streams.retried_runs) == (4, 1)
    assert (report.streams.clients, report.streams.reconnects) == (1, 2)


@pytest.mark.req("FAULT-NEGATIVE", "STREAM-RESUME")
def test_checker_counts_a_streamed_run_that_recorded_nothing(sql: SqlConn, db_url: str) -> None:
    """A followed run with no stored event is silent, even when its client saw nothing either."""
    thread_id, (run_id, _) = thread_with_two_runs(sql)
    stream = ReceivedStream(run_id, "/runs/x/stream", [], connections=1, finished=True)
    report = check(db_url, [run_id], [thread_id], streams=[stream])
    assert (report.streams.silent, report.streams.lost, report.streams.faults) == (1, 0, 1)

"""The chaos checker: every figure from SQL alone (lg_deploy.executions, execution_events and,
for runs on threads, lg_deploy.threads), and what the streaming clients received against
lg_deploy.run_events (tests/chaos/stream_checker.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from tests.chaos.stream_checker import ReceivedStream, StreamFigures, stream_figures

HARNESS_APPLICATION_NAME = "chaos-harness"


def admin(url: str) -> psycopg.Connection[Any]:
    """A new autocommit connection as the harness (never matched by 'lg-deploy%')."""
    return psycopg.connect(url, autocommit=True, application_name=HARNESS_APPLICATION_NAME)


@dataclass
class ChaosReport:
    """The figures of one run, all read from SQL after it (plus the faults actually injected)."""

    seed: int
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0  # submitted ids missing, or not terminal at the end
    missing: int = 0
    duplicate_completions: int = 0  # executions with either of the two below
    double_finals: int = 0  # more than one event into COMPLETED/FAILED
    stale_outcomes: int = 0  # final event's attempt/worker differs from the last claim's
    reruns: int = 0  # executions with attempts > 1
    error_retries: int = 0  # attempts that raised and were retried (LG_DEPLOY_RETRY_ON_ERROR)
    max_attempts: int = 0
    p50_seconds: float = 0.0  # finished_at - created_at
    p99_seconds: float = 0.0
    terminal_after_last_fault_seconds: float | None = None  # None: not within settle_seconds
    run_seconds: float = 0.0
    crashed_workers: int = 0  # worker processes that exited without being killed
    threads: int = 0  # T
    thread_runs: int = 0  # R, the submitted executions that are runs on those threads
    thread_runs_completed_once: int = 0  # thread runs with exactly one COMPLETED event
    overlaps: int = 0  # pairs of RUNNING spans of runs on one thread that overlap in time
    out_of_order: int = 0  # thread runs first claimed before an older run of theirs was final
    busy_left: int = 0  # threads still 'busy' with no run QUEUED or RUNNING
    wrong_values: int = 0  # threads whose final values are not each run once, in order
    wrong_outputs: int = 0  # completed thread runs whose output is not the runs so far, in order
    late_checkpoints: int = 0  # checkpoints a run wrote after it was final (a stale attempt's)
    crashed_servers: int = 0  # serve processes that exited without being killed
    streams: StreamFigures = field(default_factory=StreamFigures)
    failure_reasons: dict[str, int] = field(default_factory=dict)
    retry_reasons: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing completed twice, all terminal in time, no process crashed; on
        the threads one run at a time, in order, none left busy, every run's effect once; every
        streaming client got each stored event of its run once, in order, and its stream ended."""
        return (
            self.lost == 0
            and self.duplicate_completions == 0
            and self.terminal_after_last_fault_seconds is not None
            and self.crashed_workers == 0
            and self.crashed_servers == 0
            and self.thread_faults == 0
            and self.streams.faults == 0
        )

    @property
    def thread_faults(self) -> int:
        """Overlaps, out-of-order starts, threads left busy and wrong values or outputs."""
        return (
            self.overlaps
            + self.out_of_order
            + self.busy_left
            + self.wrong_values
            + self.wrong_outputs
        )

    def summary(self) -> str:
        """One `name: value` line per figure (`streams.name: value` for the stream figures)."""
        figures = asdict(self)
        streams = figures.pop("streams")
        lines = [f"{name}: {value}" for name, value in figures.items() if name != "notes"]
        lines += [f"streams.{name}: {value}" for name, value in streams.items()]
        return "\n".join([*lines, *self.notes])


_DUPLICATES = """
WITH finals AS (
    SELECT execution_id, count(*) AS finals,
           (array_agg(attempt ORDER BY event_id DESC))[1] AS attempt,
           (array_agg(worker_id ORDER BY event_id DESC))[1] AS worker_id
    FROM lg_deploy.execution_events
    WHERE to_status IN ('COMPLETED', 'FAILED') AND execution_id = ANY(%(ids)s::uuid[])
    GROUP BY execution_id
), claims AS (
    SELECT execution_id,
           (array_agg(attempt ORDER BY event_id DESC))[1] AS attempt,
           (array_agg(worker_id ORDER BY event_id DESC))[1] AS worker_id
    FROM lg_deploy.execution_events
    WHERE from_status = 'QUEUED' AND to_status = 'RUNNING'
      AND execution_id = ANY(%(ids)s::uuid[])
    GROUP BY execution_id
), judged AS (
    SELECT f.finals > 1 AS double_final,
           c.execution_id IS NOT NULL
           AND (f.attempt <> c.attempt OR f.worker_id IS DISTINCT FROM c.worker_id) AS stale
    FROM finals f LEFT JOIN claims c USING (execution_id)
)
SELECT count(*) FILTER (WHERE double_final OR stale),
       count(*) FILTER (WHERE double_final),
       count(*) FILTER (WHERE stale)
FROM judged
"""

_FIGURES = """
WITH mine AS (
    SELECT status, attempts, extract(epoch FROM finished_at - created_at)::float8 AS seconds
    FROM lg_deploy.executions WHERE execution_id = ANY(%(ids)s::uuid[])
)
SELECT count(*) FILTER (WHERE status = 'COMPLETED'),
       count(*) FILTER (WHERE status = 'FAILED'),
       count(*) FILTER (WHERE status NOT IN ('COMPLETED', 'FAILED', 'INTERRUPTED')),
       count(*) FILTER (WHERE attempts > 1),
       COALESCE(max(attempts), 0),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY seconds),
       count(*)
FROM mine
"""

# The runs on the threads, each with its place in its thread's claim order (created_at, then
# id: oldest first, as the claim takes them) and the `turns` numbers of the runs up to it in
# that order: what its output must list. Kept for the statements below (this session only).
_THREAD_RUNS = """
CREATE TEMPORARY TABLE chaos_thread_runs AS
SELECT execution_id, thread_id, status, output, attempts, (input ->> 'run')::integer AS run,
       row_number() OVER claim_order AS place,
       jsonb_agg((input ->> 'run')::integer) OVER claim_order AS so_far
FROM lg_deploy.executions
WHERE thread_id = ANY(%(threads)s::uuid[])
WINDOW claim_order AS (PARTITION BY thread_id ORDER BY created_at, execution_id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
"""

# Their histories as spans: every RUNNING stretch of a run, from its claim's event to the next
# event of that run (open while still RUNNING). Ordered by event_id, not by `at`: `at` is the
# writing transaction's start, which may precede the moment its statement saw another run end,
# while event ids are drawn as the events are written, so a claim made after a run ended always
# has the larger id.
_THREAD_SPANS = """
CREATE TEMPORARY TABLE chaos_thread_spans AS
SELECT r.thread_id, r.place, r.run, v.execution_id, v.to_status, v.at, v.event_id,
       int8range(v.event_id, lead(v.event_id) OVER run_history) AS running
FROM lg_deploy.execution_events v JOIN chaos_thread_runs r USING (execution_id)
WINDOW run_history AS (PARTITION BY v.execution_id ORDER BY v.event_id)
"""

# Per run: its first claim's event, its final event and how many times it completed.
_THREAD_LIVES = """
CREATE TEMPORARY TABLE chaos_thread_lives AS
SELECT thread_id, place, run,
       min(event_id) FILTER (WHERE to_status = 'RUNNING') AS first_claim,
       min(at) FILTER (WHERE to_status = 'RUNNING') AS first_claimed_at,
       max(event_id) FILTER (WHERE to_status IN ('COMPLETED', 'FAILED', 'INTERRUPTED')) AS final,
       max(at) FILTER (WHERE to_status IN ('COMPLETED', 'FAILED', 'INTERRUPTED')) AS final_at,
       count(*) FILTER (WHERE to_status = 'COMPLETED') AS completions
FROM chaos_thread_spans GROUP BY thread_id, place, run
"""

_THREAD_FIGURES = """
SELECT (SELECT count(*) FROM chaos_thread_runs),
       (SELECT count(*) FROM chaos_thread_lives WHERE completions = 1),
       (SELECT count(*) FROM chaos_thread_spans a JOIN chaos_thread_spans b
            ON a.thread_id = b.thread_id AND a.event_id < b.event_id
           AND a.to_status = 'RUNNING' AND b.to_status = 'RUNNING' AND a.running && b.running),
       (SELECT count(*) FROM chaos_thread_lives later
        WHERE later.first_claim IS NOT NULL AND EXISTS (
            SELECT 1 FROM chaos_thread_lives older
            WHERE older.thread_id = later.thread_id AND older.place < later.place
              AND (older.final IS NULL OR older.final > later.first_claim))),
       (SELECT count(*) FROM chaos_thread_runs
        WHERE status = 'COMPLETED'
          AND (output -> 'heard' IS DISTINCT FROM so_far
               OR output -> 'answered' IS DISTINCT FROM so_far))
"""

# The first runs claimed before an older run of their thread was final, to read in the report.
_OUT_OF_ORDER = """
SELECT later.thread_id, older.run, older.final, older.final_at,
       later.run, later.first_claim, later.first_claimed_at
FROM chaos_thread_lives later JOIN chaos_thread_lives older
  ON older.thread_id = later.thread_id AND older.place < later.place
WHERE later.first_claim IS NOT NULL AND (older.final IS NULL OR older.final > later.first_claim)
ORDER BY later.thread_id, later.place
LIMIT 10
"""

# The first wrong outputs, to read in the report.
_WRONG_OUTPUTS = """
SELECT thread_id, run, attempts, output -> 'heard', output -> 'answered', so_far
FROM chaos_thread_runs
WHERE status = 'COMPLETED'
  AND (output -> 'heard' IS DISTINCT FROM so_far OR output -> 'answered' IS DISTINCT FROM so_far)
ORDER BY thread_id, place
LIMIT 10
"""

# The threads at the end: busy with nothing in flight, or values that are not the numbers of
# all their runs in claim order (what the last run's output must be).
_THREADS = """
WITH expected AS (
    SELECT thread_id,
           jsonb_agg((input ->> 'run')::integer ORDER BY created_at, execution_id) AS every_run,
           bool_or(status IN ('QUEUED', 'RUNNING')) AS in_flight
    FROM lg_deploy.executions
    WHERE thread_id = ANY(%(threads)s::uuid[])
    GROUP BY thread_id
)
SELECT count(*),
       count(*) FILTER (WHERE t.status = 'busy' AND NOT COALESCE(e.in_flight, false)),
       count(*) FILTER (WHERE t."values" -> 'heard' IS DISTINCT FROM e.every_run
                           OR t."values" -> 'answered' IS DISTINCT FROM e.every_run)
FROM lg_deploy.threads t LEFT JOIN expected e USING (thread_id)
WHERE t.thread_id = ANY(%(threads)s::uuid[])
"""

# Checkpoints of the threads stamped (`ts`, the writer's clock) after their run's final event
# (the database's clock; one machine here): written by an attempt that had lost its lease.
_LATE_CHECKPOINTS = """
WITH finals AS (
    SELECT e.execution_id::text AS run_id, max(v.at) AS final_at
    FROM lg_deploy.executions e JOIN lg_deploy.execution_events v USING (execution_id)
    WHERE e.thread_id = ANY(%(threads)s::uuid[])
      AND v.to_status IN ('COMPLETED', 'FAILED', 'INTERRUPTED')
    GROUP BY e.execution_id
)
SELECT count(*)
FROM lg_deploy.checkpoints c JOIN finals f ON c.metadata ->> 'run_id' = f.run_id
WHERE c.thread_id = ANY(%(threads)s::text[])
  AND (c.checkpoint ->> 'ts')::timestamptz > f.final_at
"""

# Worker ids and numbers vary; the reason is what is left.
_FAILURE_REASONS = """
SELECT regexp_replace(regexp_replace(COALESCE(error, '?'), 'worker \\S+', 'worker W', 'g'),
                      '[0-9]+', 'N', 'g') AS reason, count(*)
FROM lg_deploy.executions
WHERE status = 'FAILED' AND execution_id = ANY(%(ids)s::uuid[])
GROUP BY reason ORDER BY count(*) DESC, reason
"""

# Attempts whose graph raised and that went back to the queue: their error ends "; retrying)".
_RETRY_REASONS = """
SELECT regexp_replace(regexp_replace(split_part(error, E'\\n', 1),
                                     ' \\(attempt [0-9]+ of [0-9]+; retrying\\)$', ''),
                      '[0-9]+', 'N', 'g') AS reason, count(*)
FROM lg_deploy.execution_events
WHERE from_status = 'RUNNING' AND to_status = 'QUEUED' AND error LIKE '%%; retrying)'
  AND execution_id = ANY(%(ids)s::uuid[])
GROUP BY reason ORDER BY count(*) DESC, reason
"""


def check(
    url: str,
    ids: list[str],
    threads: Sequence[str] = (),
    *,
    seed: int = 0,
    streams: Sequence[ReceivedStream] = (),
) -> ChaosReport:
    """The checker: every figure from SQL (executions, execution_events, threads), and the
    streams received against run_events."""
    params = {"ids": ids, "threads": list(threads)}
    with admin(url) as conn:
        figures = conn.execute(_FIGURES, params).fetchone()
        duplicates = conn.execute(_DUPLICATES, params).fetchone()
        reasons = conn.execute(_FAILURE_REASONS, params).fetchall()
        retries = conn.execute(_RETRY_REASONS, params).fetchall()
        for table in (_THREAD_RUNS, _THREAD_SPANS, _THREAD_LIVES):
            conn.execute(table, params)
        thread_runs = conn.execute(_THREAD_FIGURES).fetchone()
        out_of_order = conn.execute(_OUT_OF_ORDER).fetchall()
        wrong = conn.execute(_WRONG_OUTPUTS).fetchall()
        on_threads = conn.execute(_THREADS, params).fetchone()
        late = (0,)
        if conn.execute("SELECT to_regclass('lg_deploy.checkpoints')").fetchone() != (None,):
            late = conn.execute(_LATE_CHECKPOINTS, params).fetchone() or late
        streamed, stream_notes = stream_figures(conn, streams)
    assert figures is not None
    assert duplicates is not None
    assert thread_runs is not None
    assert on_threads is not None
    completed, failed, not_terminal, reruns, max_attempts, p50, p99, found = figures
    missing = len(set(ids)) - int(found)
    return ChaosReport(
        seed=seed,
        submitted=len(ids),
        completed=int(completed),
        failed=int(failed),
        lost=missing + int(not_terminal),
        missing=missing,
        duplicate_completions=int(duplicates[0]),
        double_finals=int(duplicates[1]),
        stale_outcomes=int(duplicates[2]),
        reruns=int(reruns),
        max_attempts=int(max_attempts),
        p50_seconds=round(float(p50 or 0.0), 3),
        p99_seconds=round(float(p99 or 0.0), 3),
        failure_reasons={str(reason): int(count) for reason, count in reasons},
        error_retries=sum(int(count) for _reason, count in retries),
        retry_reasons={str(reason): int(count) for reason, count in retries},
        threads=int(on_threads[0]),
        thread_runs=int(thread_runs[0]),
        thread_runs_completed_once=int(thread_runs[1]),
        overlaps=int(thread_runs[2]),
        out_of_order=int(thread_runs[3]),
        wrong_outputs=int(thread_runs[4]),
        busy_left=int(on_threads[1]),
        wrong_values=int(on_threads[2]),
        late_checkpoints=int(late[0]),
        streams=streamed,
        notes=[
            *stream_notes,
            *(
                f"thread {thread} run {later} claimed (event {claim}, {claimed_at}) before"
                f" run {older} was final (event {final}, {final_at})"
                for thread, older, final, final_at, later, claim, claimed_at in out_of_order
            ),
            *(
                f"thread {thread} run {run} (attempts {attempts}): heard {heard},"
                f" answered {answered}, expected {so_far}"
                for thread, run, attempts, heard, answered, so_far in wrong
            ),
        ],
    )


TABLE_COLUMNS = (
    ("seed", 6),
    ("N", 6),
    ("lost", 5),
    ("dup", 5),
    ("failed", 6),
    ("reruns", 6),
    ("err_retry", 9),
    ("max_att", 7),
    ("p50_s", 7),
    ("p99_s", 7),
    ("final_after_s", 13),
    ("run_s", 7),
    ("K/M/J/P(held)", 16),
    ("crashed", 7),
    ("T", 4),
    ("R", 5),
    ("R_once", 6),
    ("overlap", 7),
    ("order", 5),
    ("busy", 4),
    ("bad_val/out", 11),
    ("late_ckpt", 9),
    ("A", 3),
    ("S", 4),
    ("S_retry", 7),
    ("clients", 7),
    ("reconn", 6),
    ("broken", 6),
    ("s_lost", 6),
    ("s_dup", 5),
    ("s_bad", 5),
)


def table_header() -> str:
    """The header line of the figures table."""
    return " ".join(name.rjust(width) for name, width in TABLE_COLUMNS)


def table_row(report: ChaosReport) -> str:
    """One run as a line of the figures table."""
    faults = report.faults
    settled = report.terminal_after_last_fault_seconds
    cells = (
        report.seed,
        report.submitted,
        report.lost,
        report.duplicate_completions,
        report.failed,
        report.reruns,
        report.error_retries,
        report.max_attempts,
        f"{report.p50_seconds:.2f}",
        f"{report.p99_seconds:.2f}",
        "NEVER" if settled is None else f"{settled:.1f}",
        f"{report.run_seconds:.0f}",
        f"{faults.get('kills', 0)}/{faults.get('restarts', 0)}/{faults.get('terminations', 0)}"
        f"/{faults.get('pauses', 0)}({faults.get('paused_held', 0)})",
        report.crashed_workers,
        report.threads,
        report.thread_runs,
        report.thread_runs_completed_once,
        report.overlaps,
        report.out_of_order,
        report.busy_left,
        f"{report.wrong_values}/{report.wrong_outputs}",
        report.late_checkpoints,
        faults.get("api_kills", 0),
        report.streams.streamed_runs,
        report.streams.retried_runs,
        report.streams.clients,
        report.streams.reconnects,
        report.streams.broken,
        report.streams.lost,
        report.streams.duplicated,
        report.streams.out_of_order
        + report.streams.mismatched
        + report.streams.unfinished
        + report.streams.silent,
    )
    return " ".join(
        str(cell).rjust(width) for cell, (_, width) in zip(cells, TABLE_COLUMNS, strict=True)
    )

"""The chaos checker: every figure from SQL alone (lg_deploy.executions and execution_events)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

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
    max_attempts: int = 0
    p50_seconds: float = 0.0  # finished_at - created_at
    p99_seconds: float = 0.0
    terminal_after_last_fault_seconds: float | None = None  # None: not within settle_seconds
    run_seconds: float = 0.0
    crashed_workers: int = 0  # worker processes that exited without being killed
    failure_reasons: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing completed twice, all terminal in time, no worker crashed."""
        return (
            self.lost == 0
            and self.duplicate_completions == 0
            and self.terminal_after_last_fault_seconds is not None
            and self.crashed_workers == 0
        )

    def summary(self) -> str:
        """One `name: value` line per figure."""
        lines = [f"{name}: {value}" for name, value in asdict(self).items() if name != "notes"]
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
       count(*) FILTER (WHERE status NOT IN ('COMPLETED', 'FAILED')),
       count(*) FILTER (WHERE attempts > 1),
       COALESCE(max(attempts), 0),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY seconds),
       count(*)
FROM mine
"""

# Worker ids and numbers vary; the reason is what is left.
_FAILURE_REASONS = """
SELECT regexp_replace(regexp_replace(COALESCE(error, '?'), 'worker \\S+', 'worker W', 'g'),
                      '[0-9]+', 'N', 'g') AS reason, count(*)
FROM lg_deploy.executions
WHERE status = 'FAILED' AND execution_id = ANY(%(ids)s::uuid[])
GROUP BY reason ORDER BY count(*) DESC, reason
"""


def check(url: str, ids: list[str], *, seed: int = 0) -> ChaosReport:
    """The checker: every figure from SQL alone (executions and execution_events)."""
    params = {"ids": ids}
    with admin(url) as conn:
        figures = conn.execute(_FIGURES, params).fetchone()
        duplicates = conn.execute(_DUPLICATES, params).fetchone()
        reasons = conn.execute(_FAILURE_REASONS, params).fetchall()
    assert figures is not None
    assert duplicates is not None
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
    )


TABLE_COLUMNS = (
    ("seed", 6),
    ("N", 6),
    ("lost", 5),
    ("dup", 5),
    ("failed", 6),
    ("reruns", 6),
    ("max_att", 7),
    ("p50_s", 7),
    ("p99_s", 7),
    ("final_after_s", 13),
    ("run_s", 7),
    ("K/M/J/P(held)", 16),
    ("crashed", 7),
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
        report.max_attempts,
        f"{report.p50_seconds:.2f}",
        f"{report.p99_seconds:.2f}",
        "NEVER" if settled is None else f"{settled:.1f}",
        f"{report.run_seconds:.0f}",
        f"{faults.get('kills', 0)}/{faults.get('restarts', 0)}/{faults.get('terminations', 0)}"
        f"/{faults.get('pauses', 0)}({faults.get('paused_held', 0)})",
        report.crashed_workers,
    )
    return " ".join(
        str(cell).rjust(width) for cell, (_, width) in zip(cells, TABLE_COLUMNS, strict=True)
    )

"""A deliberately broken `lg-deploy worker`, for the chaos checker's negative control.

`python -m tests.chaos.broken [QUERY ...]` replaces, in this process only, the SQL text of the
named queries (default: finish_running, requeue_running and renew_leases) with broken versions,
then runs `lg_deploy.cli.main(["worker"])`. The product has no hook for this: the loaded query
cache is patched from outside.

- update_execution, finish_running, requeue_running: no fencing by worker and attempt, and the
  outcome writes back the worker's own id and attempt (as a worker writing back its copy of the
  row would), so a stale attempt's outcome overwrites a later attempt's row.
- renew_leases: no fencing, so a worker never learns that its lease passed to another attempt.
- claim_executions: no FOR UPDATE SKIP LOCKED and no re-check of the status, so two workers
  can claim the same row (the guard trigger still refuses a second final transition, so this
  alone shows up as extra claims rather than duplicate completions).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lg_deploy.db import queries

BROKEN_QUERIES: dict[str, str] = {
    "update_execution": """
UPDATE lg_deploy.executions
SET status = %(status)s,
    output = %(output)s,
    error = %(error)s,
    attempts = %(attempts)s,
    max_attempts = %(max_attempts)s,
    priority = %(priority)s,
    run_at = %(run_at)s,
    worker_id = %(worker_id)s,
    lease_expires_at = %(lease_expires_at)s
WHERE execution_id = %(execution_id)s
  AND status = %(expected_status)s
RETURNING *
""",
    "renew_leases": """
UPDATE lg_deploy.executions e
SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
FROM unnest(%(execution_ids)s::uuid[], %(attempts)s::integer[]) AS mine(execution_id, attempt)
WHERE e.execution_id = mine.execution_id
  AND e.status = 'RUNNING'
RETURNING e.execution_id, e.cancel_requested_at IS NOT NULL AS cancel_requested
""",
    "claim_executions": """
WITH picked AS (
    SELECT execution_id
    FROM lg_deploy.executions
    WHERE status = 'QUEUED' AND run_at <= COALESCE(%(now)s::timestamptz, now())
    ORDER BY priority DESC, run_at, execution_id
    LIMIT %(limit)s
)
UPDATE lg_deploy.executions e
SET status = 'RUNNING',
    attempts = e.attempts + 1,
    worker_id = %(worker_id)s,
    lease_expires_at = COALESCE(%(now)s::timestamptz, now())
        + make_interval(secs => %(lease_seconds)s)
FROM picked
WHERE e.execution_id = picked.execution_id
RETURNING e.*
""",
    "finish_running": """
UPDATE lg_deploy.executions e
SET status = u.status,
    output = u.output,
    error = u.error,
    traceback = u.traceback,
    worker_id = %(worker_id)s,
    attempts = u.attempt
FROM jsonb_to_recordset(%(rows)s::jsonb)
     AS u(execution_id uuid, attempt integer, status text, output jsonb, error text,
          traceback text)
WHERE e.execution_id = u.execution_id
  AND e.status = 'RUNNING'
RETURNING e.execution_id::text, e.status, e.error, e.run_at, e.started_at, e.finished_at,
          e.updated_at, e.cancel_requested_at
""",
    "requeue_running": """
UPDATE lg_deploy.executions e
SET status = 'QUEUED',
    error = u.error,
    traceback = u.traceback,
    run_at = COALESCE(u.run_at, e.run_at),
    worker_id = %(worker_id)s,
    attempts = u.attempt
FROM jsonb_to_recordset(%(rows)s::jsonb)
     AS u(execution_id uuid, attempt integer, error text, final_error text, traceback text,
          run_at timestamptz, numbered boolean)
WHERE e.execution_id = u.execution_id
  AND e.status = 'RUNNING'
RETURNING e.execution_id::text, e.status, e.error, e.run_at, e.started_at, e.finished_at,
          e.updated_at, e.cancel_requested_at
""",
}
DEFAULT_BROKEN = ("finish_running", "requeue_running", "renew_leases")


def break_queries(names: Sequence[str]) -> None:
    """Replace the named queries in lg-deploy's loaded query cache with the broken versions."""
    loaded = queries._all_queries()
    for name in names:
        if name not in loaded:
            raise SystemExit(f"unknown query {name!r}")
        loaded[name] = BROKEN_QUERIES[name].strip()


def main(argv: Sequence[str]) -> int:
    """Break the queries named in `argv` (default DEFAULT_BROKEN) and run a worker."""
    break_queries(argv or DEFAULT_BROKEN)
    from lg_deploy.cli import main as lg_deploy_main

    return lg_deploy_main(["worker"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

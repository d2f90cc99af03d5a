"""A deliberately broken `lg-deploy worker`, for the chaos checker's negative control.

`python -m tests.chaos.broken [QUERY ...]` replaces, in this process only, the SQL text of the
named queries (default: update_execution and renew_leases) with broken versions, then runs
`lg_deploy.cli.main(["worker"])`. The product has no hook for this: the loaded query cache is
patched from outside.

- update_execution, update_executions: no fencing, so a stale attempt's outcome overwrites a
  later attempt's row.
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
    "update_executions": """
UPDATE lg_deploy.executions e
SET status = u.status,
    output = u.output,
    error = u.error,
    attempts = u.attempts,
    max_attempts = u.max_attempts,
    priority = u.priority,
    run_at = u.run_at,
    worker_id = u.worker_id,
    lease_expires_at = u.lease_expires_at
FROM jsonb_to_recordset(%(rows)s::jsonb)
     AS u(execution_id uuid, status text, output jsonb, error text, attempts integer,
          max_attempts integer, priority smallint, run_at timestamptz, worker_id text,
          lease_expires_at timestamptz)
WHERE e.execution_id = u.execution_id
  AND e.status = %(expected_status)s
RETURNING e.execution_id::text, e.status, e.error, e.worker_id, e.lease_expires_at,
          e.started_at, e.finished_at, e.updated_at, e.cancel_requested_at
""",
}
DEFAULT_BROKEN = ("update_execution", "update_executions", "renew_leases")


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

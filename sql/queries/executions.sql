-- name: insert_execution
-- Insert one QUEUED execution and return it; no row back when its idempotency key is taken.
INSERT INTO lg_deploy.executions
    (execution_id, graph_id, input, max_attempts, priority, run_at, request_id, idempotency_key,
     timeout_seconds, metadata, thread_id, config, context, command, interrupt_before,
     interrupt_after, multitask_strategy, assistant_id, stream_mode, stream_subgraphs,
     stream_resumable, webhook)
VALUES
    (%(execution_id)s, %(graph_id)s, %(input)s, %(max_attempts)s, %(priority)s,
     COALESCE(%(run_at)s, now() + make_interval(secs => %(delay_seconds)s)),
     %(request_id)s, %(idempotency_key)s, %(timeout_seconds)s, %(metadata)s, %(thread_id)s,
     %(config)s, %(context)s, %(command)s, %(interrupt_before)s, %(interrupt_after)s,
     %(multitask_strategy)s, %(assistant_id)s, %(stream_mode)s, %(stream_subgraphs)s,
     %(stream_resumable)s, %(webhook)s)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING *;

-- name: get_by_idempotency_key
-- The execution submitted with this idempotency key, if any.
SELECT * FROM lg_deploy.executions WHERE idempotency_key = %(idempotency_key)s;

-- name: get_execution
-- One execution by id.
SELECT * FROM lg_deploy.executions WHERE execution_id = %(execution_id)s;

-- name: update_execution
-- Compare-and-set: applies only while the row has the expected status (and, leaving RUNNING,
-- the same attempt and worker); no row back means not found or a lost race.
UPDATE lg_deploy.executions
SET status = %(status)s,
    output = %(output)s,
    error = %(error)s,
    traceback = %(traceback)s,
    attempts = %(attempts)s,
    max_attempts = %(max_attempts)s,
    priority = %(priority)s,
    run_at = %(run_at)s,
    worker_id = %(worker_id)s,
    lease_expires_at = %(lease_expires_at)s,
    interrupts = %(interrupts)s
WHERE execution_id = %(execution_id)s
  AND status = %(expected_status)s
  AND (status <> 'RUNNING' OR (attempts = %(expected_attempts)s AND worker_id = %(expected_worker_id)s))
RETURNING *;

-- name: claim_executions
-- Claim up to `limit` due QUEUED executions of the graphs in `graph_ids` for one worker, highest
-- priority then earliest run_at then id (database clock unless a time is given, as tests do);
-- returns the claimed rows as now stored. Rows of graphs this worker does not serve are never
-- read. `levels` walks the priorities present among its graphs, highest first (one index probe
-- per graph each); at each level every graph gives its oldest due rows (a range of
-- executions_claim_idx, so rows due later cost nothing), and the level's rows are merged in
-- claim order. The walk stops at `limit`, so only the levels it needs are read and locked.
-- A run on a thread waits while its thread has a RUNNING run or an older QUEUED one: a thread
-- runs one run at a time, oldest first (executions_one_running_per_thread backs this).
WITH RECURSIVE served(graph_id) AS (
    SELECT DISTINCT unnest(%(graph_ids)s::text[])
),
levels(priority) AS (
    SELECT max(top.priority)
    FROM served CROSS JOIN LATERAL (
        SELECT max(q.priority) AS priority FROM lg_deploy.executions q
        WHERE q.status = 'QUEUED' AND q.graph_id = served.graph_id
    ) AS top
    UNION ALL
    SELECT (SELECT max(below.priority)
            FROM served CROSS JOIN LATERAL (
                SELECT max(q.priority) AS priority FROM lg_deploy.executions q
                WHERE q.status = 'QUEUED' AND q.graph_id = served.graph_id
                  AND q.priority < levels.priority
            ) AS below)
    FROM levels
    WHERE levels.priority IS NOT NULL
),
picked AS (
    SELECT due.execution_id
    FROM levels
    CROSS JOIN LATERAL (
        SELECT mine.execution_id
        FROM served CROSS JOIN LATERAL (
            SELECT q.execution_id, q.run_at
            FROM lg_deploy.executions q
            WHERE q.status = 'QUEUED'
              AND q.graph_id = served.graph_id
              AND q.priority = levels.priority
              AND q.run_at <= COALESCE(%(now)s::timestamptz, now())
              AND (q.thread_id IS NULL OR NOT EXISTS (
                  SELECT 1 FROM lg_deploy.executions r
                  WHERE r.thread_id = q.thread_id
                    AND (r.status = 'RUNNING'
                         OR (r.status = 'QUEUED'
                             AND (r.created_at, r.execution_id) < (q.created_at, q.execution_id)))))
            ORDER BY q.run_at, q.execution_id
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ) AS mine
        ORDER BY mine.run_at, mine.execution_id
        LIMIT %(limit)s
    ) AS due
    LIMIT %(limit)s
)
UPDATE lg_deploy.executions e
SET status = 'RUNNING',
    attempts = e.attempts + 1,
    worker_id = %(worker_id)s,
    lease_expires_at = COALESCE(%(now)s::timestamptz, now()) + make_interval(secs => %(lease_seconds)s)
FROM picked
WHERE e.execution_id = picked.execution_id
RETURNING e.*;

-- name: release_unstarted
-- Release claimed executions this worker never started, fenced by attempt: QUEUED again with
-- the claim not counted, or FAILED "cancelled" if someone asked them to stop meanwhile.
UPDATE lg_deploy.executions e
SET status = CASE WHEN e.cancel_requested_at IS NULL THEN 'QUEUED' ELSE 'FAILED' END,
    attempts = e.attempts - 1,
    error = CASE WHEN e.cancel_requested_at IS NULL THEN %(reason)s ELSE 'cancelled' END
FROM unnest(%(execution_ids)s::uuid[], %(attempts)s::integer[]) AS mine(execution_id, attempt)
WHERE e.execution_id = mine.execution_id
  AND e.attempts = mine.attempt
  AND e.status = 'RUNNING'
  AND e.worker_id = %(worker_id)s
RETURNING e.execution_id;

-- name: list_executions
-- Newest first, optionally by status and graph, continuing strictly before a keyset cursor.
SELECT * FROM lg_deploy.executions
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(graph_id)s::text IS NULL OR graph_id = %(graph_id)s)
  AND (%(before_created_at)s::timestamptz IS NULL
       OR (created_at, execution_id) < (%(before_created_at)s, %(before_execution_id)s::uuid))
ORDER BY created_at DESC, execution_id DESC
LIMIT %(limit)s;

-- name: list_thread_runs
-- A thread's runs, newest first, optionally of one status; one page.
SELECT * FROM lg_deploy.executions
WHERE thread_id = %(thread_id)s
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY created_at DESC, execution_id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: delete_final_execution
-- Delete one finished execution (its events go with it); no row back when absent or in flight.
DELETE FROM lg_deploy.executions
WHERE execution_id = %(execution_id)s AND status IN ('COMPLETED', 'FAILED', 'INTERRUPTED')
RETURNING execution_id;

-- name: list_events
-- The history of one execution, oldest first.
SELECT * FROM lg_deploy.execution_events
WHERE execution_id = %(execution_id)s
ORDER BY event_id;

-- name: count_active
-- Queue depth: QUEUED and RUNNING executions per graph (served by the partial indexes).
SELECT graph_id, status, count(*) AS count
FROM lg_deploy.executions
WHERE status IN ('QUEUED', 'RUNNING')
GROUP BY graph_id, status
ORDER BY graph_id, status;

-- name: renew_leases
-- Extend the leases this worker still holds, fenced by attempt; returns what it still owns and
-- whether someone asked it to stop.
UPDATE lg_deploy.executions e
SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
FROM unnest(%(execution_ids)s::uuid[], %(attempts)s::integer[]) AS mine(execution_id, attempt)
WHERE e.execution_id = mine.execution_id
  AND e.attempts = mine.attempt
  AND e.status = 'RUNNING'
  AND e.worker_id = %(worker_id)s
RETURNING e.execution_id, e.cancel_requested_at IS NOT NULL AS cancel_requested;

-- name: recover_expired
-- RUNNING rows whose lease passed (database clock unless a time is given): QUEUED again while
-- attempts remain, else FAILED; a row asked to stop becomes FAILED "cancelled".
WITH expired AS (
    SELECT execution_id
    FROM lg_deploy.executions
    WHERE status = 'RUNNING' AND lease_expires_at < COALESCE(%(now)s::timestamptz, now())
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE lg_deploy.executions e
SET status = CASE
        WHEN e.cancel_requested_at IS NULL AND e.attempts < e.max_attempts THEN 'QUEUED'
        ELSE 'FAILED'
    END,
    error = CASE
        WHEN e.cancel_requested_at IS NOT NULL THEN 'cancelled'
        WHEN e.attempts < e.max_attempts THEN
            format('lease expired: worker %%s stopped renewing attempt %%s of %%s',
                   e.worker_id, e.attempts, e.max_attempts)
        ELSE format('lease expired: worker %%s stopped renewing attempt %%s of %%s; no attempts left',
                    e.worker_id, e.attempts, e.max_attempts)
    END
FROM expired
WHERE e.execution_id = expired.execution_id
RETURNING e.execution_id, e.status;

-- name: request_cancel
-- Cancel one execution (`execution_id`), or every run in flight on a thread (`thread_id`; the
-- caller holds the thread's admission lock, so none is added meanwhile): a QUEUED one becomes
-- FAILED "cancelled" at once; a RUNNING one is marked so the worker running it stops it.
-- `action` interrupt or rollback (which, once asked, stays: the run is then forgotten as it
-- ends, sql/migrations/0010). No row back: unknown, or final.
UPDATE lg_deploy.executions
SET status = CASE WHEN status = 'QUEUED' THEN 'FAILED' ELSE status END,
    error = CASE WHEN status = 'QUEUED' THEN 'cancelled' ELSE error END,
    cancel_requested_at = COALESCE(cancel_requested_at, now()),
    cancel_action = CASE WHEN cancel_action = 'rollback' THEN cancel_action ELSE %(action)s END
WHERE (execution_id = %(execution_id)s OR thread_id = %(thread_id)s)
  AND status IN ('QUEUED', 'RUNNING')
RETURNING *;

-- name: count_prunable
-- How many finished executions are older than the cut-off (not those whose webhook is pending).
SELECT count(*) FROM lg_deploy.executions e
WHERE status IN ('COMPLETED', 'FAILED', 'INTERRUPTED')
  AND finished_at < now() - make_interval(secs => %(older_than_seconds)s)
  AND NOT EXISTS (SELECT 1 FROM lg_deploy.webhook_deliveries w
                  WHERE w.execution_id = e.execution_id AND w.status = 'pending');

-- name: prune_finished
-- Delete one batch of finished executions older than the cut-off (their events and webhook
-- deliveries go with them; not while a webhook is pending); rows another pruner holds are
-- skipped, so pruners never wait on each other.
WITH doomed AS (
    SELECT execution_id
    FROM lg_deploy.executions e
    WHERE status IN ('COMPLETED', 'FAILED', 'INTERRUPTED')
      AND finished_at < now() - make_interval(secs => %(older_than_seconds)s)
      AND NOT EXISTS (SELECT 1 FROM lg_deploy.webhook_deliveries w
                      WHERE w.execution_id = e.execution_id AND w.status = 'pending')
    ORDER BY finished_at
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM lg_deploy.executions e
USING doomed
WHERE e.execution_id = doomed.execution_id
RETURNING e.execution_id::text;

-- name: checkpoint_tables_exist
-- Whether LangGraph's checkpointer has created its tables in this schema.
SELECT to_regclass('lg_deploy.checkpoints') IS NOT NULL;

-- name: checkpoint_version
-- The latest migration of LangGraph's checkpoint tables applied here.
SELECT max(v) FROM lg_deploy.checkpoint_migrations;

-- name: finish_running
-- Record final outcomes of runs this worker still holds. %(rows)s is a JSON array, one object
-- per run: its id, the attempt that ran, COMPLETED, FAILED or INTERRUPTED, and the output,
-- error, traceback and (INTERRUPTED) the pending interrupts. Only those columns change: an operator's priority or max_attempts set meanwhile
-- stays. A row not returned is no longer this attempt's (or is gone). Returns the columns the
-- database decides; the caller holds the rest (lease_expires_at is then NULL).
UPDATE lg_deploy.executions e
SET status = u.status,
    output = u.output,
    error = u.error,
    traceback = u.traceback,
    interrupts = u.interrupts
FROM jsonb_to_recordset(%(rows)s::jsonb)
     AS u(execution_id uuid, attempt integer, status text, output jsonb, error text,
          traceback text, interrupts jsonb)
WHERE e.execution_id = u.execution_id
  AND e.status = 'RUNNING'
  AND e.worker_id = %(worker_id)s
  AND e.attempts = u.attempt
RETURNING e.execution_id::text, e.status, e.error, e.run_at, e.started_at, e.finished_at,
          e.updated_at, e.cancel_requested_at;

-- name: requeue_running
-- Return runs this worker still holds to the queue, each deciding by its own max_attempts (an
-- operator may have changed it): QUEUED due at run_at (the row's own when null) with `error`,
-- followed by "(attempt n of m; retrying)" when `numbered`; or FAILED with `final_error` when
-- no attempts are left. A row asked to stop fails "cancelled" instead (the guard trigger). Only
-- status, error, traceback and run_at change; fencing and the result are finish_running's.
UPDATE lg_deploy.executions e
SET status = CASE WHEN e.attempts < e.max_attempts THEN 'QUEUED' ELSE 'FAILED' END,
    error = CASE
        WHEN e.attempts >= e.max_attempts THEN u.final_error
        WHEN u.numbered THEN format('%%s (attempt %%s of %%s; retrying)',
                                    u.error, e.attempts, e.max_attempts)
        ELSE u.error
    END,
    traceback = u.traceback,
    run_at = CASE WHEN e.attempts < e.max_attempts THEN COALESCE(u.run_at, e.run_at)
                  ELSE e.run_at END
FROM jsonb_to_recordset(%(rows)s::jsonb)
     AS u(execution_id uuid, attempt integer, error text, final_error text, traceback text,
          run_at timestamptz, numbered boolean)
WHERE e.execution_id = u.execution_id
  AND e.status = 'RUNNING'
  AND e.worker_id = %(worker_id)s
  AND e.attempts = u.attempt
RETURNING e.execution_id::text, e.status, e.error, e.run_at, e.started_at, e.finished_at,
          e.updated_at, e.cancel_requested_at;

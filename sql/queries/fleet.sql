-- name: register_worker
-- Record this worker process and its graphs (alive until expires_at), and note each graph as
-- served; registering again (after its row was removed) only refreshes it.
WITH served AS (
    INSERT INTO lg_deploy.served_graphs AS s (graph_id)
    SELECT DISTINCT unnest(%(graph_ids)s::text[])
    ON CONFLICT (graph_id) DO UPDATE SET last_served_at = now()
)
INSERT INTO lg_deploy.workers AS w
    (worker_id, hostname, pid, graph_ids, concurrency, expires_at, host_key)
VALUES
    (%(worker_id)s, %(hostname)s, %(pid)s, %(graph_ids)s::text[], %(concurrency)s,
     now() + make_interval(secs => %(ttl_seconds)s), %(host_key)s)
ON CONFLICT (worker_id) DO UPDATE
SET graph_ids = EXCLUDED.graph_ids,
    heartbeat_at = now(),
    expires_at = EXCLUDED.expires_at;

-- name: heartbeat_worker
-- Keep this worker alive for another `ttl_seconds`; no row back: it was removed, register again.
UPDATE lg_deploy.workers
SET heartbeat_at = now(), expires_at = now() + make_interval(secs => %(ttl_seconds)s)
WHERE worker_id = %(worker_id)s
RETURNING worker_id;

-- name: deregister_worker
-- A worker that stops cleanly removes its row.
DELETE FROM lg_deploy.workers WHERE worker_id = %(worker_id)s;

-- name: forget_dead_workers
-- Rows of workers that died (expired more than `keep_seconds` ago) go; recent ones stay visible.
DELETE FROM lg_deploy.workers
WHERE expires_at < now() - make_interval(secs => %(keep_seconds)s);

-- name: list_unserved_graphs
-- Graphs with QUEUED executions no live worker serves (the unserved_graphs view).
SELECT graph_id, queued, due, oldest_due_at,
       extract(epoch FROM longest_wait)::double precision AS waiting_seconds,
       last_served_at
FROM lg_deploy.unserved_graphs
ORDER BY graph_id;

-- name: fail_never_served
-- QUEUED executions due for more than `after_seconds` whose graph no worker has ever served
-- become FAILED with a readable error (LG_DEPLOY_UNSERVED_GRAPH_SECONDS); one batch per call.
-- Only the never-served graphs' rows are read.
WITH never AS (
    SELECT g.graph_id FROM lg_deploy.queued_graphs g
    WHERE NOT EXISTS (SELECT 1 FROM lg_deploy.served_graphs s WHERE s.graph_id = g.graph_id)
),
doomed AS (
    SELECT waiting.execution_id
    FROM never CROSS JOIN LATERAL (
        SELECT q.execution_id
        FROM lg_deploy.executions q
        WHERE q.status = 'QUEUED'
          AND q.graph_id = never.graph_id
          AND q.run_at < now() - make_interval(secs => %(after_seconds)s)
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS waiting
    LIMIT %(limit)s
)
UPDATE lg_deploy.executions e
SET status = 'FAILED',
    error = format('no worker has ever served graph %%s; failed after waiting more than %%s s'
                   ' (LG_DEPLOY_UNSERVED_GRAPH_SECONDS)', quote_literal(e.graph_id),
                   %(after_seconds)s::double precision)
FROM doomed
WHERE e.execution_id = doomed.execution_id
RETURNING e.execution_id::text, e.graph_id;

-- name: workers_sharing_host_key
-- The other live workers whose pids live in this process's process table (same boot, same pid
-- namespace): the caller checks which of those processes are gone. (A row expired already had
-- its leases expire too: lease recovery has its runs.)
SELECT worker_id, pid
FROM lg_deploy.workers
WHERE host_key = %(host_key)s AND worker_id <> %(worker_id)s AND expires_at > now();

-- name: recover_gone_workers
-- RUNNING rows of workers whose processes are gone (checked by the caller): QUEUED again while
-- attempts remain, else FAILED, as an expired lease would have had them; their fleet rows
-- expire now (they stay visible as dead workers for a while, as any other).
WITH gone AS (
    UPDATE lg_deploy.workers SET expires_at = now()
    WHERE worker_id = ANY(%(worker_ids)s::text[]) AND expires_at > now()
), held AS (
    SELECT execution_id
    FROM lg_deploy.executions
    WHERE status = 'RUNNING' AND worker_id = ANY(%(worker_ids)s::text[])
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
            format('worker %%s is gone (its process ended) during attempt %%s of %%s',
                   e.worker_id, e.attempts, e.max_attempts)
        ELSE format('worker %%s is gone (its process ended) during attempt %%s of %%s; no attempts left',
                    e.worker_id, e.attempts, e.max_attempts)
    END
FROM held
WHERE e.execution_id = held.execution_id
RETURNING e.execution_id, e.status;

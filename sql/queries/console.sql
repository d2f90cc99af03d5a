-- name: console_queue_depth
-- QUEUED (due now or later) and RUNNING executions per graph, for the overview.
SELECT graph_id,
       count(*) FILTER (WHERE status = 'QUEUED' AND run_at <= now()) AS due,
       count(*) FILTER (WHERE status = 'QUEUED' AND run_at > now()) AS scheduled,
       count(*) FILTER (WHERE status = 'RUNNING') AS running
FROM lg_deploy.executions
WHERE status IN ('QUEUED', 'RUNNING')
GROUP BY graph_id
ORDER BY graph_id;

-- name: console_finished_per_minute
-- Executions that became COMPLETED or FAILED in each minute of the last `minutes`.
SELECT date_trunc('minute', at) AS minute,
       count(*) FILTER (WHERE to_status = 'COMPLETED') AS completed,
       count(*) FILTER (WHERE to_status = 'FAILED') AS failed
FROM lg_deploy.execution_events
WHERE to_status IN ('COMPLETED', 'FAILED')
  AND at > date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1)
GROUP BY 1
ORDER BY 1;

-- name: console_oldest_waiting
-- The QUEUED execution due for the longest time, if any.
SELECT execution_id, graph_id, run_at, extract(epoch FROM now() - run_at) AS waiting_seconds
FROM lg_deploy.executions
WHERE status = 'QUEUED' AND run_at <= now()
ORDER BY run_at, execution_id
LIMIT 1;

-- name: console_live_workers
-- Worker processes alive now, with the executions each is running (id, graph, since).
SELECT w.worker_id, w.hostname, w.pid, w.graph_ids, w.concurrency, w.started_at,
       w.heartbeat_at, w.expires_at,
       COALESCE((SELECT jsonb_agg(jsonb_build_object(
                     'execution_id', e.execution_id, 'graph_id', e.graph_id,
                     'started_at', e.started_at) ORDER BY e.started_at)
                 FROM lg_deploy.executions e
                 WHERE e.status = 'RUNNING' AND e.worker_id = w.worker_id), '[]') AS running
FROM lg_deploy.workers w
WHERE w.expires_at > now()
ORDER BY w.started_at, w.worker_id;

-- name: console_search_executions
-- Newest first, by status, graph, creation time, metadata containment, thread and id or
-- idempotency key, continuing strictly before a keyset cursor; one page.
SELECT * FROM lg_deploy.executions
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(graph_id)s::text IS NULL OR graph_id = %(graph_id)s)
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)
  AND (%(metadata)s::jsonb IS NULL OR metadata @> %(metadata)s)
  AND (%(thread_id)s::uuid IS NULL OR thread_id = %(thread_id)s)
  AND (%(execution_id)s::uuid IS NULL OR execution_id = %(execution_id)s)
  AND (%(idempotency_key)s::text IS NULL OR idempotency_key = %(idempotency_key)s)
  AND (%(before_created_at)s::timestamptz IS NULL
       OR (created_at, execution_id) < (%(before_created_at)s, %(before_execution_id)s::uuid))
ORDER BY created_at DESC, execution_id DESC
LIMIT %(limit)s;

-- name: console_graph_names
-- Every graph the database knows of: served by some worker once, or named by an execution
-- still waiting.
SELECT graph_id FROM lg_deploy.served_graphs
UNION
SELECT graph_id FROM lg_deploy.queued_graphs
ORDER BY 1;

-- name: console_graph_stats
-- Per graph: executions finished in the last `hours` by outcome, and when each last finished.
SELECT graph_id,
       count(*) FILTER (WHERE status = 'COMPLETED') AS completed,
       count(*) FILTER (WHERE status = 'FAILED') AS failed,
       count(*) FILTER (WHERE status = 'INTERRUPTED') AS interrupted,
       max(finished_at) AS last_finished_at
FROM lg_deploy.executions
WHERE finished_at > now() - make_interval(hours => %(hours)s)
GROUP BY graph_id
ORDER BY graph_id;

-- name: console_retry_failed
-- A new QUEUED execution for each FAILED thread-less one named: same graph, input, config,
-- context, priority, attempts allowed and timeout, its metadata naming the one it retries.
INSERT INTO lg_deploy.executions
    (graph_id, input, config, context, priority, max_attempts, timeout_seconds, metadata,
     request_id)
SELECT graph_id, input, config, context, priority, max_attempts, timeout_seconds,
       metadata || jsonb_build_object('retry_of', execution_id), %(request_id)s
FROM lg_deploy.executions
WHERE execution_id = ANY(%(execution_ids)s::uuid[])
  AND status = 'FAILED' AND thread_id IS NULL
ORDER BY created_at
RETURNING execution_id, (metadata ->> 'retry_of')::uuid AS retry_of;

-- name: console_retries_of
-- The executions made by retrying this one, newest first.
SELECT execution_id, status, created_at FROM lg_deploy.executions
WHERE metadata @> jsonb_build_object('retry_of', %(execution_id)s::text)
ORDER BY created_at DESC
LIMIT 20;

-- name: console_run_events
-- What a run streamed after `after` (an event_id), oldest first; one page.
SELECT event_id, attempt, event, data, created_at FROM lg_deploy.run_events
WHERE execution_id = %(execution_id)s AND event_id > %(after)s
ORDER BY event_id
LIMIT %(limit)s;

-- name: console_list_threads
-- Threads newest first by last change, optionally of one status, before a keyset cursor.
SELECT t.*, (SELECT count(*) FROM lg_deploy.executions e WHERE e.thread_id = t.thread_id) AS runs
FROM lg_deploy.threads t
WHERE (%(status)s::text IS NULL OR t.status = %(status)s)
  AND (%(before_created_at)s::timestamptz IS NULL
       OR (t.created_at, t.thread_id) < (%(before_created_at)s, %(before_thread_id)s::uuid))
ORDER BY t.created_at DESC, t.thread_id DESC
LIMIT %(limit)s;

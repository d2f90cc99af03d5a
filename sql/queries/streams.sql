-- name: append_run_events
-- One batch of a run's stream events, only while its attempt by this worker holds the RUNNING
-- row (a stale attempt's events are dropped), announced by one NOTIFY after commit. FOR SHARE:
-- a recovery or cancel that changes the row waits for this batch to commit, or this batch
-- waits for it and then finds the row no longer held, so no batch of an attempt can commit
-- after the run has moved on.
WITH holder AS (
    SELECT execution_id, thread_id FROM lg_deploy.executions
    WHERE execution_id = %(execution_id)s AND status = 'RUNNING'
      AND attempts = %(attempt)s AND worker_id = %(worker_id)s
    FOR SHARE
), inserted AS (
    INSERT INTO lg_deploy.run_events (execution_id, thread_id, attempt, event, data)
    SELECT h.execution_id, h.thread_id, %(attempt)s, e.event, e.data
    FROM holder h, unnest(%(events)b::text[], %(datas)b::text[]) WITH ORDINALITY AS e (event, data, n)
    ORDER BY e.n
    RETURNING 1
)
SELECT count(*) AS appended,
       CASE WHEN count(*) > 0 THEN pg_notify('lg_deploy_events',
           concat_ws(',', %(execution_id)s::text, (SELECT thread_id::text FROM holder))) END
FROM inserted;

-- name: read_run_events
-- A run's status and its stream events after `after`, oldest first, at most `limit`: one row
-- with NULL event_id when none. Events are committed before the status that ends the run, so
-- a final status read in this snapshot means no event of it is still to come after these.
SELECT x.status, x.error, e.event_id, e.event, e.data
FROM lg_deploy.executions x
LEFT JOIN LATERAL (
    SELECT event_id, event, data FROM lg_deploy.run_events
    WHERE execution_id = x.execution_id AND event_id > %(after)s AND event <> 'run_done'
    ORDER BY event_id LIMIT %(limit)s
) e ON true
WHERE x.execution_id = %(execution_id)s
ORDER BY e.event_id;

-- name: last_run_event
-- The newest stream event id of a run (0 when none): where a join without Last-Event-ID starts.
SELECT COALESCE(max(event_id), 0) FROM lg_deploy.run_events WHERE execution_id = %(execution_id)s;

-- name: read_thread_events
-- A thread's stream events after `after` (every run's, and run_done rows), oldest first.
SELECT event_id, execution_id, event, data FROM lg_deploy.run_events
WHERE thread_id = %(thread_id)s AND event_id > %(after)s
ORDER BY event_id LIMIT %(limit)s;

-- name: last_thread_event
-- The newest stream event id on a thread (0 when none).
SELECT COALESCE(max(event_id), 0) FROM lg_deploy.run_events WHERE thread_id = %(thread_id)s;

-- name: prune_run_events
-- Delete the stream events of runs final for longer than the cut-off, one batch.
DELETE FROM lg_deploy.run_events
WHERE event_id IN (
    SELECT e.event_id FROM lg_deploy.run_events e
    JOIN lg_deploy.executions x USING (execution_id)
    WHERE x.status IN ('COMPLETED', 'FAILED', 'INTERRUPTED')
      AND x.finished_at < now() - make_interval(secs => %(older_than_seconds)s)
    LIMIT %(batch_size)s
);

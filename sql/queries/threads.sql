-- name: insert_thread
-- Insert one thread and return it; no row back when its id is taken.
INSERT INTO lg_deploy.threads (thread_id, metadata)
VALUES (COALESCE(%(thread_id)s::uuid, gen_random_uuid()), %(metadata)s)
ON CONFLICT (thread_id) DO NOTHING
RETURNING *;

-- name: get_thread
-- One thread by id.
SELECT * FROM lg_deploy.threads WHERE thread_id = %(thread_id)s;

-- name: merge_thread_metadata
-- Merge keys into a thread's metadata (a key given replaces the stored one); the thread as now.
UPDATE lg_deploy.threads
SET metadata = metadata || %(metadata)s,
    updated_at = now()
WHERE thread_id = %(thread_id)s
RETURNING *;

-- name: copy_thread
-- A new thread (id `target`) with a thread's metadata, config, values, interrupts and error;
-- busy becomes idle (its runs stay behind). No row back when there is no such thread.
INSERT INTO lg_deploy.threads (thread_id, status, metadata, config, "values", interrupts, error)
SELECT %(target)s::uuid, CASE WHEN status = 'busy' THEN 'idle' ELSE status END, metadata,
       config, "values", interrupts, error
FROM lg_deploy.threads WHERE thread_id = %(source)s
RETURNING *;

-- name: delete_threads
-- Delete the threads among these ids; how many there were.
WITH deleted AS (
    DELETE FROM lg_deploy.threads WHERE thread_id = ANY(%(ids)s::uuid[]) RETURNING 1
)
SELECT count(*) AS count FROM deleted;

-- name: search_threads
-- Threads whose metadata and values contain the filters, of one status and among the ids if
-- given, in the requested order (thread id breaks ties), one page.
SELECT *
FROM lg_deploy.threads
WHERE metadata @> %(metadata)s
  AND (%(values)s::jsonb IS NULL OR "values" @> %(values)s::jsonb)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(ids)s::uuid[] IS NULL OR thread_id = ANY(%(ids)s::uuid[]))
ORDER BY
    CASE WHEN NOT %(descending)s THEN
        CASE %(sort_by)s WHEN 'created_at' THEN created_at WHEN 'updated_at' THEN updated_at
                         WHEN 'state_updated_at' THEN state_updated_at END
    END ASC,
    CASE WHEN %(descending)s THEN
        CASE %(sort_by)s WHEN 'created_at' THEN created_at WHEN 'updated_at' THEN updated_at
                         WHEN 'state_updated_at' THEN state_updated_at END
    END DESC,
    CASE WHEN NOT %(descending)s THEN
        CASE %(sort_by)s WHEN 'thread_id' THEN thread_id::text WHEN 'status' THEN status END
    END ASC,
    CASE WHEN %(descending)s THEN
        CASE %(sort_by)s WHEN 'thread_id' THEN thread_id::text WHEN 'status' THEN status END
    END DESC,
    thread_id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: count_threads
-- How many threads search_threads would find without its page.
SELECT count(*) AS count
FROM lg_deploy.threads
WHERE metadata @> %(metadata)s
  AND (%(values)s::jsonb IS NULL OR "values" @> %(values)s::jsonb)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(ids)s::uuid[] IS NULL OR thread_id = ANY(%(ids)s::uuid[]));

-- name: lock_thread_admission
-- Take a thread's admission lock for this transaction: runs join a thread one at a time. An
-- advisory lock, not the thread's row lock: a run that changes status locks its row and then,
-- by the trigger, its thread's, so an admission holding the thread's row and then cancelling its
-- runs would deadlock with it.
SELECT pg_advisory_xact_lock(%(lock_class)s, hashtext(%(thread_id)s::text));

-- name: thread_runs_in_flight
-- The ids of a thread's QUEUED and RUNNING runs, oldest first.
SELECT execution_id::text FROM lg_deploy.executions
WHERE thread_id = %(thread_id)s AND status IN ('QUEUED', 'RUNNING')
ORDER BY created_at, execution_id;

-- name: label_thread_graph
-- The graph and assistant a thread's runs use, in its metadata unless it names them already.
UPDATE lg_deploy.threads
SET metadata = jsonb_build_object('graph_id', %(graph_id)s::text,
                                  'assistant_id', %(assistant_id)s::text) || metadata
WHERE thread_id = %(thread_id)s
  AND NOT (metadata ? 'graph_id' AND metadata ? 'assistant_id');

-- name: set_thread_state
-- A thread's values and interrupts after its state was updated, and its status from them
-- (interrupted while something is left to run, else idle), unless a run is in flight.
UPDATE lg_deploy.threads
SET "values" = %(values)s,
    interrupts = %(interrupts)s,
    status = CASE WHEN status = 'busy' THEN status
                  WHEN %(interrupted)s THEN 'interrupted' ELSE 'idle' END,
    updated_at = now(),
    state_updated_at = now()
WHERE thread_id = %(thread_id)s;

-- name: expired_threads
-- Threads not changed for `ttl_seconds`, with no run QUEUED or RUNNING, oldest first; one batch.
SELECT t.thread_id FROM lg_deploy.threads t
WHERE t.updated_at < now() - make_interval(secs => %(ttl_seconds)s)
  AND t.status <> 'busy'
  AND NOT EXISTS (
      SELECT 1 FROM lg_deploy.executions e
      WHERE e.thread_id = t.thread_id AND e.status IN ('QUEUED', 'RUNNING'))
ORDER BY t.updated_at
LIMIT %(batch_size)s;

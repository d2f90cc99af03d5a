-- name: insert_cron
-- Store one cron and return it.
INSERT INTO lg_deploy.crons
    (graph_id, assistant_id, thread_id, schedule, timezone, input, config, context, metadata,
     interrupt_before, interrupt_after, multitask_strategy, stream_mode, stream_subgraphs,
     webhook, on_run_completed, payload, user_id, enabled, end_time, next_run_at)
VALUES
    (%(graph_id)s, %(assistant_id)s, %(thread_id)s, %(schedule)s, %(timezone)s, %(input)s,
     %(config)s, %(context)s, %(metadata)s, %(interrupt_before)s, %(interrupt_after)s,
     %(multitask_strategy)s, %(stream_mode)s, %(stream_subgraphs)s, %(webhook)s,
     %(on_run_completed)s, %(payload)s, %(user_id)s, %(enabled)s, %(end_time)s,
     %(next_run_at)s)
RETURNING *;

-- name: get_cron
-- One cron by id.
SELECT * FROM lg_deploy.crons WHERE cron_id = %(cron_id)s;

-- name: update_cron
-- Change the given fields of one cron (a NULL parameter keeps the field; end_time only when
-- set_end_time), with the next tick its new schedule gives; the cron as it now is.
UPDATE lg_deploy.crons SET
    schedule = COALESCE(%(schedule)s, schedule),
    timezone = COALESCE(%(timezone)s, timezone),
    input = COALESCE(%(input)s, input),
    config = COALESCE(%(config)s, config),
    context = COALESCE(%(context)s, context),
    metadata = COALESCE(%(metadata)s, metadata),
    interrupt_before = COALESCE(%(interrupt_before)s, interrupt_before),
    interrupt_after = COALESCE(%(interrupt_after)s, interrupt_after),
    stream_mode = COALESCE(%(stream_mode)s, stream_mode),
    stream_subgraphs = COALESCE(%(stream_subgraphs)s, stream_subgraphs),
    webhook = COALESCE(%(webhook)s, webhook),
    on_run_completed = COALESCE(%(on_run_completed)s, on_run_completed),
    payload = payload || %(payload)s,
    enabled = COALESCE(%(enabled)s, enabled),
    end_time = CASE WHEN %(set_end_time)s THEN %(end_time)s ELSE end_time END,
    next_run_at = %(next_run_at)s,
    error = NULL
WHERE cron_id = %(cron_id)s
RETURNING *;

-- name: delete_cron
-- Delete one cron; its executions stay. No row back when there was none.
DELETE FROM lg_deploy.crons WHERE cron_id = %(cron_id)s RETURNING cron_id;

-- name: search_crons
-- Crons by graph or assistant, thread, enabled and metadata containment, newest first.
SELECT * FROM lg_deploy.crons
WHERE (%(graph_id)s::text IS NULL OR graph_id = %(graph_id)s
       OR assistant_id::text = %(graph_id)s)
  AND (%(thread_id)s::uuid IS NULL OR thread_id = %(thread_id)s)
  AND (%(enabled)s::boolean IS NULL OR enabled = %(enabled)s)
  AND metadata @> %(metadata)s
ORDER BY created_at DESC, cron_id DESC;

-- name: count_crons
-- How many crons match, as search_crons.
SELECT count(*) FROM lg_deploy.crons
WHERE (%(graph_id)s::text IS NULL OR graph_id = %(graph_id)s
       OR assistant_id::text = %(graph_id)s)
  AND (%(thread_id)s::uuid IS NULL OR thread_id = %(thread_id)s)
  AND (%(enabled)s::boolean IS NULL OR enabled = %(enabled)s)
  AND metadata @> %(metadata)s;

-- name: lock_due_crons
-- Enabled crons whose next tick has come (or, inserted by SQL, was never computed), locked for
-- this transaction; crons another process is ticking are skipped.
SELECT cron_id, schedule, timezone, next_run_at, end_time FROM lg_deploy.crons
WHERE enabled AND (next_run_at IS NULL OR next_run_at <= now())
ORDER BY next_run_at NULLS FIRST
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: take_cron_ticks
-- For each locked cron: one QUEUED execution per tick to run (a tick that already has one is
-- left alone), then its next tick, enabled flag and error. The number of executions made.
WITH ticks AS (
    SELECT * FROM jsonb_to_recordset(%(ticks)s)
        AS t (cron_id uuid, ticks timestamptz[], next_run_at timestamptz, enabled boolean,
              error text)
), made AS (
    INSERT INTO lg_deploy.executions
        (graph_id, input, config, context, metadata, thread_id, assistant_id, interrupt_before,
         interrupt_after, multitask_strategy, stream_mode, stream_subgraphs, webhook,
         max_attempts, cron_id, cron_tick)
    SELECT c.graph_id, c.input, c.config, c.context,
           c.metadata || jsonb_build_object('cron_id', c.cron_id), c.thread_id, c.assistant_id,
           c.interrupt_before, c.interrupt_after, c.multitask_strategy, c.stream_mode,
           c.stream_subgraphs, c.webhook, %(max_attempts)s, c.cron_id, tick
    FROM ticks t
    JOIN lg_deploy.crons c USING (cron_id)
    CROSS JOIN LATERAL unnest(t.ticks) AS tick
    ORDER BY c.cron_id, tick
    ON CONFLICT (cron_id, cron_tick) WHERE cron_id IS NOT NULL DO NOTHING
    RETURNING execution_id
), moved AS (
    UPDATE lg_deploy.crons c
    SET next_run_at = t.next_run_at,
        enabled = t.enabled,
        error = t.error,
        last_tick_at = COALESCE(t.ticks[array_upper(t.ticks, 1)], c.last_tick_at)
    FROM ticks t
    WHERE c.cron_id = t.cron_id
)
SELECT count(*) AS made FROM made;

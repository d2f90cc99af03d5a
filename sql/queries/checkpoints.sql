-- name: search_path_head
-- The first schema of this connection's search path, unquoted (LangGraph's saver needs lg_deploy).
SELECT trim(both ' "' FROM split_part(current_setting('search_path'), ',', 1));

-- name: attempt_holds_run
-- Whether this attempt by this worker still holds the run (RUNNING, not taken over): the fence
-- of its checkpoint writes.
SELECT EXISTS (
    SELECT 1 FROM lg_deploy.executions
    WHERE execution_id = %(execution_id)s AND status = 'RUNNING'
      AND worker_id = %(worker_id)s AND attempts = %(attempt)s
);

-- name: copy_thread_checkpoints
-- Give thread `target` a copy of every checkpoint, blob and write of thread `source` (the
-- thread_id a checkpoint's metadata names becomes the target's).
WITH checkpoints AS (
    INSERT INTO lg_deploy.checkpoints
        (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata)
    SELECT %(target)s, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint,
           CASE WHEN metadata ->> 'thread_id' = %(source)s
                THEN metadata || jsonb_build_object('thread_id', %(target)s::text)
                ELSE metadata END
    FROM lg_deploy.checkpoints WHERE thread_id = %(source)s
),
blobs AS (
    INSERT INTO lg_deploy.checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT %(target)s, checkpoint_ns, channel, version, type, blob
    FROM lg_deploy.checkpoint_blobs WHERE thread_id = %(source)s
)
INSERT INTO lg_deploy.checkpoint_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path)
SELECT %(target)s, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path
FROM lg_deploy.checkpoint_writes WHERE thread_id = %(source)s;

-- name: delete_thread_checkpoints
-- Delete every checkpoint, blob and write of the threads among these ids.
WITH gone AS (SELECT unnest(%(thread_ids)s::text[]) AS thread_id),
     writes AS (DELETE FROM lg_deploy.checkpoint_writes w USING gone WHERE w.thread_id = gone.thread_id),
     blobs AS (DELETE FROM lg_deploy.checkpoint_blobs b USING gone WHERE b.thread_id = gone.thread_id)
DELETE FROM lg_deploy.checkpoints c USING gone WHERE c.thread_id = gone.thread_id;

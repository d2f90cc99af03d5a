-- 0010: rollback, the platform's other way to stop a run. A run cancelled with action
-- 'rollback' (the multitask strategy, or a cancel asking for it) is forgotten as it ends
-- "cancelled": its row, its history and the checkpoints it wrote go in the same transaction,
-- whoever ends it (its worker, lease recovery, a cancel while QUEUED, psql), so the thread goes
-- on from the state before that run.

ALTER TABLE lg_deploy.executions
    ADD COLUMN cancel_action text,
    ADD CONSTRAINT executions_cancel_action_known
        CHECK (cancel_action IS NULL OR cancel_action IN ('interrupt', 'rollback')),
    ADD CONSTRAINT executions_cancel_action_needs_request
        CHECK (cancel_action IS NULL OR cancel_requested_at IS NOT NULL);
COMMENT ON COLUMN lg_deploy.executions.cancel_action IS
    'How a cancel stops the run: interrupt (it ends FAILED "cancelled") or rollback (forgotten then, with its checkpoints).';

-- Forget runs: delete the checkpoints each wrote on its thread (LangGraph's tables, when they
-- exist), the writes it left on the checkpoint it started from, then the rows (their history
-- goes with them). The checkpoint it started from keeps what was there before the run: its
-- interrupts and errors, and the writes of tasks that had finished; a resume's value and what
-- the resumed (or, from a breakpoint, every) task wrote go.
CREATE FUNCTION lg_deploy.forget_runs(doomed uuid[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, lg_deploy, pg_temp AS $$
DECLARE
    run record;
    base text;
    gone integer;
BEGIN
    IF to_regclass('lg_deploy.checkpoints') IS NOT NULL THEN
        FOR run IN SELECT e.execution_id::text AS run_id, e.thread_id::text AS thread_id
                   FROM lg_deploy.executions e
                   WHERE e.execution_id = ANY(doomed) AND e.thread_id IS NOT NULL
        LOOP
            SELECT c.parent_checkpoint_id INTO base
            FROM lg_deploy.checkpoints c
            WHERE c.thread_id = run.thread_id AND c.checkpoint_ns = ''
              AND c.metadata ->> 'run_id' = run.run_id
            ORDER BY c.checkpoint_id
            LIMIT 1;
            IF NOT FOUND THEN  -- it wrote no checkpoint: it started from the thread's latest
                SELECT c.checkpoint_id INTO base
                FROM lg_deploy.checkpoints c
                WHERE c.thread_id = run.thread_id AND c.checkpoint_ns = ''
                ORDER BY c.checkpoint_id DESC
                LIMIT 1;
            END IF;
            DELETE FROM lg_deploy.checkpoint_writes w
            WHERE w.thread_id = run.thread_id AND w.checkpoint_ns = '' AND w.checkpoint_id = base
              AND w.channel NOT IN ('__interrupt__', '__error__')
              AND (w.channel = '__resume__'
                   OR w.task_id IN (SELECT s.task_id FROM lg_deploy.checkpoint_writes s
                                    WHERE s.thread_id = w.thread_id AND s.checkpoint_ns = ''
                                      AND s.checkpoint_id = base AND s.channel = '__interrupt__')
                   OR NOT EXISTS (SELECT 1 FROM lg_deploy.checkpoint_writes s
                                  WHERE s.thread_id = w.thread_id AND s.checkpoint_ns = ''
                                    AND s.checkpoint_id = base
                                    AND s.channel IN ('__interrupt__', '__error__')));
            DELETE FROM lg_deploy.checkpoint_writes w
            USING lg_deploy.checkpoints c
            WHERE c.thread_id = run.thread_id AND c.metadata ->> 'run_id' = run.run_id
              AND w.thread_id = c.thread_id AND w.checkpoint_ns = c.checkpoint_ns
              AND w.checkpoint_id = c.checkpoint_id;
            DELETE FROM lg_deploy.checkpoints c
            WHERE c.thread_id = run.thread_id AND c.metadata ->> 'run_id' = run.run_id;
            DELETE FROM lg_deploy.checkpoint_blobs b
            WHERE b.thread_id = run.thread_id
              AND NOT EXISTS (SELECT 1 FROM lg_deploy.checkpoints c
                              WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
                                AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version);
        END LOOP;
    END IF;
    DELETE FROM lg_deploy.executions e WHERE e.execution_id = ANY(doomed);
    GET DIAGNOSTICS gone = ROW_COUNT;
    RETURN gone;
END;
$$;
REVOKE EXECUTE ON FUNCTION lg_deploy.forget_runs(uuid[]) FROM PUBLIC;

-- Runs that end "cancelled" with rollback asked are forgotten at once. The trigger sorts after
-- executions_after_update (their history is written and their end announced first) and before
-- executions_threads_after_update (the thread's status is then decided without them).
CREATE FUNCTION lg_deploy.executions_rollback() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, lg_deploy, pg_temp AS $$
DECLARE
    doomed uuid[];
BEGIN
    SELECT array_agg(n.execution_id) INTO doomed
    FROM new_rows n JOIN old_rows o USING (execution_id)
    WHERE n.status = 'FAILED' AND o.status <> 'FAILED' AND n.cancel_action = 'rollback';
    IF doomed IS NOT NULL THEN
        PERFORM lg_deploy.forget_runs(doomed);
    END IF;
    RETURN NULL;
END;
$$;
REVOKE EXECUTE ON FUNCTION lg_deploy.executions_rollback() FROM PUBLIC;

CREATE TRIGGER executions_rollback_after_update AFTER UPDATE ON lg_deploy.executions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lg_deploy.executions_rollback();

-- A run on a thread is stamped when its row is inserted, not when its transaction began: runs
-- join a thread one at a time under the thread's admission lock, so a transaction that began
-- first but waited for the lock is stamped after the run admitted before it, and the claim's
-- oldest-first order on a thread is the order runs were admitted.
CREATE OR REPLACE FUNCTION lg_deploy.executions_check_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status <> 'QUEUED' THEN
        RAISE EXCEPTION 'a new execution must be QUEUED, not %', NEW.status
            USING ERRCODE = 'check_violation', HINT = 'leave status out of the INSERT';
    END IF;
    IF NEW.attempts <> 0 OR NEW.worker_id IS NOT NULL OR NEW.lease_expires_at IS NOT NULL
       OR NEW.output IS NOT NULL OR NEW.started_at IS NOT NULL OR NEW.finished_at IS NOT NULL
       OR NEW.cancel_requested_at IS NOT NULL OR NEW.cancel_action IS NOT NULL THEN
        RAISE EXCEPTION 'a new execution cannot carry attempts, worker, lease, output, run times or a cancel request'
            USING ERRCODE = 'check_violation', HINT = 'insert graph_id and input; the rest has defaults';
    END IF;
    NEW.created_at := CASE WHEN NEW.thread_id IS NULL THEN now() ELSE clock_timestamp() END;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

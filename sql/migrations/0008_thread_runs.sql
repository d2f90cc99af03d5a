-- 0008: runs on a thread. A run on a thread is an execution with a thread_id: it continues the
-- thread's checkpoints, at most one runs at a time per thread, and the thread's status, values
-- and interrupts follow its runs in the same transaction (a trigger, whoever writes the row).
-- INTERRUPTED is a new final status: the graph stopped at interrupt() or a breakpoint and waits
-- for a run on its thread that resumes it.

ALTER TABLE lg_deploy.executions
    ADD COLUMN thread_id uuid,
    ADD COLUMN config jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN context jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN command jsonb,
    ADD COLUMN interrupt_before text[],
    ADD COLUMN interrupt_after text[],
    ADD COLUMN multitask_strategy text,
    ADD COLUMN interrupts jsonb,
    ADD CONSTRAINT executions_thread_fkey FOREIGN KEY (thread_id)
        REFERENCES lg_deploy.threads (thread_id) ON DELETE CASCADE,
    ADD CONSTRAINT executions_config_is_object CHECK (jsonb_typeof(config) = 'object'),
    ADD CONSTRAINT executions_context_is_object CHECK (jsonb_typeof(context) = 'object'),
    ADD CONSTRAINT executions_command_is_object
        CHECK (command IS NULL OR jsonb_typeof(command) = 'object'),
    ADD CONSTRAINT executions_command_needs_thread CHECK (command IS NULL OR thread_id IS NOT NULL),
    ADD CONSTRAINT executions_multitask_strategy_known
        CHECK (multitask_strategy IS NULL
               OR multitask_strategy IN ('reject', 'enqueue', 'interrupt', 'rollback')),
    ADD CONSTRAINT executions_interrupts_is_object
        CHECK (interrupts IS NULL OR jsonb_typeof(interrupts) = 'object');

-- input NULL: continue the thread from its last checkpoint (after a breakpoint, or to resume).
ALTER TABLE lg_deploy.executions
    ALTER COLUMN input DROP NOT NULL,
    DROP CONSTRAINT executions_input_is_object,
    ADD CONSTRAINT executions_input_is_object
        CHECK (CASE WHEN input IS NULL THEN thread_id IS NOT NULL
                    ELSE jsonb_typeof(input) = 'object' END);

ALTER TABLE lg_deploy.executions
    DROP CONSTRAINT executions_status_known,
    ADD CONSTRAINT executions_status_known
        CHECK (status IN ('QUEUED', 'RUNNING', 'COMPLETED', 'FAILED', 'INTERRUPTED'));
INSERT INTO lg_deploy.execution_transitions (from_status, to_status, meaning) VALUES
    ('RUNNING', 'INTERRUPTED', 'the graph stopped at an interrupt, to be resumed on its thread');

COMMENT ON COLUMN lg_deploy.executions.thread_id IS
    'The thread this run continues (lg_deploy.threads); NULL: a thread-less run.';
COMMENT ON COLUMN lg_deploy.executions.config IS
    'The run''s LangGraph config: configurable, tags, recursion_limit (thread_id is the row''s).';
COMMENT ON COLUMN lg_deploy.executions.context IS 'The run''s LangGraph runtime context.';
COMMENT ON COLUMN lg_deploy.executions.command IS
    'A LangGraph Command (resume, update, goto) the run starts with instead of input.';
COMMENT ON COLUMN lg_deploy.executions.interrupt_before IS
    'Nodes to stop before (breakpoints); {*}: every node.';
COMMENT ON COLUMN lg_deploy.executions.interrupt_after IS
    'Nodes to stop after (breakpoints); {*}: every node.';
COMMENT ON COLUMN lg_deploy.executions.multitask_strategy IS
    'What the run asked for when its thread was busy: reject, enqueue, interrupt or rollback.';
COMMENT ON COLUMN lg_deploy.executions.interrupts IS
    'INTERRUPTED: the pending interrupts by task id, {task_id: [{id, value}]}.';

-- The database's guarantee behind the claim's thread gate: one RUNNING run per thread.
CREATE UNIQUE INDEX executions_one_running_per_thread ON lg_deploy.executions (thread_id)
    WHERE status = 'RUNNING' AND thread_id IS NOT NULL;
-- A thread's runs, oldest first: its run list, its queue order and the claim's gate.
CREATE INDEX executions_thread_idx ON lg_deploy.executions (thread_id, created_at, execution_id)
    WHERE thread_id IS NOT NULL;

-- 0002's guard, with INTERRUPTED final like COMPLETED and FAILED.
CREATE OR REPLACE FUNCTION lg_deploy.executions_guard_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status IN ('COMPLETED', 'FAILED', 'INTERRUPTED') THEN
        RAISE EXCEPTION 'execution % is % and final; it cannot change', OLD.execution_id, OLD.status
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.execution_id <> OLD.execution_id OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'execution_id and created_at of execution % cannot change', OLD.execution_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.thread_id IS DISTINCT FROM OLD.thread_id THEN
        RAISE EXCEPTION 'the thread_id of execution % cannot change', OLD.execution_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.status = 'QUEUED' AND OLD.status = 'RUNNING' AND NEW.cancel_requested_at IS NOT NULL THEN
        NEW.status := 'FAILED';
        NEW.error := 'cancelled';
    END IF;
    -- Run times are the database's: only a transition below may stamp them.
    NEW.started_at := OLD.started_at;
    NEW.finished_at := OLD.finished_at;
    IF NEW.status <> OLD.status THEN
        IF NOT EXISTS (SELECT 1 FROM lg_deploy.execution_transitions t
                       WHERE t.from_status = OLD.status AND t.to_status = NEW.status) THEN
            RAISE EXCEPTION 'execution % cannot go from % to %', OLD.execution_id, OLD.status, NEW.status
                USING ERRCODE = 'check_violation',
                      HINT = 'allowed transitions are listed in lg_deploy.execution_transitions';
        END IF;
        IF NEW.status = 'RUNNING' THEN
            NEW.started_at := now();
        ELSIF NEW.status = 'QUEUED' THEN
            NEW.lease_expires_at := NULL;
        ELSE
            NEW.finished_at := now();
            NEW.lease_expires_at := NULL;
        END IF;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
ALTER FUNCTION lg_deploy.executions_guard_update()
    SECURITY DEFINER SET search_path = pg_catalog, lg_deploy, pg_temp;
REVOKE EXECUTE ON FUNCTION lg_deploy.executions_guard_update() FROM PUBLIC;

-- 0006's history trigger, with INTERRUPTED among the outcomes announced as finished.
CREATE OR REPLACE FUNCTION lg_deploy.executions_after_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    requeued boolean;
    finished text;
    cancelled text;
BEGIN
    INSERT INTO lg_deploy.execution_events
        (execution_id, from_status, to_status, at, worker_id, attempt, error, traceback)
    SELECT n.execution_id, o.status, n.status, n.updated_at, n.worker_id, n.attempts,
           CASE WHEN n.status IN ('FAILED', 'QUEUED') THEN n.error END,
           CASE WHEN n.status IN ('FAILED', 'QUEUED') THEN n.traceback END
    FROM new_rows n JOIN old_rows o USING (execution_id)
    WHERE n.status <> o.status;

    SELECT bool_or(n.status = 'QUEUED' AND o.status <> 'QUEUED'),
           string_agg(n.execution_id::text, ',')
               FILTER (WHERE n.status <> o.status
                       AND n.status IN ('COMPLETED', 'FAILED', 'INTERRUPTED')),
           string_agg(n.execution_id::text, ',')
               FILTER (WHERE n.status = 'RUNNING' AND o.cancel_requested_at IS NULL
                       AND n.cancel_requested_at IS NOT NULL)
    INTO requeued, finished, cancelled
    FROM new_rows n JOIN old_rows o USING (execution_id);
    -- A run that ends on a thread may unblock the thread's next QUEUED run.
    IF requeued OR (finished IS NOT NULL AND EXISTS (
            SELECT 1 FROM new_rows n WHERE n.thread_id IS NOT NULL
            AND n.status IN ('COMPLETED', 'FAILED', 'INTERRUPTED'))) THEN
        PERFORM pg_notify('lg_deploy_queued', '');
    END IF;
    -- NOTIFY payloads stop at 8000 bytes: past that, '*' means "look at everything".
    IF finished IS NOT NULL THEN
        PERFORM pg_notify('lg_deploy_finished', CASE WHEN length(finished) < 7900 THEN finished ELSE '*' END);
    END IF;
    IF cancelled IS NOT NULL THEN
        PERFORM pg_notify('lg_deploy_cancel', CASE WHEN length(cancelled) < 7900 THEN cancelled ELSE '*' END);
    END IF;
    RETURN NULL;
END;
$$;
ALTER FUNCTION lg_deploy.executions_after_update()
    SECURITY DEFINER SET search_path = pg_catalog, lg_deploy, pg_temp;
REVOKE EXECUTE ON FUNCTION lg_deploy.executions_after_update() FROM PUBLIC;

-- A thread's status from its runs: busy while one is QUEUED or RUNNING, else from the run that
-- finished last: interrupted (INTERRUPTED), error (FAILED, but not cancelled), idle otherwise.
-- A run finishing here also leaves its values (output without __interrupt__), its interrupts and
-- its error on the thread. Runs as its owner: a producer may insert runs but not write threads.
CREATE FUNCTION lg_deploy.threads_follow_runs() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, lg_deploy, pg_temp AS $$
DECLARE
    touched uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT n.thread_id) INTO touched
        FROM new_rows n WHERE n.thread_id IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN  -- only deleting a run in flight can end a thread's busy spell
        SELECT array_agg(DISTINCT o.thread_id) INTO touched
        FROM old_rows o WHERE o.thread_id IS NOT NULL AND o.status IN ('QUEUED', 'RUNNING');
    ELSE
        SELECT array_agg(DISTINCT n.thread_id) INTO touched
        FROM new_rows n JOIN old_rows o USING (execution_id)
        WHERE n.thread_id IS NOT NULL AND n.status <> o.status;
    END IF;
    IF touched IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        -- What the runs that finished here leave on their threads (the last one per thread).
        UPDATE lg_deploy.threads t
        SET "values" = CASE WHEN f.status IN ('COMPLETED', 'INTERRUPTED') AND f.output IS NOT NULL
                            THEN f.output - '__interrupt__' ELSE t."values" END,
            interrupts = CASE WHEN f.status = 'INTERRUPTED' THEN COALESCE(f.interrupts, '{}')
                              ELSE '{}' END,
            error = CASE WHEN f.status = 'FAILED' AND f.error IS DISTINCT FROM 'cancelled'
                         THEN to_jsonb(f.error) END,
            state_updated_at = now()
        FROM (
            SELECT DISTINCT ON (n.thread_id) n.thread_id, n.status, n.output, n.interrupts, n.error
            FROM new_rows n JOIN old_rows o USING (execution_id)
            WHERE n.thread_id IS NOT NULL AND n.status <> o.status
              AND n.status IN ('COMPLETED', 'FAILED', 'INTERRUPTED')
            ORDER BY n.thread_id, n.finished_at DESC, n.execution_id DESC
        ) AS f
        WHERE t.thread_id = f.thread_id;
    END IF;
    UPDATE lg_deploy.threads t
    SET status = s.status, updated_at = now()
    FROM (
        SELECT id AS thread_id,
               CASE
                   WHEN EXISTS (SELECT 1 FROM lg_deploy.executions e
                                WHERE e.thread_id = id AND e.status IN ('QUEUED', 'RUNNING'))
                       THEN 'busy'
                   ELSE COALESCE((
                       SELECT CASE
                                  WHEN e.status = 'INTERRUPTED' THEN 'interrupted'
                                  WHEN e.status = 'FAILED' AND e.error IS DISTINCT FROM 'cancelled'
                                      THEN 'error'
                                  ELSE 'idle'
                              END
                       FROM lg_deploy.executions e
                       WHERE e.thread_id = id AND e.finished_at IS NOT NULL
                       ORDER BY e.finished_at DESC, e.execution_id DESC
                       LIMIT 1), 'idle')
               END AS status
        FROM unnest(touched) AS id
    ) AS s
    WHERE t.thread_id = s.thread_id AND t.status IS DISTINCT FROM s.status;
    RETURN NULL;
END;
$$;
REVOKE EXECUTE ON FUNCTION lg_deploy.threads_follow_runs() FROM PUBLIC;

CREATE TRIGGER executions_threads_after_insert AFTER INSERT ON lg_deploy.executions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lg_deploy.threads_follow_runs();
CREATE TRIGGER executions_threads_after_update AFTER UPDATE ON lg_deploy.executions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lg_deploy.threads_follow_runs();
CREATE TRIGGER executions_threads_after_delete AFTER DELETE ON lg_deploy.executions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lg_deploy.threads_follow_runs();

-- Retention prunes INTERRUPTED runs too: they are final (a resume is a new run).
DROP INDEX lg_deploy.executions_finished_idx;
CREATE INDEX executions_finished_idx ON lg_deploy.executions (finished_at)
    WHERE status IN ('COMPLETED', 'FAILED', 'INTERRUPTED');

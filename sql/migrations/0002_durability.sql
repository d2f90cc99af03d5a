-- 0002: durability: per-execution timeout, cancellation of running executions, lease recovery.

ALTER TABLE lg_deploy.executions
    ADD COLUMN timeout_seconds double precision,
    ADD COLUMN cancel_requested_at timestamptz,
    ADD CONSTRAINT executions_timeout_in_range
        CHECK (timeout_seconds IS NULL OR (timeout_seconds > 0 AND timeout_seconds <= 604800));

COMMENT ON COLUMN lg_deploy.executions.timeout_seconds IS
    'Fail the execution when a run lasts longer; NULL: the server default.';
COMMENT ON COLUMN lg_deploy.executions.cancel_requested_at IS
    'Set to ask the worker running it to stop; it then becomes FAILED "cancelled".';

-- A new row cannot arrive already cancelled.
CREATE OR REPLACE FUNCTION lg_deploy.executions_check_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status <> 'QUEUED' THEN
        RAISE EXCEPTION 'a new execution must be QUEUED, not %', NEW.status
            USING ERRCODE = 'check_violation', HINT = 'leave status out of the INSERT';
    END IF;
    IF NEW.attempts <> 0 OR NEW.worker_id IS NOT NULL OR NEW.lease_expires_at IS NOT NULL
       OR NEW.output IS NOT NULL OR NEW.started_at IS NOT NULL OR NEW.finished_at IS NOT NULL
       OR NEW.cancel_requested_at IS NOT NULL THEN
        RAISE EXCEPTION 'a new execution cannot carry attempts, worker, lease, output, run times or a cancel request'
            USING ERRCODE = 'check_violation', HINT = 'insert graph_id and input; the rest has defaults';
    END IF;
    NEW.created_at := now();
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- History; wake-ups for rows handed back; ids of rows that became final or were asked to stop.
CREATE OR REPLACE FUNCTION lg_deploy.executions_after_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    requeued boolean;
    finished text;
    cancelled text;
BEGIN
    INSERT INTO lg_deploy.execution_events
        (execution_id, from_status, to_status, at, worker_id, attempt, error)
    SELECT n.execution_id, o.status, n.status, n.updated_at, n.worker_id, n.attempts,
           CASE WHEN n.status IN ('FAILED', 'QUEUED') THEN n.error END
    FROM new_rows n JOIN old_rows o USING (execution_id)
    WHERE n.status <> o.status;

    SELECT bool_or(n.status = 'QUEUED' AND o.status <> 'QUEUED'),
           string_agg(n.execution_id::text, ',')
               FILTER (WHERE n.status <> o.status AND n.status IN ('COMPLETED', 'FAILED')),
           string_agg(n.execution_id::text, ',')
               FILTER (WHERE n.status = 'RUNNING' AND o.cancel_requested_at IS NULL
                       AND n.cancel_requested_at IS NOT NULL)
    INTO requeued, finished, cancelled
    FROM new_rows n JOIN old_rows o USING (execution_id);
    IF requeued THEN
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

-- The guard of 0001, plus: a row asked to stop is never handed back to the queue; it fails
-- "cancelled" instead (whether a worker, the lease recovery or psql hands it back).
CREATE OR REPLACE FUNCTION lg_deploy.executions_guard_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status IN ('COMPLETED', 'FAILED') THEN
        RAISE EXCEPTION 'execution % is % and final; it cannot change', OLD.execution_id, OLD.status
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.execution_id <> OLD.execution_id OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'execution_id and created_at of execution % cannot change', OLD.execution_id
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

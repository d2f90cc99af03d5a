-- 0001: the executions table (store and queue), its lifecycle guard, its history and its wake-up.
-- Column names are a public interface: other systems INSERT here and operators read it in psql.

CREATE SCHEMA IF NOT EXISTS lg_deploy;

-- The lifecycle as data: the guard trigger reads it, lg_deploy.models.ALLOWED_TRANSITIONS mirrors it.
CREATE TABLE lg_deploy.execution_transitions (
    from_status text NOT NULL,
    to_status   text NOT NULL,
    meaning     text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);
INSERT INTO lg_deploy.execution_transitions (from_status, to_status, meaning) VALUES
    ('QUEUED',  'RUNNING',   'claimed by a worker'),
    ('QUEUED',  'FAILED',    'cancelled or expired before it ran'),
    ('RUNNING', 'COMPLETED', 'the graph returned'),
    ('RUNNING', 'FAILED',    'the graph raised, timed out or ran out of attempts'),
    ('RUNNING', 'QUEUED',    'handed back: retry, lease recovery or shutdown');

CREATE TABLE lg_deploy.executions (
    execution_id     uuid        NOT NULL DEFAULT gen_random_uuid(),
    graph_id         text        NOT NULL,
    status           text        NOT NULL DEFAULT 'QUEUED',
    input            jsonb       NOT NULL,
    output           jsonb,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL DEFAULT 3,
    priority         smallint    NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    worker_id        text,
    lease_expires_at timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    request_id       text,
    idempotency_key  text,
    CONSTRAINT executions_pkey PRIMARY KEY (execution_id),
    CONSTRAINT executions_status_known
        CHECK (status IN ('QUEUED', 'RUNNING', 'COMPLETED', 'FAILED')),
    CONSTRAINT executions_graph_id_length CHECK (length(graph_id) BETWEEN 1 AND 200),
    CONSTRAINT executions_input_is_object CHECK (jsonb_typeof(input) = 'object'),
    CONSTRAINT executions_output_is_object
        CHECK (output IS NULL OR jsonb_typeof(output) = 'object'),
    CONSTRAINT executions_attempts_in_range CHECK (attempts BETWEEN 0 AND max_attempts),
    CONSTRAINT executions_max_attempts_in_range CHECK (max_attempts BETWEEN 1 AND 1000),
    CONSTRAINT executions_priority_in_range CHECK (priority BETWEEN -100 AND 100),
    CONSTRAINT executions_queued_has_attempts_left CHECK (status <> 'QUEUED' OR attempts < max_attempts),
    CONSTRAINT executions_running_has_lease
        CHECK (status <> 'RUNNING' OR (worker_id IS NOT NULL AND lease_expires_at IS NOT NULL))
);

COMMENT ON TABLE lg_deploy.executions IS
    'One row per execution of a LangGraph graph; also the queue (status QUEUED, run_at due).';
COMMENT ON COLUMN lg_deploy.executions.priority IS 'Higher runs first, -100..100.';
COMMENT ON COLUMN lg_deploy.executions.run_at IS 'Not claimed before this time.';
COMMENT ON COLUMN lg_deploy.executions.attempts IS 'Claims so far, bumped by each claim.';

-- The claim reads only QUEUED rows in claim order: a small partial index, emptied as work drains.
CREATE INDEX executions_claim_idx ON lg_deploy.executions (priority DESC, run_at, execution_id)
    WHERE status = 'QUEUED';
-- Lease recovery scans only RUNNING rows.
CREATE INDEX executions_lease_idx ON lg_deploy.executions (lease_expires_at)
    WHERE status = 'RUNNING';
-- Listings newest first, keyset on (created_at, execution_id).
CREATE INDEX executions_created_idx ON lg_deploy.executions (created_at DESC, execution_id DESC);
CREATE UNIQUE INDEX executions_idempotency_key_idx ON lg_deploy.executions (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE lg_deploy.execution_events (
    event_id     bigint      GENERATED ALWAYS AS IDENTITY,
    execution_id uuid        NOT NULL,
    from_status  text,
    to_status    text        NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    worker_id    text,
    attempt      integer     NOT NULL,
    error        text,
    CONSTRAINT execution_events_pkey PRIMARY KEY (event_id),
    CONSTRAINT execution_events_execution_fkey FOREIGN KEY (execution_id)
        REFERENCES lg_deploy.executions (execution_id) ON DELETE CASCADE
);
CREATE INDEX execution_events_execution_idx ON lg_deploy.execution_events (execution_id, event_id);
COMMENT ON TABLE lg_deploy.execution_events IS
    'Every insert and status change of an execution, in order (written by triggers).';

-- Inserts start the lifecycle: QUEUED, nothing claimed, nothing finished.
CREATE FUNCTION lg_deploy.executions_check_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status <> 'QUEUED' THEN
        RAISE EXCEPTION 'a new execution must be QUEUED, not %', NEW.status
            USING ERRCODE = 'check_violation', HINT = 'leave status out of the INSERT';
    END IF;
    IF NEW.attempts <> 0 OR NEW.worker_id IS NOT NULL OR NEW.lease_expires_at IS NOT NULL
       OR NEW.output IS NOT NULL OR NEW.started_at IS NOT NULL OR NEW.finished_at IS NOT NULL THEN
        RAISE EXCEPTION 'a new execution cannot carry attempts, worker, lease, output or run times'
            USING ERRCODE = 'check_violation', HINT = 'insert graph_id and input; the rest has defaults';
    END IF;
    NEW.created_at := now();
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- The guard: only lifecycle transitions, final rows frozen, the database keeps the clocks.
CREATE FUNCTION lg_deploy.executions_guard_update() RETURNS trigger
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

-- History and wake-up for inserts: one set-based INSERT and one NOTIFY per statement.
CREATE FUNCTION lg_deploy.executions_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lg_deploy.execution_events (execution_id, from_status, to_status, at, attempt)
    SELECT n.execution_id, NULL, n.status, n.created_at, n.attempts FROM new_rows n;
    IF FOUND THEN
        PERFORM pg_notify('lg_deploy_queued', '');
    END IF;
    RETURN NULL;
END;
$$;

-- History for status changes; wake-up for rows handed back; the ids of rows that became final.
CREATE FUNCTION lg_deploy.executions_after_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    requeued boolean;
    finished text;
BEGIN
    INSERT INTO lg_deploy.execution_events
        (execution_id, from_status, to_status, at, worker_id, attempt, error)
    SELECT n.execution_id, o.status, n.status, n.updated_at, n.worker_id, n.attempts,
           CASE WHEN n.status IN ('FAILED', 'QUEUED') THEN n.error END
    FROM new_rows n JOIN old_rows o USING (execution_id)
    WHERE n.status <> o.status;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT bool_or(n.status = 'QUEUED'),
           string_agg(n.execution_id::text, ',') FILTER (WHERE n.status IN ('COMPLETED', 'FAILED'))
    INTO requeued, finished
    FROM new_rows n JOIN old_rows o USING (execution_id)
    WHERE n.status <> o.status;
    IF requeued THEN
        PERFORM pg_notify('lg_deploy_queued', '');
    END IF;
    IF finished IS NOT NULL THEN
        -- NOTIFY payloads stop at 8000 bytes: past that, '*' means "look at everything".
        PERFORM pg_notify('lg_deploy_finished', CASE WHEN length(finished) < 7900 THEN finished ELSE '*' END);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER executions_check_insert BEFORE INSERT ON lg_deploy.executions
    FOR EACH ROW EXECUTE FUNCTION lg_deploy.executions_check_insert();
CREATE TRIGGER executions_guard_update BEFORE UPDATE ON lg_deploy.executions
    FOR EACH ROW EXECUTE FUNCTION lg_deploy.executions_guard_update();
CREATE TRIGGER executions_after_insert AFTER INSERT ON lg_deploy.executions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lg_deploy.executions_after_insert();
CREATE TRIGGER executions_after_update AFTER UPDATE ON lg_deploy.executions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lg_deploy.executions_after_update();

-- 0005: least privilege: the triggers keep history and wake-ups whoever writes the row, and
-- lg_deploy.submit() lets a producer submit with nothing but EXECUTE. Roles: sql/roles.sql.

-- Trigger functions run with the privileges of the role whose statement fired them. A producer
-- may INSERT into executions and the service may UPDATE it, but neither may write
-- execution_events (that would forge history): the functions that touch other tables run as
-- their owner, with a fixed search_path (pg_temp last, so no temporary table can stand in for a
-- real one). executions_check_insert reads nothing but the new row: it keeps the caller's rights.
-- CREATE OR REPLACE FUNCTION resets both settings: a later migration that redefines one of
-- these functions must repeat them (tests/test_roles.py checks).
ALTER FUNCTION lg_deploy.executions_guard_update()
    SECURITY DEFINER SET search_path = pg_catalog, lg_deploy, pg_temp;
ALTER FUNCTION lg_deploy.executions_after_insert()
    SECURITY DEFINER SET search_path = pg_catalog, lg_deploy, pg_temp;
ALTER FUNCTION lg_deploy.executions_after_update()
    SECURITY DEFINER SET search_path = pg_catalog, lg_deploy, pg_temp;

-- Firing a trigger checks no EXECUTE privilege and trigger functions cannot be called directly;
-- revoking it from PUBLIC keeps the owner's functions out of reach all the same.
REVOKE EXECUTE ON FUNCTION lg_deploy.executions_check_insert() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION lg_deploy.executions_guard_update() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION lg_deploy.executions_after_insert() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION lg_deploy.executions_after_update() FROM PUBLIC;

-- Submit one execution and return its id, for producers that cannot use RETURNING or that
-- resend with an idempotency key: a key already used with the same graph and input returns the
-- first execution's id; with another graph or input it is refused (unique_violation). The row
-- passes the same insert trigger and CHECK constraints as a plain INSERT. The defaults repeat
-- the table's (0001): change both together.
CREATE FUNCTION lg_deploy.submit(
    graph_id text,
    input jsonb,
    priority integer DEFAULT 0,
    max_attempts integer DEFAULT 3,
    run_at timestamptz DEFAULT now(),
    idempotency_key text DEFAULT NULL,
    timeout_seconds double precision DEFAULT NULL,
    metadata jsonb DEFAULT '{}',
    request_id text DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, lg_deploy, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    submitted uuid;
    first_graph_id text;
    first_input jsonb;
BEGIN
    LOOP
        INSERT INTO lg_deploy.executions AS e
            (graph_id, input, priority, max_attempts, run_at, idempotency_key, timeout_seconds,
             metadata, request_id)
        VALUES
            (submit.graph_id, submit.input, submit.priority, submit.max_attempts, submit.run_at,
             submit.idempotency_key, submit.timeout_seconds, submit.metadata, submit.request_id)
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING e.execution_id INTO submitted;
        IF submitted IS NOT NULL THEN
            RETURN submitted;
        END IF;
        SELECT e.execution_id, e.graph_id, e.input INTO submitted, first_graph_id, first_input
        FROM lg_deploy.executions e WHERE e.idempotency_key = submit.idempotency_key;
        IF submitted IS NULL THEN
            CONTINUE;  -- the first execution was pruned meanwhile: insert again
        END IF;
        IF first_graph_id <> submit.graph_id OR first_input <> submit.input THEN
            RAISE EXCEPTION 'idempotency key % is taken by execution % with another graph or input',
                submit.idempotency_key, submitted
                USING ERRCODE = 'unique_violation', HINT = 'use a new key for a new execution';
        END IF;
        RETURN submitted;
    END LOOP;
END;
$$;
REVOKE EXECUTE ON FUNCTION lg_deploy.submit(
    text, jsonb, integer, integer, timestamptz, text, double precision, jsonb, text
) FROM PUBLIC;
COMMENT ON FUNCTION lg_deploy.submit(
    text, jsonb, integer, integer, timestamptz, text, double precision, jsonb, text
) IS 'Submit one execution (QUEUED) and return its id; an idempotency key returns the first one.';

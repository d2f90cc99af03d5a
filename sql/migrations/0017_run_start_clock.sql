-- 0017: a run's started_at is the moment its row became RUNNING (clock_timestamp()), not the
-- start of the claiming transaction (now()). A claim statement's transaction starts before it
-- reads the queue: planning the claim took long enough for a thread's previous run to finish
-- and commit in between, so the next run's started_at could read earlier than the previous
-- run's finished_at, although it started after it (tests/test_multitask_race.py). The trigger
-- fires after the claim read the previous run as finished, so its clock is past that commit.
-- Otherwise 0008's guard, repeated whole (with its SECURITY DEFINER settings, see 0005).
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
            NEW.started_at := clock_timestamp();
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

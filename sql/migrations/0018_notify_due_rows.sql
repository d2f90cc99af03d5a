-- 0018: an INSERT wakes the workers (NOTIFY lg_deploy_queued) only when one of its rows is due
-- now. A row due later (run_at in the future) gave every listening worker a claim that found
-- nothing; the workers' poll takes it when due, as before. History is written for every row.
-- Otherwise 0001's function, with 0005's SECURITY DEFINER settings repeated.
CREATE OR REPLACE FUNCTION lg_deploy.executions_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lg_deploy.execution_events (execution_id, from_status, to_status, at, attempt)
    SELECT n.execution_id, NULL, n.status, n.created_at, n.attempts FROM new_rows n;
    IF EXISTS (SELECT 1 FROM new_rows n WHERE n.run_at <= now()) THEN
        PERFORM pg_notify('lg_deploy_queued', '');
    END IF;
    RETURN NULL;
END;
$$;
ALTER FUNCTION lg_deploy.executions_after_insert()
    SECURITY DEFINER SET search_path = pg_catalog, lg_deploy, pg_temp;
REVOKE EXECUTE ON FUNCTION lg_deploy.executions_after_insert() FROM PUBLIC;

-- 0011: streaming through PostgreSQL. A run created with stream modes (the LangGraph routes give
-- every run some, ["values"] by default; plain executions and SQL rows have none) records what
-- its graph streams as rows of lg_deploy.run_events, batched by its worker, each batch fenced by
-- the attempt holding the run and announced by one NOTIFY lg_deploy_events. Any API process
-- reads them back from there: live through its one LISTEN connection, and after a reconnect
-- from the client's Last-Event-ID, which is the row's event_id.

ALTER TABLE lg_deploy.executions
    ADD COLUMN stream_mode text[],
    ADD COLUMN stream_subgraphs boolean NOT NULL DEFAULT false,
    ADD COLUMN stream_resumable boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT executions_stream_mode_known CHECK (
        stream_mode IS NULL OR stream_mode <@ ARRAY['values', 'updates', 'messages',
            'messages-tuple', 'custom', 'debug', 'tasks', 'checkpoints', 'events']::text[]);
COMMENT ON COLUMN lg_deploy.executions.stream_mode IS
    'The LangGraph stream modes recorded in lg_deploy.run_events; NULL: the run records none.';
COMMENT ON COLUMN lg_deploy.executions.stream_subgraphs IS
    'Whether subgraphs'' events are recorded too (as mode|namespace).';
COMMENT ON COLUMN lg_deploy.executions.stream_resumable IS
    'Whether the run was created with stream_resumable (accepted: every stream sends its ids).';

CREATE TABLE lg_deploy.run_events (
    event_id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id uuid        NOT NULL
        REFERENCES lg_deploy.executions (execution_id) ON DELETE CASCADE,
    thread_id    uuid,
    attempt      integer     NOT NULL,
    event        text        NOT NULL CHECK (event <> ''),
    data         text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE lg_deploy.run_events IS
    'What runs streamed, in order: the SSE event name and its JSON data as sent. event_id is the SSE id.';
COMMENT ON COLUMN lg_deploy.run_events.event IS
    'The SSE event: metadata, values, updates, messages, custom, ..., mode|namespace for subgraphs, error, run_done (thread streams only).';
COMMENT ON COLUMN lg_deploy.run_events.data IS
    'Compact JSON text as sent on the wire (text, not jsonb: NUL escapes, key order, no re-encoding).';
CREATE INDEX run_events_execution_idx ON lg_deploy.run_events (execution_id, event_id);
CREATE INDEX run_events_thread_idx ON lg_deploy.run_events (thread_id, event_id)
    WHERE thread_id IS NOT NULL;

-- Whoever ends a run (its worker, lease recovery, a cancel while QUEUED, psql), its stream ends
-- the same way, in that transaction: a failed run that streams records the platform's `error`
-- event, and a run on a thread a `run_done` row for the thread's stream. A rolled-back run is
-- gone by now (executions_rollback_after_update runs first), its events with it.
CREATE FUNCTION lg_deploy.executions_streams() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, lg_deploy, pg_temp AS $$
DECLARE
    woken text;
BEGIN
    WITH ended AS (
        SELECT n.* FROM new_rows n JOIN old_rows o USING (execution_id)
        WHERE n.status <> o.status AND n.status IN ('COMPLETED', 'FAILED', 'INTERRUPTED')
          AND (n.stream_mode IS NOT NULL OR n.thread_id IS NOT NULL)
          AND EXISTS (SELECT 1 FROM lg_deploy.executions x WHERE x.execution_id = n.execution_id)
    ), rows_ AS (
        -- compact JSON as the workers write it: {"error":TYPE,"message":TEXT}
        SELECT execution_id, thread_id, attempts, 1 AS place, 'error' AS event,
               concat('{"error":',
                      to_json(COALESCE(substring(error FROM '^([A-Za-z_][A-Za-z0-9_.]*): '),
                                       'Error'))::text,
                      ',"message":',
                      to_json(COALESCE(substring(error FROM '^[A-Za-z_][A-Za-z0-9_.]*: (.*)$'),
                                       error, 'failed'))::text,
                      '}') AS data
        FROM ended
        WHERE status = 'FAILED' AND stream_mode IS NOT NULL AND error IS DISTINCT FROM 'cancelled'
        UNION ALL
        SELECT execution_id, thread_id, attempts, 2, 'run_done',
               concat('{"status":"run_done","run_id":"', execution_id, '"}')
        FROM ended WHERE thread_id IS NOT NULL
    ), inserted AS (
        INSERT INTO lg_deploy.run_events (execution_id, thread_id, attempt, event, data)
        SELECT execution_id, thread_id, attempts, event, data FROM rows_
        ORDER BY execution_id, place
        RETURNING execution_id, thread_id
    )
    SELECT string_agg(DISTINCT k, ',') INTO woken
    FROM inserted, LATERAL (VALUES (execution_id::text), (thread_id::text)) AS keys (k)
    WHERE k IS NOT NULL;
    IF woken IS NOT NULL THEN
        PERFORM pg_notify('lg_deploy_events', CASE WHEN length(woken) < 7900 THEN woken ELSE '*' END);
    END IF;
    RETURN NULL;
END;
$$;
REVOKE EXECUTE ON FUNCTION lg_deploy.executions_streams() FROM PUBLIC;

CREATE TRIGGER executions_streams_after_update AFTER UPDATE ON lg_deploy.executions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lg_deploy.executions_streams();

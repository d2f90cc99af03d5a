-- 0006: which graphs each worker process serves (claims filter on them), graphs nobody serves,
-- and the traceback of a graph's exception beside its one-line error.

-- One row per live worker process, kept alive by its heartbeat and deleted at a clean stop. A
-- process that dies leaves its row until `expires_at` passes; views read only live rows.
CREATE TABLE lg_deploy.workers (
    worker_id     text        NOT NULL,
    hostname      text        NOT NULL,
    pid           integer     NOT NULL,
    graph_ids     text[]      NOT NULL,
    concurrency   integer     NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    CONSTRAINT workers_pkey PRIMARY KEY (worker_id)
);
COMMENT ON TABLE lg_deploy.workers IS
    'Worker processes and the graphs each serves; alive while expires_at is in the future.';

-- Every graph some worker has served, ever: a QUEUED row whose graph is not here was written
-- for a graph no deployment has run (a typo, or a producer ahead of its deployment).
CREATE TABLE lg_deploy.served_graphs (
    graph_id        text        NOT NULL,
    first_served_at timestamptz NOT NULL DEFAULT now(),
    last_served_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT served_graphs_pkey PRIMARY KEY (graph_id)
);
COMMENT ON TABLE lg_deploy.served_graphs IS
    'Every graph a worker has served; last_served_at is when a worker serving it last started.';

-- Claims filter on the graphs a worker serves: graph first, then the claim order, so a claim
-- walks only its own graphs' QUEUED rows however many rows other deployments have waiting.
DROP INDEX lg_deploy.executions_claim_idx;
CREATE INDEX executions_claim_idx ON lg_deploy.executions
    (graph_id, priority DESC, run_at, execution_id)
    WHERE status = 'QUEUED';

ALTER TABLE lg_deploy.executions
    ADD COLUMN traceback text,
    ADD CONSTRAINT executions_traceback_length
        CHECK (traceback IS NULL OR length(traceback) <= 65536);
COMMENT ON COLUMN lg_deploy.executions.traceback IS
    'The full traceback of the exception behind `error` (bounded), when a graph raised.';
ALTER TABLE lg_deploy.execution_events ADD COLUMN traceback text;
COMMENT ON COLUMN lg_deploy.execution_events.traceback IS
    'The traceback of the attempt that failed or was retried here, when its graph raised.';

-- 0002's history trigger, plus the traceback of each failed or retried attempt.
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
-- CREATE OR REPLACE reset these (see 0005).
ALTER FUNCTION lg_deploy.executions_after_update()
    SECURITY DEFINER SET search_path = pg_catalog, lg_deploy, pg_temp;
REVOKE EXECUTE ON FUNCTION lg_deploy.executions_after_update() FROM PUBLIC;

-- The graphs that have QUEUED rows, one index probe each (a skip scan of executions_claim_idx):
-- the views and sweeps below read only the graphs they are about, never every QUEUED row.
CREATE VIEW lg_deploy.queued_graphs AS
WITH RECURSIVE found(graph_id) AS (
    SELECT min(graph_id) FROM lg_deploy.executions WHERE status = 'QUEUED'
    UNION ALL
    SELECT (SELECT min(e.graph_id) FROM lg_deploy.executions e
            WHERE e.status = 'QUEUED' AND e.graph_id > found.graph_id)
    FROM found
    WHERE found.graph_id IS NOT NULL
)
SELECT graph_id FROM found WHERE graph_id IS NOT NULL;
COMMENT ON VIEW lg_deploy.queued_graphs IS 'Every graph with QUEUED executions.';

-- Graphs with QUEUED rows that no live worker serves, and how long the oldest due one waited.
CREATE VIEW lg_deploy.unserved_graphs AS
SELECT g.graph_id,
       c.queued,
       c.due,
       c.oldest_due_at,
       COALESCE(now() - c.oldest_due_at, interval '0') AS longest_wait,
       s.last_served_at
FROM lg_deploy.queued_graphs g
CROSS JOIN LATERAL (
    SELECT count(*) AS queued,
           count(*) FILTER (WHERE e.run_at <= now()) AS due,
           min(e.run_at) FILTER (WHERE e.run_at <= now()) AS oldest_due_at
    FROM lg_deploy.executions e
    WHERE e.status = 'QUEUED' AND e.graph_id = g.graph_id
) AS c
LEFT JOIN lg_deploy.served_graphs s ON s.graph_id = g.graph_id
WHERE NOT EXISTS (
    SELECT 1 FROM lg_deploy.workers w
    WHERE w.expires_at > now() AND g.graph_id = ANY (w.graph_ids)
);
COMMENT ON VIEW lg_deploy.unserved_graphs IS
    'Graphs with QUEUED executions that no live worker serves (last_served_at NULL: never served).';

CREATE VIEW lg_deploy.live_workers AS
SELECT worker_id, hostname, pid, graph_ids, concurrency, started_at, heartbeat_at, expires_at,
       (SELECT count(*) FROM lg_deploy.executions e
        WHERE e.status = 'RUNNING' AND e.worker_id = w.worker_id) AS running
FROM lg_deploy.workers w
WHERE w.expires_at > now();
COMMENT ON VIEW lg_deploy.live_workers IS 'Worker processes alive now, their graphs and how many executions each runs.';

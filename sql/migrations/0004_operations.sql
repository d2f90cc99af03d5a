-- 0004: storage settings for the hot table, and views for operators in psql.

-- Every execution is updated two to four times (claim, renewals, outcome). Leaving 20 % of each
-- page free lets most of those updates stay on the page (HOT updates: no index writes), and
-- vacuuming after 2 % of rows changed (not the default 20 %) keeps the QUEUED part of the
-- claim index small however large the table grows.
ALTER TABLE lg_deploy.executions SET (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.05
);
ALTER TABLE lg_deploy.execution_events SET (
    autovacuum_vacuum_insert_scale_factor = 0.05
);

-- Finished rows by age, for retention (lg-deploy prune).
CREATE INDEX executions_finished_idx ON lg_deploy.executions (finished_at)
    WHERE status IN ('COMPLETED', 'FAILED');

CREATE VIEW lg_deploy.queue_depth AS
SELECT graph_id,
       status,
       count(*) AS executions,
       min(created_at) AS oldest_created_at,
       max(now() - created_at) AS oldest_age
FROM lg_deploy.executions
WHERE status IN ('QUEUED', 'RUNNING')
GROUP BY graph_id, status;
COMMENT ON VIEW lg_deploy.queue_depth IS 'Waiting and running executions per graph, with the oldest.';

CREATE VIEW lg_deploy.recent_failures AS
SELECT execution_id, graph_id, attempts, max_attempts, finished_at, error, worker_id, request_id
FROM lg_deploy.executions
WHERE status = 'FAILED' AND finished_at > now() - interval '24 hours'
ORDER BY finished_at DESC;
COMMENT ON VIEW lg_deploy.recent_failures IS 'Executions that failed in the last 24 hours, newest first.';

CREATE VIEW lg_deploy.slowest_executions AS
SELECT execution_id, graph_id, status, attempts,
       finished_at - started_at AS run_time,
       started_at - created_at AS wait_time,
       finished_at
FROM lg_deploy.executions
WHERE status IN ('COMPLETED', 'FAILED') AND finished_at > now() - interval '24 hours'
ORDER BY finished_at - started_at DESC
LIMIT 100;
COMMENT ON VIEW lg_deploy.slowest_executions IS 'The 100 longest runs that finished in the last 24 hours.';

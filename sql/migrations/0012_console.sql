-- 0012: the operator console (/ui). Its overview plots the executions that finished in the
-- last hour from lg_deploy.execution_events; this partial index keeps that read to the last
-- hour's final events however long the history grows.

CREATE INDEX execution_events_finished_at_idx ON lg_deploy.execution_events (at)
    WHERE to_status IN ('COMPLETED', 'FAILED');

-- 0003: free-form metadata per execution (the LangGraph API's run metadata).

ALTER TABLE lg_deploy.executions
    ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}',
    ADD CONSTRAINT executions_metadata_is_object CHECK (jsonb_typeof(metadata) = 'object');

COMMENT ON COLUMN lg_deploy.executions.metadata IS 'Caller-supplied labels; never read by lg-deploy.';

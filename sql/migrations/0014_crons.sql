-- 0014: crons, as the LangGraph API names scheduled runs. A cron is a row: a schedule (5 fields,
-- or 6 with seconds first) in a time zone, and the run each tick creates (graph, input, config,
-- ...; on a thread, or thread-less). Whichever lg-deploy process ticks it (every process with a
-- database does, each second), a tick creates exactly one execution fleet-wide: the cron's row
-- is locked while its tick is taken and its next_run_at moved on in the same transaction, and
-- the unique index on (cron_id, cron_tick) refuses a second execution for the same tick
-- whatever happens. Ticks missed while no process ran are run once, at the next start: the
-- oldest missed tick runs, then next_run_at jumps to the first tick after now.

CREATE TABLE lg_deploy.crons (
    cron_id            uuid        NOT NULL DEFAULT gen_random_uuid(),
    graph_id           text        NOT NULL,
    assistant_id       uuid,
    thread_id          uuid,
    schedule           text        NOT NULL,
    timezone           text        NOT NULL DEFAULT 'UTC',
    input              jsonb       NOT NULL DEFAULT '{}',
    config             jsonb       NOT NULL DEFAULT '{}',
    context            jsonb       NOT NULL DEFAULT '{}',
    metadata           jsonb       NOT NULL DEFAULT '{}',
    interrupt_before   text[],
    interrupt_after    text[],
    multitask_strategy text,
    stream_mode        text[],
    stream_subgraphs   boolean     NOT NULL DEFAULT false,
    webhook            text,
    on_run_completed   text        NOT NULL DEFAULT 'delete',
    payload            jsonb       NOT NULL DEFAULT '{}',
    user_id            text,
    enabled            boolean     NOT NULL DEFAULT true,
    end_time           timestamptz,
    next_run_at        timestamptz,
    last_tick_at       timestamptz,
    error              text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT crons_pkey PRIMARY KEY (cron_id),
    CONSTRAINT crons_thread_fkey FOREIGN KEY (thread_id)
        REFERENCES lg_deploy.threads (thread_id) ON DELETE CASCADE,
    CONSTRAINT crons_graph_id_length CHECK (length(graph_id) BETWEEN 1 AND 200),
    CONSTRAINT crons_schedule_fields CHECK (
        schedule ~ '^\s*\S+(\s+\S+){4,5}\s*$' AND length(schedule) <= 200),
    CONSTRAINT crons_input_is_object CHECK (jsonb_typeof(input) = 'object'),
    CONSTRAINT crons_config_is_object CHECK (jsonb_typeof(config) = 'object'),
    CONSTRAINT crons_context_is_object CHECK (jsonb_typeof(context) = 'object'),
    CONSTRAINT crons_metadata_is_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT crons_payload_is_object CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT crons_multitask_strategy_known CHECK (
        multitask_strategy IS NULL
        OR multitask_strategy IN ('reject', 'enqueue', 'interrupt', 'rollback')),
    CONSTRAINT crons_stream_mode_known CHECK (
        stream_mode IS NULL OR stream_mode <@ ARRAY['values', 'updates', 'messages',
            'messages-tuple', 'custom', 'debug', 'tasks', 'checkpoints', 'events']::text[]),
    CONSTRAINT crons_on_run_completed_known CHECK (on_run_completed IN ('delete', 'keep')),
    CONSTRAINT crons_webhook_is_url CHECK (webhook IS NULL OR (
        length(webhook) <= 2048
        AND webhook ~* '^https?://[^/?#@[:space:][:cntrl:]]+([/?#][^[:space:][:cntrl:]]*)?$'))
);
COMMENT ON TABLE lg_deploy.crons IS
    'Scheduled runs: each tick of schedule (in timezone) creates one execution of graph_id.';
COMMENT ON COLUMN lg_deploy.crons.schedule IS
    'A cron expression: 5 fields (minute hour day month weekday), or 6 with seconds first.';
COMMENT ON COLUMN lg_deploy.crons.timezone IS 'The IANA time zone the schedule is read in.';
COMMENT ON COLUMN lg_deploy.crons.thread_id IS
    'The thread each tick''s run continues; NULL: thread-less runs.';
COMMENT ON COLUMN lg_deploy.crons.next_run_at IS
    'The next tick; NULL on a row inserted by SQL until a process computes it (within a second).';
COMMENT ON COLUMN lg_deploy.crons.last_tick_at IS 'The last tick that created an execution.';
COMMENT ON COLUMN lg_deploy.crons.error IS
    'Why the cron was disabled by lg-deploy (a schedule it cannot read), else NULL.';
COMMENT ON COLUMN lg_deploy.crons.webhook IS
    'Each tick''s run is POSTed here once final (executions.webhook); NULL: the default.';
COMMENT ON COLUMN lg_deploy.crons.payload IS 'The LangGraph API body it was created with.';
COMMENT ON COLUMN lg_deploy.crons.end_time IS 'No tick after this moment; NULL: none.';
CREATE INDEX crons_due_idx ON lg_deploy.crons (next_run_at) WHERE enabled;
CREATE INDEX crons_created_idx ON lg_deploy.crons (created_at DESC, cron_id);

-- A time zone PostgreSQL does not know is refused at insert and update, by name.
CREATE FUNCTION lg_deploy.crons_check_timezone() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, lg_deploy, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names WHERE name = NEW.timezone) THEN
        RAISE EXCEPTION 'crons_timezone_known: cron time zone % is not an IANA time zone name',
            NEW.timezone
            USING ERRCODE = 'check_violation', CONSTRAINT = 'crons_timezone_known';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
REVOKE EXECUTE ON FUNCTION lg_deploy.crons_check_timezone() FROM PUBLIC;
CREATE TRIGGER crons_check_timezone BEFORE INSERT OR UPDATE ON lg_deploy.crons
    FOR EACH ROW EXECUTE FUNCTION lg_deploy.crons_check_timezone();

-- No foreign key: deleting a cron leaves its executions as they are (a final row never changes),
-- as executions.assistant_id does for assistants.
ALTER TABLE lg_deploy.executions
    ADD COLUMN cron_id uuid,
    ADD COLUMN cron_tick timestamptz;
COMMENT ON COLUMN lg_deploy.executions.cron_id IS
    'The cron whose tick created it (the cron may since be deleted); NULL: not a cron''s.';
COMMENT ON COLUMN lg_deploy.executions.cron_tick IS 'The tick of its cron that created it.';
CREATE UNIQUE INDEX executions_cron_tick_idx ON lg_deploy.executions (cron_id, cron_tick)
    WHERE cron_id IS NOT NULL;

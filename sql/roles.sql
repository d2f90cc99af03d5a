-- lg-deploy's database roles: one per door, each with what it needs and no more
-- (docs/security.md, "The database doors").
--
-- Apply after the migrations, in one transaction, as the owner of schema lg_deploy or a
-- superuser: `lg-deploy roles`, or `psql -v ON_ERROR_STOP=1 -1 -f sql/roles.sql`.
-- Safe to run again: missing roles are created, and each role's privileges in this database are
-- revoked and granted again, so they end up exactly as written here. Run it again after every
-- upgrade (a new column needs its grant) and after LangGraph's checkpoint tables are created.
--
-- Roles are cluster-wide; privileges belong to one database: run it in each database that
-- holds an lg_deploy schema. Creating the roles and their settings needs CREATEROLE; once they
-- exist (an administrator may create them), the schema owner alone can run this script.
--
-- The roles are NOLOGIN groups and no password is set here. Grant them to login roles:
--     CREATE ROLE billing LOGIN PASSWORD '...' IN ROLE lg_deploy_producer;
--     GRANT lg_deploy_reader TO alice;

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['lg_deploy_producer', 'lg_deploy_reader', 'lg_deploy_service']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- a concurrent run created it first
            END;
        END IF;
    END LOOP;
END
$$;

-- Start from nothing in this database (column privileges go with the table's).
REVOKE ALL ON SCHEMA lg_deploy FROM lg_deploy_producer, lg_deploy_reader, lg_deploy_service;
REVOKE ALL ON ALL TABLES IN SCHEMA lg_deploy
    FROM lg_deploy_producer, lg_deploy_reader, lg_deploy_service;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA lg_deploy
    FROM lg_deploy_producer, lg_deploy_reader, lg_deploy_service;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA lg_deploy
    FROM lg_deploy_producer, lg_deploy_reader, lg_deploy_service;

-- Producer: other systems submit executions with a plain INSERT ... RETURNING execution_id, or
-- SELECT lg_deploy.submit(...). Only the columns a submission may set; the insert trigger and the
-- CHECK constraints judge the values. It reads no execution and no history (execution_id only,
-- for RETURNING), and cannot UPDATE or DELETE.
GRANT USAGE ON SCHEMA lg_deploy TO lg_deploy_producer;
GRANT INSERT (graph_id, input, priority, max_attempts, run_at, idempotency_key, timeout_seconds,
              metadata, request_id, thread_id, config, context, command, interrupt_before,
              interrupt_after, multitask_strategy, webhook)
    ON lg_deploy.executions TO lg_deploy_producer;
GRANT SELECT (execution_id) ON lg_deploy.executions TO lg_deploy_producer;
GRANT EXECUTE ON FUNCTION lg_deploy.submit(
    text, jsonb, integer, integer, timestamptz, text, double precision, jsonb, text
) TO lg_deploy_producer;
-- It may schedule work too: a cron row (lg-deploy computes its next tick and runs its ticks).
GRANT INSERT (graph_id, schedule, timezone, input, config, context, metadata, thread_id,
              interrupt_before, interrupt_after, stream_mode, enabled, end_time)
    ON lg_deploy.crons TO lg_deploy_producer;
GRANT SELECT (cron_id) ON lg_deploy.crons TO lg_deploy_producer;

-- Reader: people in psql. Reads everything lg-deploy keeps, changes nothing.
GRANT USAGE ON SCHEMA lg_deploy TO lg_deploy_reader;
GRANT SELECT ON lg_deploy.executions, lg_deploy.execution_events,
                lg_deploy.execution_transitions, lg_deploy.schema_migrations,
                lg_deploy.queue_depth, lg_deploy.recent_failures, lg_deploy.slowest_executions,
                lg_deploy.workers, lg_deploy.served_graphs, lg_deploy.queued_graphs,
                lg_deploy.unserved_graphs, lg_deploy.live_workers, lg_deploy.threads,
                lg_deploy.assistants, lg_deploy.assistant_versions, lg_deploy.run_events,
                lg_deploy.webhook_deliveries, lg_deploy.webhook_attempts,
                lg_deploy.webhook_defaults, lg_deploy.crons
    TO lg_deploy_reader;

-- Role settings apply to sessions that log in as this very role; members do NOT inherit them.
-- Give login roles that are members the same settings (docs/security.md). Written only when
-- they differ, so a second run changes nothing cluster-wide.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_db_role_setting
        WHERE setrole = 'lg_deploy_reader'::regrole AND setdatabase = 0
          AND setconfig @> ARRAY['statement_timeout=30s', 'idle_in_transaction_session_timeout=60s']
    ) THEN
        ALTER ROLE lg_deploy_reader SET statement_timeout = '30s';
        ALTER ROLE lg_deploy_reader SET idle_in_transaction_session_timeout = '60s';
    END IF;
END
$$;

-- Service: lg-deploy's own processes (serve, worker, prune) started with
-- LG_DEPLOY_MIGRATE_ON_START=false; migrations run as the schema owner. It inserts the columns
-- a submission sets and updates the columns of the lifecycle (the guard trigger keeps the
-- clocks); it deletes finished executions (their events go by the foreign key's cascade, which
-- runs as the table owner). History is written by the triggers: the service only reads it.
-- No CREATE on the schema, no DDL, no TRUNCATE.
GRANT USAGE ON SCHEMA lg_deploy TO lg_deploy_service;
GRANT SELECT, DELETE ON lg_deploy.executions TO lg_deploy_service;
GRANT INSERT (execution_id, graph_id, input, max_attempts, priority, run_at, request_id,
              idempotency_key, timeout_seconds, metadata, thread_id, config, context, command,
              interrupt_before, interrupt_after, multitask_strategy, assistant_id, stream_mode,
              stream_subgraphs, stream_resumable, webhook, cron_id, cron_tick)
    ON lg_deploy.executions TO lg_deploy_service;
GRANT UPDATE (status, output, error, traceback, attempts, max_attempts, priority, run_at,
              worker_id, lease_expires_at, cancel_requested_at, cancel_action, interrupts)
    ON lg_deploy.executions TO lg_deploy_service;
GRANT SELECT ON lg_deploy.execution_events, lg_deploy.execution_transitions,
                lg_deploy.schema_migrations, lg_deploy.queued_graphs, lg_deploy.unserved_graphs,
                lg_deploy.live_workers
    TO lg_deploy_service;
-- Each process registers itself and the graphs it serves, and removes its row when it stops.
GRANT SELECT, INSERT, UPDATE, DELETE ON lg_deploy.workers TO lg_deploy_service;
GRANT SELECT, INSERT, UPDATE ON lg_deploy.served_graphs TO lg_deploy_service;
-- Threads are created, relabelled and deleted through the LangGraph API; a run on a thread
-- locks its row while it joins (the trigger that makes threads follow their runs runs as owner).
GRANT SELECT, INSERT, UPDATE, DELETE ON lg_deploy.threads TO lg_deploy_service;
-- Assistants are created, changed (a new version, or an older one made current) and deleted
-- through the LangGraph API; versions are only added and read (they go with their assistant by
-- the foreign key's cascade, which runs as the table owner).
GRANT SELECT, INSERT, UPDATE, DELETE ON lg_deploy.assistants TO lg_deploy_service;
GRANT SELECT, INSERT ON lg_deploy.assistant_versions TO lg_deploy_service;
-- Crons are created, changed and deleted through the LangGraph API; every process ticks them
-- (a tick locks the cron's row, inserts its execution and moves next_run_at on).
GRANT SELECT, INSERT, UPDATE, DELETE ON lg_deploy.crons TO lg_deploy_service;
-- Workers append what their runs stream; API processes read it back; pruning deletes it.
GRANT SELECT, DELETE ON lg_deploy.run_events TO lg_deploy_service;
GRANT INSERT (execution_id, thread_id, attempt, event, data) ON lg_deploy.run_events
    TO lg_deploy_service;
-- Webhooks: deliveries are written by the outbox trigger (as owner) and go with their
-- execution; senders claim and settle them and log each try; processes set the default URL.
GRANT SELECT, UPDATE ON lg_deploy.webhook_deliveries TO lg_deploy_service;
GRANT SELECT, INSERT ON lg_deploy.webhook_attempts TO lg_deploy_service;
GRANT SELECT, UPDATE ON lg_deploy.webhook_defaults TO lg_deploy_service;

-- LangGraph's checkpoint tables (runs on a thread, LG_DEPLOY_CHECKPOINTS=true) and store tables
-- (the /store routes, get_store() in graphs), once the owner has created them (its first start
-- does).
DO $$
DECLARE
    table_name text;
BEGIN
    FOREACH table_name IN ARRAY ARRAY['checkpoints', 'checkpoint_blobs', 'checkpoint_writes',
                                      'checkpoint_migrations', 'store', 'store_migrations']
    LOOP
        IF to_regclass(format('lg_deploy.%I', table_name)) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON lg_deploy.%I TO lg_deploy_service',
                           table_name);
        END IF;
    END LOOP;
END
$$;

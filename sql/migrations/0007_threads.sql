-- 0007: threads, as the LangGraph API names a conversation: an id, labels and a status. Runs on a
-- thread, its state and its checkpoints come in later migrations; this one stores the threads.

CREATE TABLE lg_deploy.threads (
    thread_id        uuid        NOT NULL DEFAULT gen_random_uuid(),
    status           text        NOT NULL DEFAULT 'idle',
    metadata         jsonb       NOT NULL DEFAULT '{}',
    config           jsonb       NOT NULL DEFAULT '{}',
    "values"         jsonb,
    interrupts       jsonb       NOT NULL DEFAULT '{}',
    error            jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    state_updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT threads_pkey PRIMARY KEY (thread_id),
    CONSTRAINT threads_status_known
        CHECK (status IN ('idle', 'busy', 'interrupted', 'error')),
    CONSTRAINT threads_metadata_is_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT threads_config_is_object CHECK (jsonb_typeof(config) = 'object'),
    CONSTRAINT threads_interrupts_is_object CHECK (jsonb_typeof(interrupts) = 'object')
);
COMMENT ON TABLE lg_deploy.threads IS
    'LangGraph threads: a conversation''s id, metadata and status (idle, busy, interrupted, error).';

-- Thread search filters by metadata containment (`metadata @> $filter`) and sorts by a clock.
CREATE INDEX threads_metadata_idx ON lg_deploy.threads USING gin (metadata jsonb_path_ops);
CREATE INDEX threads_created_idx ON lg_deploy.threads (created_at DESC, thread_id);

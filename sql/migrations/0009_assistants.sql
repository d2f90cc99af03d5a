-- 0009: assistants, as the LangGraph API names a graph with its own config, context and labels.
-- Each change of an assistant is a new row of assistant_versions; the assistants row holds the
-- current one. The graphs' default ("system") assistants are not stored: lg-deploy makes one per
-- served graph. A run records the assistant it used in executions.assistant_id (NULL: its
-- graph's system assistant); that column has no foreign key, so deleting an assistant leaves
-- its runs, queued ones included, as they were (their config and context were copied at
-- creation).

CREATE TABLE lg_deploy.assistants (
    assistant_id uuid        NOT NULL DEFAULT gen_random_uuid(),
    graph_id     text        NOT NULL,
    name         text        NOT NULL,
    description  text,
    config       jsonb       NOT NULL DEFAULT '{}',
    context      jsonb       NOT NULL DEFAULT '{}',
    metadata     jsonb       NOT NULL DEFAULT '{}',
    version      integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT assistants_pkey PRIMARY KEY (assistant_id),
    CONSTRAINT assistants_graph_id_length CHECK (length(graph_id) BETWEEN 1 AND 200),
    CONSTRAINT assistants_config_is_object CHECK (jsonb_typeof(config) = 'object'),
    CONSTRAINT assistants_context_is_object CHECK (jsonb_typeof(context) = 'object'),
    CONSTRAINT assistants_metadata_is_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT assistants_version_positive CHECK (version >= 1)
);
COMMENT ON TABLE lg_deploy.assistants IS
    'LangGraph assistants: a graph with its own config, context and labels, at its current version.';
COMMENT ON COLUMN lg_deploy.assistants.assistant_id IS 'The id runs name as assistant_id.';
COMMENT ON COLUMN lg_deploy.assistants.graph_id IS 'The graph its runs run.';
COMMENT ON COLUMN lg_deploy.assistants.name IS 'A name for people ("Untitled" when none is given).';
COMMENT ON COLUMN lg_deploy.assistants.description IS 'A description for people, if any.';
COMMENT ON COLUMN lg_deploy.assistants.config IS
    'LangGraph config its runs start from (a run''s own keys win; configurable merged key by key).';
COMMENT ON COLUMN lg_deploy.assistants.context IS
    'LangGraph runtime context its runs start from (a run''s own keys win).';
COMMENT ON COLUMN lg_deploy.assistants.metadata IS 'Labels, searched by containment.';
COMMENT ON COLUMN lg_deploy.assistants.version IS
    'The current version: a row of assistant_versions (the latest, unless set back).';
COMMENT ON COLUMN lg_deploy.assistants.created_at IS 'When it was created.';
COMMENT ON COLUMN lg_deploy.assistants.updated_at IS 'When it last changed (a new or restored version).';

CREATE TABLE lg_deploy.assistant_versions (
    assistant_id uuid        NOT NULL,
    version      integer     NOT NULL,
    graph_id     text        NOT NULL,
    name         text        NOT NULL,
    description  text,
    config       jsonb       NOT NULL DEFAULT '{}',
    context      jsonb       NOT NULL DEFAULT '{}',
    metadata     jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT assistant_versions_pkey PRIMARY KEY (assistant_id, version),
    CONSTRAINT assistant_versions_assistant_fkey FOREIGN KEY (assistant_id)
        REFERENCES lg_deploy.assistants (assistant_id) ON DELETE CASCADE,
    CONSTRAINT assistant_versions_graph_id_length CHECK (length(graph_id) BETWEEN 1 AND 200),
    CONSTRAINT assistant_versions_config_is_object CHECK (jsonb_typeof(config) = 'object'),
    CONSTRAINT assistant_versions_context_is_object CHECK (jsonb_typeof(context) = 'object'),
    CONSTRAINT assistant_versions_metadata_is_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT assistant_versions_version_positive CHECK (version >= 1)
);
COMMENT ON TABLE lg_deploy.assistant_versions IS
    'Every version of every assistant, as it was made; deleted with its assistant.';
COMMENT ON COLUMN lg_deploy.assistant_versions.assistant_id IS 'The assistant (lg_deploy.assistants).';
COMMENT ON COLUMN lg_deploy.assistant_versions.version IS
    '1 at creation, then one more than the highest for each update.';
COMMENT ON COLUMN lg_deploy.assistant_versions.graph_id IS 'The graph of this version.';
COMMENT ON COLUMN lg_deploy.assistant_versions.name IS 'The name of this version.';
COMMENT ON COLUMN lg_deploy.assistant_versions.description IS 'The description of this version.';
COMMENT ON COLUMN lg_deploy.assistant_versions.config IS 'The LangGraph config of this version.';
COMMENT ON COLUMN lg_deploy.assistant_versions.context IS 'The runtime context of this version.';
COMMENT ON COLUMN lg_deploy.assistant_versions.metadata IS
    'The metadata of this version (an update merges into the one before).';
COMMENT ON COLUMN lg_deploy.assistant_versions.created_at IS 'When this version was made.';

-- Assistant search filters by metadata containment and sorts by a clock.
CREATE INDEX assistants_metadata_idx ON lg_deploy.assistants USING gin (metadata jsonb_path_ops);
CREATE INDEX assistants_created_idx ON lg_deploy.assistants (created_at DESC, assistant_id);

ALTER TABLE lg_deploy.executions ADD COLUMN assistant_id uuid;
COMMENT ON COLUMN lg_deploy.executions.assistant_id IS
    'The stored assistant the run was created with (lg_deploy.assistants, no foreign key: it may '
    'be deleted since); NULL: its graph''s default (system) assistant.';

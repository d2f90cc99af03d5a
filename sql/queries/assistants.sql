-- name: insert_assistant
-- Insert one assistant and its version 1 and return it; no row back when its id is taken.
WITH made AS (
    INSERT INTO lg_deploy.assistants
        (assistant_id, graph_id, name, description, config, context, metadata)
    VALUES (COALESCE(%(assistant_id)s::uuid, gen_random_uuid()), %(graph_id)s, %(name)s,
            %(description)s, %(config)s, %(context)s, %(metadata)s)
    ON CONFLICT (assistant_id) DO NOTHING
    RETURNING *
), first_version AS (
    INSERT INTO lg_deploy.assistant_versions
        (assistant_id, version, graph_id, name, description, config, context, metadata,
         created_at)
    SELECT assistant_id, version, graph_id, name, description, config, context, metadata,
           created_at
    FROM made
)
SELECT * FROM made;

-- name: get_assistant
-- One assistant by id.
SELECT * FROM lg_deploy.assistants WHERE assistant_id = %(assistant_id)s;

-- name: lock_assistant
-- One assistant by id, locked for the transaction that adds a version to it.
SELECT * FROM lg_deploy.assistants WHERE assistant_id = %(assistant_id)s FOR UPDATE;

-- name: insert_assistant_version
-- The next version of a locked assistant (one past the highest): the given fields replace the
-- current ones (NULL: kept), metadata is merged into the current one; the version back.
INSERT INTO lg_deploy.assistant_versions
    (assistant_id, version, graph_id, name, description, config, context, metadata)
SELECT a.assistant_id,
       (SELECT max(v.version) + 1 FROM lg_deploy.assistant_versions v
        WHERE v.assistant_id = a.assistant_id),
       COALESCE(%(graph_id)s, a.graph_id),
       COALESCE(%(name)s, a.name),
       COALESCE(%(description)s, a.description),
       COALESCE(%(config)s, a.config),
       COALESCE(%(context)s, a.context),
       a.metadata || %(metadata)s
FROM lg_deploy.assistants a
WHERE a.assistant_id = %(assistant_id)s
RETURNING *;

-- name: set_assistant_version
-- Make one of an assistant's versions its current one; no row back when either is absent.
UPDATE lg_deploy.assistants a
SET graph_id = v.graph_id,
    name = v.name,
    description = v.description,
    config = v.config,
    context = v.context,
    metadata = v.metadata,
    version = v.version,
    updated_at = now()
FROM lg_deploy.assistant_versions v
WHERE a.assistant_id = %(assistant_id)s
  AND v.assistant_id = a.assistant_id
  AND v.version = %(version)s
RETURNING a.*;

-- name: delete_assistant
-- Delete an assistant (its versions go by the foreign key); its id back when it existed.
DELETE FROM lg_deploy.assistants WHERE assistant_id = %(assistant_id)s RETURNING assistant_id;

-- name: search_assistants
-- Assistants of one graph if given, whose name holds the given part (any case) and whose
-- metadata contains the filter, in the requested order (text by code point, the id breaks ties),
-- one page.
SELECT *
FROM lg_deploy.assistants
WHERE metadata @> %(metadata)s
  AND (%(graph_id)s::text IS NULL OR graph_id = %(graph_id)s::text)
  AND (%(name)s::text IS NULL OR strpos(lower(name), lower(%(name)s::text)) > 0)
ORDER BY
    CASE WHEN NOT %(descending)s THEN
        CASE %(sort_by)s WHEN 'created_at' THEN created_at WHEN 'updated_at' THEN updated_at END
    END ASC,
    CASE WHEN %(descending)s THEN
        CASE %(sort_by)s WHEN 'created_at' THEN created_at WHEN 'updated_at' THEN updated_at END
    END DESC,
    CASE WHEN NOT %(descending)s THEN
        CASE %(sort_by)s WHEN 'assistant_id' THEN assistant_id::text WHEN 'graph_id' THEN graph_id
                         WHEN 'name' THEN name END
    END COLLATE "C" ASC,
    CASE WHEN %(descending)s THEN
        CASE %(sort_by)s WHEN 'assistant_id' THEN assistant_id::text WHEN 'graph_id' THEN graph_id
                         WHEN 'name' THEN name END
    END COLLATE "C" DESC,
    assistant_id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: count_assistants
-- How many assistants search_assistants would find without its page.
SELECT count(*) AS count
FROM lg_deploy.assistants
WHERE metadata @> %(metadata)s
  AND (%(graph_id)s::text IS NULL OR graph_id = %(graph_id)s::text)
  AND (%(name)s::text IS NULL OR strpos(lower(name), lower(%(name)s::text)) > 0);

-- name: assistant_versions
-- One page of an assistant's versions whose metadata contains the filter, newest first.
SELECT *
FROM lg_deploy.assistant_versions
WHERE assistant_id = %(assistant_id)s AND metadata @> %(metadata)s
ORDER BY version DESC
LIMIT %(limit)s OFFSET %(offset)s;

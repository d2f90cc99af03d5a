-- name: store_tables_exist
-- Whether LangGraph's store (the /store routes, get_store() in graphs) has created its tables.
SELECT to_regclass('lg_deploy.store_migrations') IS NOT NULL;

-- name: store_version
-- The latest migration of LangGraph's store tables applied here.
SELECT max(v) FROM lg_deploy.store_migrations;

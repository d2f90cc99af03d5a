-- name: search_path_head
-- The first schema of this connection's search path, unquoted (LangGraph's saver needs lg_deploy).
SELECT trim(both ' "' FROM split_part(current_setting('search_path'), ',', 1));

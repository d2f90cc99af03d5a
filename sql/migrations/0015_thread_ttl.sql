-- 0015: threads expire (LG_DEPLOY_THREAD_TTL_SECONDS): the retention loop deletes threads not
-- changed for that long and with no run in flight, oldest first; this index finds them.

CREATE INDEX threads_updated_idx ON lg_deploy.threads (updated_at);

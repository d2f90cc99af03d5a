-- name: set_webhook_default
-- Set (or clear, NULL) the deployment's default webhook; returns it.
UPDATE lg_deploy.webhook_defaults
SET url = %(url)s, updated_at = now(), updated_by = %(worker_id)s
RETURNING url;

-- name: get_webhook_default
-- The deployment's default webhook (NULL: none).
SELECT url FROM lg_deploy.webhook_defaults;

-- name: recover_webhook_leases
-- Pending deliveries whose sender's lease passed (it died or hung mid-try): the lost try is
-- recorded as such, and the delivery is due again at once, or failed when no attempts are left.
WITH expired AS (
    SELECT delivery_id, locked_by, updated_at AS claimed_at
    FROM lg_deploy.webhook_deliveries
    WHERE status = 'pending' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), released AS (
    UPDATE lg_deploy.webhook_deliveries d
    SET status = CASE WHEN d.attempts >= d.max_attempts THEN 'failed' ELSE 'pending' END,
        last_error = format('lease expired: sender %%s recorded no outcome of attempt %%s of %%s',
                            d.locked_by, d.attempts, d.max_attempts)
                     || CASE WHEN d.attempts >= d.max_attempts THEN '; no attempts left' ELSE '' END,
        last_status_code = NULL,
        next_attempt_at = now(),
        locked_by = NULL,
        lease_expires_at = NULL,
        updated_at = now()
    FROM expired
    WHERE d.delivery_id = expired.delivery_id
    RETURNING d.delivery_id, d.attempts, d.last_error
), logged AS (
    INSERT INTO lg_deploy.webhook_attempts
        (delivery_id, attempt, worker_id, started_at, error, duration_ms)
    SELECT r.delivery_id, r.attempts, e.locked_by, e.claimed_at, r.last_error,
           round(extract(epoch FROM now() - e.claimed_at) * 1000)
    FROM released r JOIN expired e USING (delivery_id)
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM released;

-- name: claim_webhook_deliveries
-- Claim up to `limit` due deliveries for this sender (one try each, counted now), skipping rows
-- other senders hold; a lowered LG_DEPLOY_WEBHOOK_MAX_ATTEMPTS still allows each one more try.
WITH due AS (
    SELECT delivery_id
    FROM lg_deploy.webhook_deliveries
    WHERE status = 'pending' AND locked_by IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE lg_deploy.webhook_deliveries d
SET attempts = d.attempts + 1,
    max_attempts = GREATEST(%(max_attempts)s, d.attempts + 1),
    locked_by = %(worker_id)s,
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
    updated_at = now()
FROM due
WHERE d.delivery_id = due.delivery_id
RETURNING d.delivery_id::text, d.execution_id::text, d.url, d.attempts, d.max_attempts;

-- name: record_webhook_attempt
-- The outcome of one try, only while this sender still holds that try (no row back: its lease
-- passed and the try was recorded as lost): delivered, failed (refused, or the last attempt),
-- or due again after the back-off; and the try's row in webhook_attempts.
WITH held AS (
    UPDATE lg_deploy.webhook_deliveries d
    SET status = CASE
            WHEN %(delivered)s::boolean THEN 'delivered'
            WHEN %(give_up)s::boolean OR d.attempts >= d.max_attempts THEN 'failed'
            ELSE 'pending'
        END,
        delivered_at = CASE WHEN %(delivered)s::boolean THEN now() END,
        last_status_code = %(status_code)s::integer,
        last_error = CASE
            WHEN %(delivered)s::boolean THEN NULL
            WHEN NOT %(give_up)s::boolean AND d.attempts >= d.max_attempts
                THEN format('%%s; no attempts left (%%s of %%s)', %(error)s::text, d.attempts,
                            d.max_attempts)
            ELSE %(error)s::text
        END,
        next_attempt_at = now() + make_interval(secs => %(retry_in_seconds)s::double precision),
        locked_by = NULL,
        lease_expires_at = NULL,
        updated_at = now()
    WHERE d.delivery_id = %(delivery_id)s::uuid AND d.status = 'pending'
      AND d.locked_by = %(worker_id)s::text AND d.attempts = %(attempt)s::integer
    RETURNING d.delivery_id, d.status
), logged AS (
    INSERT INTO lg_deploy.webhook_attempts
        (delivery_id, attempt, worker_id, started_at, status_code, error, duration_ms)
    SELECT delivery_id, %(attempt)s::integer, %(worker_id)s::text,
           now() - make_interval(secs => %(duration_ms)s::integer / 1000.0),
           %(status_code)s::integer, %(error)s::text, %(duration_ms)s::integer
    FROM held
    ON CONFLICT DO NOTHING
)
SELECT status FROM held;

-- name: list_webhook_deliveries
-- An execution's deliveries, each with its tries in order (attempt_log).
SELECT d.delivery_id::text, d.execution_id::text, d.url, d.status, d.attempts, d.max_attempts,
       d.next_attempt_at, d.locked_by, d.lease_expires_at, d.created_at, d.updated_at,
       d.delivered_at, d.last_status_code, d.last_error,
       COALESCE((SELECT jsonb_agg(jsonb_build_object(
                            'attempt', a.attempt, 'worker_id', a.worker_id,
                            'started_at', a.started_at, 'finished_at', a.finished_at,
                            'status_code', a.status_code, 'error', a.error,
                            'duration_ms', a.duration_ms) ORDER BY a.attempt)
                 FROM lg_deploy.webhook_attempts a WHERE a.delivery_id = d.delivery_id),
                '[]'::jsonb) AS attempt_log
FROM lg_deploy.webhook_deliveries d
WHERE d.execution_id = %(execution_id)s
ORDER BY d.created_at;

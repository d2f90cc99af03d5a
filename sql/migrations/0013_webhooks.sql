-- 0013: durable webhooks. When an execution becomes final (COMPLETED, FAILED, INTERRUPTED) and
-- it names a webhook, or the deployment has a default one, a row of lg_deploy.webhook_deliveries
-- is written in the same transaction, whoever ends it (its worker, lease recovery, a cancel,
-- psql): an outbox. Worker processes send it (signed, with a timeout), each try a row of
-- lg_deploy.webhook_attempts, retried with back-off until delivered or out of attempts. A
-- delivery is claimed with a lease, so one whose sender died is sent again by another: at least
-- once. docs/webhooks.md.

-- A webhook is an http(s) URL of at most 2048 characters with a host, no user:password@ part (it
-- would sit in psql-readable rows and logs), no spaces or control characters; lg-deploy's
-- allow-list judges the host when it sends. (Inlined in each CHECK: a function there would need
-- EXECUTE granted to every role that inserts.)
ALTER TABLE lg_deploy.executions
    ADD COLUMN webhook text,
    ADD CONSTRAINT executions_webhook_is_url CHECK (webhook IS NULL OR (
        length(webhook) <= 2048
        AND webhook ~* '^https?://[^/?#@[:space:][:cntrl:]]+([/?#][^[:space:][:cntrl:]]*)?$'));
COMMENT ON COLUMN lg_deploy.executions.webhook IS
    'POST the run here once it is final (lg_deploy.webhook_deliveries); NULL: the deployment default, if any.';

-- The deployment's default webhook, for executions that name none (SQL inserts included): one
-- row, written by `serve` and `worker` at start when LG_DEPLOY_WEBHOOK_URL is given (empty:
-- cleared), or by an operator.
CREATE TABLE lg_deploy.webhook_defaults (
    singleton  boolean     NOT NULL DEFAULT true PRIMARY KEY
        CONSTRAINT webhook_defaults_one_row CHECK (singleton),
    url        text
        CONSTRAINT webhook_defaults_url_is_url CHECK (url IS NULL OR (
            length(url) <= 2048
            AND url ~* '^https?://[^/?#@[:space:][:cntrl:]]+([/?#][^[:space:][:cntrl:]]*)?$')),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text
);
COMMENT ON TABLE lg_deploy.webhook_defaults IS
    'One row: the webhook of executions that name none, as of when each becomes final.';
INSERT INTO lg_deploy.webhook_defaults DEFAULT VALUES;

CREATE TABLE lg_deploy.webhook_deliveries (
    delivery_id      uuid        NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    execution_id     uuid        NOT NULL
        REFERENCES lg_deploy.executions (execution_id) ON DELETE CASCADE,
    url              text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
        CONSTRAINT webhook_deliveries_status_known
            CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL DEFAULT 10
        CONSTRAINT webhook_deliveries_max_attempts_in_range CHECK (max_attempts BETWEEN 1 AND 1000),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    locked_by        text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    last_status_code integer,
    last_error       text,
    CONSTRAINT webhook_deliveries_one_per_execution UNIQUE (execution_id),
    CONSTRAINT webhook_deliveries_attempts_in_range CHECK (attempts >= 0),
    CONSTRAINT webhook_deliveries_lease_while_pending CHECK (
        (locked_by IS NULL) = (lease_expires_at IS NULL)
        AND (lease_expires_at IS NULL OR status = 'pending')),
    CONSTRAINT webhook_deliveries_delivered_at CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);
COMMENT ON TABLE lg_deploy.webhook_deliveries IS
    'The webhook outbox: one row per final execution with a webhook; delivery_id is the receiver''s dedupe key.';
COMMENT ON COLUMN lg_deploy.webhook_deliveries.status IS
    'pending (to send, or being sent: locked_by), delivered (a 2xx answer), failed (refused URL, or no attempts left).';
COMMENT ON COLUMN lg_deploy.webhook_deliveries.attempts IS
    'Tries started (counted at claim); each one with an outcome is a row of webhook_attempts.';
COMMENT ON COLUMN lg_deploy.webhook_deliveries.max_attempts IS
    'Tries allowed: LG_DEPLOY_WEBHOOK_MAX_ATTEMPTS of the process that claimed it last.';
-- Senders claim due rows in next_attempt_at order, and look for passed leases among the few
-- rows being sent: neither reads the rows waiting out a back-off, however many.
CREATE INDEX webhook_deliveries_due_idx ON lg_deploy.webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_lease_idx ON lg_deploy.webhook_deliveries (lease_expires_at)
    WHERE lease_expires_at IS NOT NULL;

CREATE TABLE lg_deploy.webhook_attempts (
    delivery_id uuid        NOT NULL
        REFERENCES lg_deploy.webhook_deliveries (delivery_id) ON DELETE CASCADE,
    attempt     integer     NOT NULL,
    worker_id   text,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    status_code integer,
    error       text,
    duration_ms integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (delivery_id, attempt)
);
COMMENT ON TABLE lg_deploy.webhook_attempts IS
    'One row per try of a delivery: the HTTP status it got, or why it failed (timeout, refused, lease expired).';

-- Final rows with a webhook (their own, else the default) get their delivery in the statement's
-- transaction. A statement that ends no run (lease renewals, claims), or ends runs when none
-- names a webhook and there is no default, returns after a scan of its new rows. Runs forgotten
-- by a rollback are gone by now (the rollback trigger sorts first): nothing is announced for
-- them. One NOTIFY wakes the senders.
CREATE FUNCTION lg_deploy.executions_webhooks() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, lg_deploy, pg_temp AS $$
DECLARE
    default_url text;
    queued integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE status IN ('COMPLETED', 'FAILED', 'INTERRUPTED')) THEN
        RETURN NULL;
    END IF;
    SELECT url INTO default_url FROM lg_deploy.webhook_defaults;
    IF default_url IS NULL AND NOT EXISTS (
        SELECT 1 FROM new_rows
        WHERE webhook IS NOT NULL AND status IN ('COMPLETED', 'FAILED', 'INTERRUPTED')
    ) THEN
        RETURN NULL;
    END IF;
    INSERT INTO lg_deploy.webhook_deliveries (execution_id, url)
    SELECT n.execution_id, COALESCE(n.webhook, default_url)
    FROM new_rows n JOIN old_rows o USING (execution_id)
    WHERE n.status <> o.status AND n.status IN ('COMPLETED', 'FAILED', 'INTERRUPTED')
      AND COALESCE(n.webhook, default_url) IS NOT NULL
      AND EXISTS (SELECT 1 FROM lg_deploy.executions x WHERE x.execution_id = n.execution_id)
    ON CONFLICT (execution_id) DO NOTHING;
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM pg_notify('lg_deploy_webhooks', '');
    END IF;
    RETURN NULL;
END;
$$;
REVOKE EXECUTE ON FUNCTION lg_deploy.executions_webhooks() FROM PUBLIC;

CREATE TRIGGER executions_webhooks_after_update AFTER UPDATE ON lg_deploy.executions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lg_deploy.executions_webhooks();

-- Webhook outbox: one row per (enforcement event, configured URL). The policy
-- engine inserts the event and its outbox rows in one transaction
-- (store::WebhookOutbox::enqueue), so an event is never recorded without its
-- deliveries, nor delivered without being recorded. The daemon's webhook
-- sender claims due rows (FOR UPDATE SKIP LOCKED, so several senders or
-- gateways never deliver the same row at once), POSTs the payload and marks
-- the row delivered, or failed with a capped exponential backoff.
CREATE TABLE webhook_outbox (
    id              bigserial PRIMARY KEY,
    event_id        bigint REFERENCES enforcement_events (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    payload         jsonb NOT NULL,
    url             text NOT NULL CHECK (length(url) BETWEEN 1 AND 2000),
    attempts        int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    last_error      text
);

-- The sender's query: undelivered rows, earliest due first. Partial, so it
-- stays as small as the backlog however many rows were ever delivered.
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at, id)
    WHERE delivered_at IS NULL;
CREATE INDEX webhook_outbox_event ON webhook_outbox (event_id);

-- Wakes the senders when rows are committed (also rows inserted by SQL or by
-- another gateway's daemon); a notification is only delivered on COMMIT.
CREATE FUNCTION ctquota_notify_webhook() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ctquota_webhook', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER webhook_outbox_notify AFTER INSERT ON webhook_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION ctquota_notify_webhook();

COMMENT ON TABLE webhook_outbox IS
    'Webhook deliveries of enforcement events: one row per event and URL; delivered_at set on a 2xx answer.';

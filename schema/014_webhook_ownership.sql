-- Webhook rows belong to the gateway that wrote them, and name one of that
-- gateway's configured receivers. A sender claims only rows of its own
-- gateway (gateway_id = [accounting] gateway_id) and, per receiver, only
-- rows naming that receiver exactly as configured ([webhooks] urls); the
-- request goes to the configured receiver, never to what a row says. So a
-- row written by another gateway, or by anyone who can insert into the
-- table, is not sent by us, and another gateway's receivers are not ours to
-- deliver to. Rows written before this migration have no gateway: nobody
-- claims them (re-enqueue by hand if they still matter).
ALTER TABLE webhook_outbox
    ADD COLUMN gateway_id text CHECK (length(gateway_id) BETWEEN 1 AND 200);

-- One sender thread per receiver: its due rows, earliest first.
CREATE INDEX webhook_outbox_receiver_due ON webhook_outbox (gateway_id, url, next_attempt_at, id)
    WHERE delivered_at IS NULL;

COMMENT ON COLUMN webhook_outbox.url IS
    'The receiver, as written in [webhooks] urls of the gateway that wrote the row: a key into that config, not a destination.';
COMMENT ON COLUMN webhook_outbox.gateway_id IS
    'The gateway whose sender delivers this row ([accounting] gateway_id); NULL: written before 014, delivered by nobody.';

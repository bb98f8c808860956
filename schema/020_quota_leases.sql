-- Quota slices (issue 13): each gateway arms its kernel quota with a slice
-- leased from the subscriber's remaining allowance, the way Diameter credit
-- control grants units to enforcement points. One row per subscriber and
-- gateway, written by that gateway's policy engine in a transaction holding
-- the subscriber's row lock (FOR NO KEY UPDATE on subscribers), so that the
-- live ceilings of all gateways never add up to more than the allowance.
CREATE TABLE quota_lease (
    subscriber_id bigint NOT NULL REFERENCES subscribers (id),
    gateway_id    text NOT NULL,
    period_start  timestamptz NOT NULL,
    ceiling_bytes bigint NOT NULL CHECK (ceiling_bytes >= 0),
    granted_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (subscriber_id, gateway_id)
);

COMMENT ON TABLE quota_lease IS
    'Quota slices: while expires_at is ahead and period_start is the current cycle, gateway_id may count up to ceiling_bytes for the subscriber this cycle (its own counted bytes, not the sum).';
COMMENT ON COLUMN quota_lease.ceiling_bytes IS
    'The gateway''s own counted bytes this cycle may reach this; the kernel passes at most 32 KiB more (the crossing slack).';

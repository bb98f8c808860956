-- One row per gateway, rewritten by every flush in the same transaction as
-- the totals. Its token lets a daemon whose connection broke during COMMIT
-- find out whether that flush committed, so it neither drops nor repeats it
-- (exactly once). flushed_at doubles as a liveness signal per gateway.
CREATE TABLE gateway_flush (
    gateway_id  text PRIMARY KEY,
    flush_token bigint NOT NULL,
    flushed_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE gateway_flush IS
    'Last committed flush per gateway: flushed_at is when its totals were last written.';

-- usage_current and current_usage select one billing period across all
-- subscribers; the primary key leads with subscriber_id.
CREATE INDEX usage_period_period_start ON usage_period (period_start);

-- Plans give each subscriber its own billing cycle and bytes that do not count
-- toward the quota. A period row now records where its cycle ends, and which
-- part of its totals was in a free time window or to a zero-rated destination
-- (both parts are included in up_bytes/down_bytes: totals stay totals).
ALTER TABLE usage_period
    ADD COLUMN period_end      timestamptz,
    ADD COLUMN free_up_bytes   bigint NOT NULL DEFAULT 0 CHECK (free_up_bytes >= 0),
    ADD COLUMN free_down_bytes bigint NOT NULL DEFAULT 0 CHECK (free_down_bytes >= 0),
    ADD COLUMN zero_up_bytes   bigint NOT NULL DEFAULT 0 CHECK (zero_up_bytes >= 0),
    ADD COLUMN zero_down_bytes bigint NOT NULL DEFAULT 0 CHECK (zero_down_bytes >= 0);

-- Rows written before plans existed were calendar months in UTC.
UPDATE usage_period
   SET period_end = ((period_start AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'
 WHERE period_end IS NULL;

COMMENT ON COLUMN usage_period.period_end IS 'End (exclusive) of the billing cycle that starts at period_start.';
COMMENT ON COLUMN usage_period.free_up_bytes IS 'Part of up_bytes sent inside a free time window of the plan.';
COMMENT ON COLUMN usage_period.zero_up_bytes IS 'Part of up_bytes sent to zero-rated destinations outside free windows.';

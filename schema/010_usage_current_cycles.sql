-- With plans every subscriber has its own billing cycle: usage_current shows,
-- per subscriber, the cycle that contains now() (period_end is recorded by
-- every flush since 008), instead of the calendar month in UTC. Columns stay
-- as they were (a stable interface); cycle_end and plan are appended.
CREATE OR REPLACE VIEW usage_current AS
SELECT s.external_id                    AS subscriber_id,
       u.period_start                   AS cycle_start,
       sum(u.up_bytes)::bigint          AS up_bytes,
       sum(u.down_bytes)::bigint        AS down_bytes,
       sum(u.up_packets)::bigint        AS up_packets,
       sum(u.down_packets)::bigint      AS down_packets,
       max(u.updated_at)                AS updated_at,
       u.period_end                     AS cycle_end,
       s.plan                           AS plan
  FROM usage_period u
  JOIN subscribers s ON s.id = u.subscriber_id
 WHERE u.period_start <= now() AND u.period_end > now()
 GROUP BY s.external_id, s.plan, u.period_start, u.period_end;

COMMENT ON VIEW usage_current IS
    'Stable: one row per subscriber with usage in its current billing cycle (the plan''s cycle; calendar month in UTC without a plan), summed over gateways.';
COMMENT ON COLUMN usage_current.cycle_start IS 'Start of the subscriber''s current billing cycle.';
COMMENT ON COLUMN usage_current.cycle_end IS 'End (exclusive) of the current billing cycle.';
COMMENT ON COLUMN usage_current.plan IS 'The subscriber''s plan now; NULL: none (unlimited).';

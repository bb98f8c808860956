-- ctquota initial schema: subscribers, address bindings over time, usage per
-- billing period and per hour, unattributed usage, the ledger checkpoint.
-- Rows that one gateway writes carry its gateway_id; quotas are evaluated on
-- the sum over gateways. Every table is keyed so it can be distributed by
-- subscriber_id later without changing the daemon.

CREATE TABLE subscribers (
    id          bigserial PRIMARY KEY,
    external_id text NOT NULL UNIQUE CHECK (length(external_id) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    removed_at  timestamptz
);

-- An address or prefix belongs to a subscriber from valid_from until
-- valid_until (exclusive, NULL = open-ended), so a dynamic address can move
-- between subscribers over time and history stays attributable.
CREATE TABLE subscriber_bindings (
    id            bigserial PRIMARY KEY,
    subscriber_id bigint NOT NULL REFERENCES subscribers (id),
    prefix        cidr NOT NULL,
    valid_from    timestamptz NOT NULL DEFAULT now(),
    valid_until   timestamptz,
    CHECK (valid_until IS NULL OR valid_until > valid_from)
);
CREATE INDEX subscriber_bindings_prefix ON subscriber_bindings USING gist (prefix inet_ops);
CREATE INDEX subscriber_bindings_subscriber ON subscriber_bindings (subscriber_id);

CREATE TABLE usage_period (
    subscriber_id bigint NOT NULL REFERENCES subscribers (id),
    period_start  timestamptz NOT NULL,
    gateway_id    text NOT NULL,
    up_bytes      bigint NOT NULL DEFAULT 0 CHECK (up_bytes >= 0),
    down_bytes    bigint NOT NULL DEFAULT 0 CHECK (down_bytes >= 0),
    up_packets    bigint NOT NULL DEFAULT 0 CHECK (up_packets >= 0),
    down_packets  bigint NOT NULL DEFAULT 0 CHECK (down_packets >= 0),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscriber_id, period_start, gateway_id)
);

CREATE TABLE usage_hourly (
    subscriber_id bigint NOT NULL REFERENCES subscribers (id),
    hour          timestamptz NOT NULL,
    gateway_id    text NOT NULL,
    up_bytes      bigint NOT NULL DEFAULT 0 CHECK (up_bytes >= 0),
    down_bytes    bigint NOT NULL DEFAULT 0 CHECK (down_bytes >= 0),
    up_packets    bigint NOT NULL DEFAULT 0 CHECK (up_packets >= 0),
    down_packets  bigint NOT NULL DEFAULT 0 CHECK (down_packets >= 0),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscriber_id, hour, gateway_id)
);

-- Traffic that matched no subscriber: counted, never dropped. up = the
-- connection's original direction, down = its reply direction.
CREATE TABLE usage_unattributed (
    gateway_id   text NOT NULL,
    hour         timestamptz NOT NULL,
    up_bytes     bigint NOT NULL DEFAULT 0,
    down_bytes   bigint NOT NULL DEFAULT 0,
    up_packets   bigint NOT NULL DEFAULT 0,
    down_packets bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, hour)
);

-- The flow ledger's checkpoint: how much of each live connection is already
-- in the totals. Written in the same transaction as the totals, one binary row
-- per flush (a snapshot, or the changes since the previous row), so a restart
-- neither loses nor double counts the bytes of connections still alive.
CREATE TABLE ledger_checkpoint (
    gateway_id  text NOT NULL,
    seq         bigserial,
    is_snapshot boolean NOT NULL,
    data        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, seq)
);
-- Binary flow records do not compress; skip the attempt.
ALTER TABLE ledger_checkpoint ALTER COLUMN data SET STORAGE EXTERNAL;

-- Stable interface for billing systems that integrate through SQL.
CREATE VIEW usage_current AS
SELECT s.external_id                    AS subscriber_id,
       u.period_start                   AS cycle_start,
       sum(u.up_bytes)::bigint          AS up_bytes,
       sum(u.down_bytes)::bigint        AS down_bytes,
       sum(u.up_packets)::bigint        AS up_packets,
       sum(u.down_packets)::bigint      AS down_packets,
       max(u.updated_at)                AS updated_at
  FROM usage_period u
  JOIN subscribers s ON s.id = u.subscriber_id
 WHERE u.period_start = (date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
 GROUP BY s.external_id, u.period_start;

COMMENT ON VIEW usage_current IS
    'Stable: one row per subscriber with usage in the current billing cycle (the calendar month in UTC until plans exist), summed over gateways.';
COMMENT ON COLUMN usage_current.subscriber_id IS 'The subscriber''s external id.';
COMMENT ON COLUMN usage_current.cycle_start IS 'Start of the current billing cycle.';
COMMENT ON COLUMN usage_current.up_bytes IS 'IP-layer bytes sent by the subscriber (headers included).';
COMMENT ON COLUMN usage_current.down_bytes IS 'IP-layer bytes received by the subscriber (headers included).';
COMMENT ON COLUMN usage_current.up_packets IS 'Packets sent by the subscriber.';
COMMENT ON COLUMN usage_current.down_packets IS 'Packets received by the subscriber.';
COMMENT ON COLUMN usage_current.updated_at IS 'When a flush last changed these totals.';

-- The flow log ([flowlog], daemon/sinks/): one row per flow record, that is
-- per connection at its end (final) and, for long ones, every
-- [records] interim_interval while open (interim). Both tuples are kept, so
-- the address and port after NAT are there (public_address/public_port: the
-- subscriber's end as the far side saw it, what an abuse report names).
-- Counters are the connection's totals at the record (orig = the
-- initiator's direction). Written by COPY in batches; partitioned by day of
-- flow_end (UTC), partitions created by the daemon as records need them and
-- dropped whole by retention ([flowlog] retention).
CREATE TABLE flow_log (
    gateway_id       text        NOT NULL,
    flow_end         timestamptz NOT NULL,  -- the kernel's stop time (final) or when seen (interim)
    flow_start       timestamptz NOT NULL,  -- the kernel's start time (or first seen, below)
    final            boolean     NOT NULL,
    start_first_seen boolean     NOT NULL,  -- no kernel start timestamp: when first seen
    subscriber_id    bigint,                -- NULL: matched no subscriber
    direction        smallint    NOT NULL,  -- 1: the subscriber opened it, 2: opened toward it, 0: neither
    l4proto          smallint    NOT NULL,
    orig_src         inet        NOT NULL,
    orig_sport       integer     NOT NULL,
    orig_dst         inet        NOT NULL,
    orig_dport       integer     NOT NULL,
    reply_src        inet        NOT NULL,
    reply_sport      integer     NOT NULL,
    reply_dst        inet        NOT NULL,
    reply_dport      integer     NOT NULL,
    public_address   inet        NOT NULL,
    public_port      integer     NOT NULL,
    orig_bytes       bigint      NOT NULL,
    orig_packets     bigint      NOT NULL,
    reply_bytes      bigint      NOT NULL,
    reply_packets    bigint      NOT NULL,
    conntrack_id     bigint      NOT NULL,
    flow_id          bigint      NOT NULL   -- the same on every record of one connection
) PARTITION BY RANGE (flow_end);

-- GET /api/v1/nat-lookup: who held public_address:public_port at a time.
-- The only index: each one costs every COPY (this one about 40 % of the
-- insert time in tests/bench/RESULTS.md); one on (subscriber_id, flow_end)
-- would cost another 20 % for per-subscriber queries nothing here makes.
CREATE INDEX flow_log_public ON flow_log (public_address, public_port, flow_end);

COMMENT ON TABLE flow_log IS
    'Per-connection flow records (final at the end, interim while open), partitioned by day of flow_end.';

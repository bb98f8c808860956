-- Policies: plans (from policies/*.toml or the API), each subscriber's plan,
-- quota overrides per billing cycle, top-ups, the enforced state per
-- subscriber and the log of enforcement events. Every change that can alter a
-- subscriber's desired state wakes the daemon's policy engine through
-- NOTIFY ctquota_policy: the payload is the subscriber's id as text, or '*'
-- when a plan changed (every subscriber on it is re-evaluated).

CREATE TABLE plans (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    definition  jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    source      text NOT NULL CHECK (source IN ('file', 'api')),
    source_file text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (source = 'file' OR source_file IS NULL)
);
COMMENT ON TABLE plans IS
    'Plans: definition is the plan JSON of the API. source file: mirrored from policies/<name>.toml '
    '(the API may not change it); source api: written by PUT /api/v1/plans/{name}.';

-- NULL = no plan = unlimited, billing cycle = calendar month in UTC.
ALTER TABLE subscribers ADD COLUMN plan text REFERENCES plans (name);
CREATE INDEX subscribers_plan ON subscribers (plan) WHERE plan IS NOT NULL;

-- Replaces the plan's quota for one billing cycle of one subscriber.
CREATE TABLE quota_overrides (
    subscriber_id bigint NOT NULL REFERENCES subscribers (id),
    cycle_start   timestamptz NOT NULL,
    quota_bytes   bigint NOT NULL CHECK (quota_bytes >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscriber_id, cycle_start)
);

-- Extra bytes on top of the allowance while created_at <= now < expires_at.
-- A client's Idempotency-Key makes a retried POST return the first top-up
-- instead of crediting again; request_sha256 tells a retry (same body) from a
-- reused key (another body).
CREATE TABLE topups (
    id              bigserial PRIMARY KEY,
    subscriber_id   bigint NOT NULL REFERENCES subscribers (id),
    bytes           bigint NOT NULL CHECK (bytes > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    idempotency_key text CHECK (idempotency_key IS NULL OR length(idempotency_key) BETWEEN 1 AND 255),
    request_sha256  bytea CHECK (request_sha256 IS NULL OR length(request_sha256) = 32),
    UNIQUE (subscriber_id, idempotency_key),
    CHECK (expires_at > created_at)
);
CREATE INDEX topups_subscriber_expires ON topups (subscriber_id, expires_at);

-- What the policy engine last decided for a subscriber (no row = normal).
CREATE TABLE subscriber_state (
    subscriber_id  bigint PRIMARY KEY REFERENCES subscribers (id),
    state          text NOT NULL CHECK (state IN ('normal', 'throttled', 'blocked')),
    down_bps       bigint CHECK (down_bps IS NULL OR down_bps >= 0),
    up_bps         bigint CHECK (up_bps IS NULL OR up_bps >= 0),
    reason         text NOT NULL,
    since          timestamptz NOT NULL,
    cycle_start    timestamptz,
    warned_percent int NOT NULL DEFAULT 0 CHECK (warned_percent >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriber_state_state ON subscriber_state (state) WHERE state <> 'normal';

CREATE TABLE enforcement_events (
    id              bigserial PRIMARY KEY,
    subscriber_id   bigint NOT NULL REFERENCES subscribers (id),
    at              timestamptz NOT NULL DEFAULT now(),
    kind            text NOT NULL CHECK (kind IN ('state', 'warning', 'cycle')),
    from_state      text,
    to_state        text,
    reason          text NOT NULL,
    counted_bytes   bigint,
    allowance_bytes bigint,
    detail          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object')
);
-- Per subscriber, newest first (GET /api/v1/subscribers/{id}/events).
CREATE INDEX enforcement_events_subscriber_id ON enforcement_events (subscriber_id, id);

-- Wake-ups for the policy engine. pg_notify folds identical payloads of one
-- transaction into one notification.
CREATE FUNCTION ctquota_notify_policy_subscriber() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('ctquota_policy', OLD.subscriber_id::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('ctquota_policy', NEW.subscriber_id::text);
    IF TG_OP = 'UPDATE' AND OLD.subscriber_id <> NEW.subscriber_id THEN
        PERFORM pg_notify('ctquota_policy', OLD.subscriber_id::text);
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION ctquota_notify_policy_plan_of_subscriber() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR OLD.plan IS DISTINCT FROM NEW.plan THEN
        PERFORM pg_notify('ctquota_policy', NEW.id::text);
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION ctquota_notify_policy_all() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ctquota_policy', '*');
    RETURN NULL;
END
$$;

CREATE TRIGGER topups_notify_policy
    AFTER INSERT OR UPDATE OR DELETE ON topups
    FOR EACH ROW EXECUTE FUNCTION ctquota_notify_policy_subscriber();
CREATE TRIGGER quota_overrides_notify_policy
    AFTER INSERT OR UPDATE OR DELETE ON quota_overrides
    FOR EACH ROW EXECUTE FUNCTION ctquota_notify_policy_subscriber();
CREATE TRIGGER subscribers_plan_notify_policy
    AFTER UPDATE OF plan ON subscribers
    FOR EACH ROW EXECUTE FUNCTION ctquota_notify_policy_plan_of_subscriber();
CREATE TRIGGER subscribers_insert_notify_policy
    AFTER INSERT ON subscribers
    FOR EACH ROW WHEN (NEW.plan IS NOT NULL)
    EXECUTE FUNCTION ctquota_notify_policy_plan_of_subscriber();
CREATE TRIGGER plans_notify_policy
    AFTER INSERT OR UPDATE OR DELETE ON plans
    FOR EACH STATEMENT EXECUTE FUNCTION ctquota_notify_policy_all();

-- Wake the policy engine (and through it the accounting's subscriber index)
-- when an address is bound or released, or a subscriber removed: the
-- enforcer must move its kernel state to the new prefixes at once, and
-- traffic of a freshly bound address must not count as unattributed until
-- the next poll.
CREATE TRIGGER subscriber_bindings_notify_policy
    AFTER INSERT OR UPDATE OR DELETE ON subscriber_bindings
    FOR EACH ROW EXECUTE FUNCTION ctquota_notify_policy_subscriber();

CREATE FUNCTION ctquota_notify_policy_removed() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.removed_at IS DISTINCT FROM NEW.removed_at THEN
        PERFORM pg_notify('ctquota_policy', NEW.id::text);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER subscribers_removed_notify_policy
    AFTER UPDATE OF removed_at ON subscribers
    FOR EACH ROW EXECUTE FUNCTION ctquota_notify_policy_removed();

-- Every flush updates each changed subscriber's period and hour rows. With
-- half of each page left free, those updates are HOT (no new index entries):
-- a flush of 100k subscribers' period rows took 0.89 s with full pages and
-- 0.38 s with fillfactor 50 (tests/bench/RESULTS.md). Vacuum often enough
-- that the free space comes back.
ALTER TABLE usage_period SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE usage_hourly SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.02);

-- Every hour, each active subscriber gets a new hourly row; the foreign key's
-- per-row check cost 0.34 s of a 0.83 s insert of 100k rows. Subscribers are
-- never deleted (removal sets removed_at), so the hourly rows keep no
-- foreign key; usage_period, inserted once per cycle, keeps its own.
ALTER TABLE usage_hourly DROP CONSTRAINT IF EXISTS usage_hourly_subscriber_id_fkey;

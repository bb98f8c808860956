-- The event journal (a local file per gateway, runtime/event_journal): each
-- flush stores, in the same transaction as the totals, up to where the
-- journal's events are counted in them. A restart replays the events after
-- that position (kill -9 loses no DESTROY that was read). NULL: the gateway
-- runs without a journal, or has not flushed with one yet.
ALTER TABLE gateway_flush
    ADD COLUMN journal_id bigint,
    ADD COLUMN journal_position bigint;

COMMENT ON COLUMN gateway_flush.journal_id IS
    'The event journal the position belongs to (random, made with the journal).';
COMMENT ON COLUMN gateway_flush.journal_position IS
    'Journal position after the last event counted in this gateway''s stored totals.';

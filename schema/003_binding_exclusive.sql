-- An address or prefix belongs to at most one binding at any instant, so
-- attribution is never ambiguous. Nested prefixes (a /32 inside another
-- subscriber's /24) stay allowed: the longest match wins. Both operator
-- classes are built in (inet_ops, range_ops); no extension is needed.
ALTER TABLE subscriber_bindings
    ADD CONSTRAINT subscriber_bindings_one_holder
    EXCLUDE USING gist (prefix inet_ops WITH =,
                        tstzrange(valid_from, valid_until) WITH &&);

-- Bearer tokens of the REST API. Only a SHA-256 of each token is kept: a
-- leaked database (or backup) does not hand out API access. The token itself
-- is printed once by `ctquotad token create` and never stored. A token is
-- 32 random bytes, so a plain (unsalted) hash cannot be brute-forced.
CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    role         text NOT NULL CHECK (role IN ('admin', 'billing')),
    token_sha256 bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

COMMENT ON TABLE api_tokens IS
    'REST API bearer tokens: admin may read and write, billing may only read. Revoked when revoked_at is set.';

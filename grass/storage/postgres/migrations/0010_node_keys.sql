-- Node keys: what a user's nodes authenticate with instead of the user id (grass.domain.users
-- NodeKey). Shown once, stored as the SHA-256 of the key; deleted with their user.
CREATE TABLE node_keys (
    id         short_id    PRIMARY KEY,
    user_id    short_id    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       text        NOT NULL,
    key_hash   sha256_hex  NOT NULL CONSTRAINT node_keys_key_hash_key UNIQUE,
    prefix     text        NOT NULL,       -- shown to the user to tell keys apart
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX node_keys_user_idx ON node_keys (user_id, created_at);


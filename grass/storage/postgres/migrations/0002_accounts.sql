-- Accounts: single-use mailed tokens, the mail outbox, failed logins (grass.storage.accounts).

CREATE TABLE account_tokens (
    token_hash sha256_hex  PRIMARY KEY,
    user_id    short_id    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text        NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL CHECK (expires_at >= created_at),
    used_at    timestamptz
);
CREATE INDEX account_tokens_user_purpose ON account_tokens (user_id, purpose)
    WHERE used_at IS NULL;

-- A mail is written in the same transaction as what it announces and delivered later, so a
-- crash between the two never loses it. next_attempt_at doubles as the sender's lease.
CREATE TABLE mail_outbox (
    id              short_id    PRIMARY KEY,
    recipient       text        NOT NULL,
    subject         text        NOT NULL,
    body            text        NOT NULL,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    sent_at         timestamptz,
    failed_at       timestamptz,
    last_error      text
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at, id)
    WHERE sent_at IS NULL AND failed_at IS NULL;

-- One row per failed login, under 'account:<email>' and 'ip:<address>'; counted over a window.
CREATE TABLE login_failures (
    key text        NOT NULL,
    at  timestamptz NOT NULL
);
CREATE INDEX login_failures_key_at ON login_failures (key, at DESC);
CREATE INDEX login_failures_at ON login_failures (at);

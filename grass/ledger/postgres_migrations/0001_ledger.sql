-- Ledger (DESIGN §7): the journal of credits, per-user balances kept in the same transaction,
-- settlement accounts and wallet links, settlement records, and the roots anchored here when
-- GRASS_LEDGER=postgres. Amounts are micro-points as numeric(78, 0): exactly the uint256 range
-- a Merkle leaf can carry, so no Python int the memory journal accepts is refused here.

-- Every credit, once per idempotency key. seq orders the history (newest first) and is the
-- history cursor; it is drawn in the order of the recorded batch.
CREATE SEQUENCE ledger_credits_seq AS bigint;

CREATE TABLE ledger_credits (
    seq     bigint         PRIMARY KEY DEFAULT nextval('ledger_credits_seq'),
    key     text           NOT NULL CONSTRAINT ledger_credits_key_key UNIQUE,
    user_id text           NOT NULL,
    amount  numeric(78, 0) NOT NULL CHECK (amount > 0),
    epoch   bigint         NOT NULL CHECK (epoch >= 0),
    source  text           NOT NULL,
    created timestamptz    NOT NULL
);
ALTER SEQUENCE ledger_credits_seq OWNED BY ledger_credits.seq;
CREATE INDEX ledger_credits_user_idx ON ledger_credits (user_id, seq);

-- Sum of a user's credits per epoch, updated by the transaction that records them: balances
-- read these few rows instead of the user's whole history.
CREATE TABLE ledger_balances (
    user_id text           NOT NULL,
    epoch   bigint         NOT NULL,
    amount  numeric(78, 0) NOT NULL CHECK (amount > 0),
    PRIMARY KEY (user_id, epoch)
);

-- A user's settlement account: the derived one (keccak of the id, computed once by the
-- application) and the linked wallet, used for every epoch >= linked_from. A link is final.
CREATE TABLE ledger_accounts (
    user_id     text  PRIMARY KEY,
    derived     bytea NOT NULL CHECK (length(derived) = 20),
    linked      bytea CONSTRAINT ledger_accounts_linked_key UNIQUE CHECK (length(linked) = 20),
    linked_from bigint,
    CHECK ((linked IS NULL) = (linked_from IS NULL))
);

-- One row: the highest closed epoch (no credit for an epoch <= closed is accepted). record()
-- reads it FOR SHARE and close() updates it, so the two never interleave.
CREATE TABLE ledger_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    closed    bigint  NOT NULL DEFAULT -1
);
INSERT INTO ledger_state DEFAULT VALUES;

-- The journal's record of each settlement, whatever the anchor.
CREATE TABLE ledger_settlements (
    epoch      bigint         PRIMARY KEY CHECK (epoch >= 0),
    root       bytea          NOT NULL CHECK (length(root) = 32),
    total      numeric(78, 0) NOT NULL CHECK (total >= 0),
    user_count bigint         NOT NULL CHECK (user_count >= 0),
    anchor_ref text,
    status     text           NOT NULL
                              CHECK (status IN ('pending', 'anchored', 'confirmed', 'failed')),
    updated_at timestamptz    NOT NULL DEFAULT now()
);

-- The PostgreSQL anchor: one root per epoch, as the contract holds them. Kept apart from the
-- journal's records so that verify() compares two independent writes.
CREATE TABLE ledger_anchored_roots (
    epoch      bigint      PRIMARY KEY CHECK (epoch >= 0),
    root       bytea       NOT NULL CHECK (length(root) = 32),
    ref        text        NOT NULL UNIQUE,
    posted_at  timestamptz NOT NULL DEFAULT now()
);

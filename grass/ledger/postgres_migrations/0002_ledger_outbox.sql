-- The web3 ledger's outbox (grass/ledger/web3/outbox.py): the signed setRoot transaction of an
-- epoch, written before it is broadcast. After a crash the writer re-broadcasts these exact
-- bytes (same nonce, same hash) instead of signing a second transaction, so a root is never
-- posted twice. One row per epoch: a retry after a revert replaces the failed row.
CREATE TABLE ledger_outbox (
    epoch      bigint      PRIMARY KEY CHECK (epoch >= 0),
    root       bytea       NOT NULL CHECK (length(root) = 32),
    sender     text        NOT NULL,
    nonce      bigint      NOT NULL CHECK (nonce >= 0),
    tx_hash    text        NOT NULL,
    raw_tx     bytea       NOT NULL,
    status     text        NOT NULL CHECK (status IN ('sent', 'mined', 'failed')),
    updated_at timestamptz NOT NULL DEFAULT now()
);

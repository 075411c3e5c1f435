-- The web3 outbox is keyed by contract and epoch. Keyed by epoch alone, a store whose ledger
-- moved to a newly deployed distributor found the old contract's mined transaction for epoch 1,
-- saw no root for it on the new contract, and waited for one forever.
-- Rows written before this migration name no contract (''): the writer reads it from their
-- signed bytes when it starts (grass/ledger/web3/outbox.py, name_contracts).
ALTER TABLE ledger_outbox ADD COLUMN contract text NOT NULL DEFAULT '';
ALTER TABLE ledger_outbox ALTER COLUMN contract DROP DEFAULT;
ALTER TABLE ledger_outbox DROP CONSTRAINT ledger_outbox_pkey;
ALTER TABLE ledger_outbox ADD PRIMARY KEY (contract, epoch);

-- The bucket closer's record of each close (grass.storage.payouts). One row per closed bucket:
-- revision 0 is the first close, each correction pass that paid late uptime adds one; seconds
-- is the bucket's uptime that revision paid for; credited says its entries reached the ledger.
-- The row is written in the same transaction as the revision's earnings entries.
CREATE TABLE bucket_closes (
    bucket_start timestamptz PRIMARY KEY,
    revision     integer     NOT NULL CHECK (revision >= 0),
    seconds      bigint      NOT NULL CHECK (seconds >= 0),
    credited     boolean     NOT NULL DEFAULT false,
    closed_at    timestamptz NOT NULL
);
CREATE INDEX bucket_closes_uncredited_idx ON bucket_closes (bucket_start) WHERE NOT credited;

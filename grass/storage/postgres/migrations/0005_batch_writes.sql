-- The two batch writes of grass (the earnings insert, the uptime flush), made cheaper.
-- Measured with scripts/bench/pg_earnings.py and scripts/bench/pg_flush.py (docs/benchmarks.md).

-- Earnings -------------------------------------------------------------------------------
-- Each foreign key on the partitioned `earnings` table cost one trigger call per inserted entry
-- (a lookup plus a row lock, about 0.65 s per 100 000 entries each). Both are redundant with
-- what remains:
--   * earnings.user_id -> users: every entry is written in the same statement as its key, with
--     the same user, and the key keeps its foreign key to users (an unknown user is still an
--     integrity error, and deleting a user still deletes its keys);
--   * earnings.idempotency_key -> earnings_keys (ON DELETE CASCADE): the cascade is kept by the
--     statement trigger below (one set-based DELETE per deleting statement, through the
--     partitions' primary keys), so deleting a key, or the user owning it, deletes its entry.
-- An entry without its key can then only come from a writer that skips `earnings_keys`; both
-- writers (grass.storage.postgres.earnings, the bucket closer) write the two together.
ALTER TABLE earnings DROP CONSTRAINT earnings_user_id_fkey;
ALTER TABLE earnings DROP CONSTRAINT earnings_idempotency_key_fkey;

CREATE FUNCTION earnings_keys_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM earnings e USING gone g
    WHERE e.id = g.entry_id AND e.accrued_at = g.accrued_at;
    RETURN NULL;
END
$$;
CREATE TRIGGER earnings_keys_delete_entries
    AFTER DELETE ON earnings_keys REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION earnings_keys_deleted();

-- Uptime ---------------------------------------------------------------------------------
-- The flush appends: each delta is one row COPYed into `uptime_deltas` (no index, no
-- constraint to check, written with COPY's multi-row inserts), and a background merge
-- (grass.storage.postgres.uptime.merge_uptime) moves them into `uptime_buckets` with the upsert
-- the flush used to run itself. Adding into 100 000 existing rows costs about 0.6 s of server
-- time however it is written (one WAL record and one new row version per row; an UNLOGGED copy
-- of the table still took 0.37 s), so the flush could not fit its 0.5 s budget while it did
-- that work itself; an append of the same rows takes about 0.3 s from Python.
-- Readers see the merged state and what is still pending as one: `uptime_current` has one row
-- per (bucket, device, IP) with the totals and the owner named by the latest delta, exactly
-- what `uptime_buckets` held when the flush merged. Read `uptime_current`, never
-- `uptime_buckets`, for anything that must count every flushed second.
-- Addresses are text here, parsed by the server on the way out: asyncpg's binary encoder for
-- inet parses each value in Python (its uuid encoder is fast, and a uuid column makes the
-- flush's check for unknown devices 3x faster than text cast on the fly).
-- `flush` orders the deltas of one key (a sequence value per flush): the latest names the owner.
CREATE SEQUENCE uptime_flush_seq;
CREATE TABLE uptime_deltas (
    flush        bigint      NOT NULL,
    device_id    uuid        NOT NULL,
    bucket_start timestamptz NOT NULL,
    user_id      text        NOT NULL,
    ip           text        NOT NULL,
    seconds      integer     NOT NULL,
    rtt_count    integer     NOT NULL,
    rtt_sum_ms   bigint      NOT NULL,
    rtt_max_ms   integer     NOT NULL,
    reconnects   integer     NOT NULL
-- Emptied by every merge: vacuum it often so that scans do not walk dead rows.
) WITH (autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0);

-- The deltas not merged yet, one row per key.
CREATE VIEW uptime_pending AS
SELECT bucket_start, device_id, ip::inet AS ip,
       (array_agg(user_id ORDER BY flush DESC))[1] AS user_id,
       sum(seconds)::integer AS seconds, sum(rtt_count)::integer AS rtt_count,
       sum(rtt_sum_ms)::bigint AS rtt_sum_ms, max(rtt_max_ms) AS rtt_max_ms,
       sum(reconnects)::integer AS reconnects
FROM uptime_deltas
GROUP BY 1, 2, 3;

-- Buckets as if every pending delta were merged (the same columns as uptime_buckets).
CREATE VIEW uptime_current AS
SELECT b.device_id, b.bucket_start, b.user_id, b.ip, b.seconds, b.rtt_count, b.rtt_sum_ms,
       b.rtt_max_ms, b.reconnects
FROM uptime_buckets b
WHERE NOT EXISTS (
    SELECT 1 FROM uptime_deltas d
    WHERE d.bucket_start = b.bucket_start AND d.device_id = b.device_id
      AND d.ip::inet = b.ip
)
UNION ALL
SELECT p.device_id, p.bucket_start, p.user_id, p.ip,
       p.seconds + coalesce(b.seconds, 0), p.rtt_count + coalesce(b.rtt_count, 0),
       p.rtt_sum_ms + coalesce(b.rtt_sum_ms, 0), greatest(p.rtt_max_ms, b.rtt_max_ms),
       p.reconnects + coalesce(b.reconnects, 0)
FROM uptime_pending p
LEFT JOIN uptime_buckets b
       ON b.bucket_start = p.bucket_start AND b.device_id = p.device_id AND b.ip = p.ip;

-- The price of each line of a closed bucket (grass.storage.payouts.FrozenLine): the score and
-- device type one (device, IP) line was first paid at, written by the close revision that
-- first paid it, in the same transaction as its entries. Corrections (late uptime) price the
-- line again from these, not from the device's score of the day, so a late second is paid at
-- its bucket's rate and a re-run computes the same amounts.
-- The closer forgets a bucket's lines once the bucket is past closer.correction_window (it is
-- never priced again). The address is text, as in uptime_deltas: it is written by COPY, whose
-- binary inet encoder parses every value in Python; it joins with host() of the uptime rows.
CREATE TABLE bucket_lines (
    bucket_start timestamptz NOT NULL,
    device_id    uuid        NOT NULL,
    ip           text        NOT NULL,
    device_type  text        NOT NULL
                             CHECK (device_type IN ('extension', 'desktop', 'community', 'android')),
    score        smallint    NOT NULL CHECK (score BETWEEN 0 AND 100),
    revision     integer     NOT NULL CHECK (revision >= 0),
    PRIMARY KEY (bucket_start, device_id, ip)
);

-- Two indexes of `earnings` that no query uses, dropped: each cost a B-tree insert per uptime
-- entry on the bucket closer's write (100 000 a bucket of 100 000 devices). Every read of
-- entries leads with the user (earnings_user_idx), the bucket (earnings_bucket_idx) or the
-- key (earnings_keys); a device's or an address's earnings are read within one user's rows.
DROP INDEX earnings_device_idx;
DROP INDEX earnings_ip_idx;

-- grass schema, version 1. Columns follow the models of grass.domain, one table per model.
--
-- Conventions:
--   * names are unqualified: the schema is whatever search_path says (one per test module);
--   * users, sessions, keys, entries... have short ids (grass.ids.short_id, the short_id domain
--     below); a device's id is the node's browser_id, a uuid;
--   * times are timestamptz, amounts are bigint micro-points;
--   * closed enums are text + CHECK (readable in psql; a new value is a one-line migration);
--   * nested value objects (profile, preferences, score components, payloads) are jsonb,
--     decoded to Python values by the pool;
--   * uptime_buckets and earnings are range-partitioned by month: the partitions are created by
--     grass.storage.postgres.partitions (current and next months) and a DEFAULT partition
--     catches anything else, so an insert never fails for lack of a partition.

CREATE DOMAIN short_id AS text CHECK (VALUE ~ '^[A-Za-z0-9_-]{21}$');
CREATE DOMAIN sha256_hex AS text CHECK (VALUE ~ '^[0-9a-f]{64}$');

-- Users and authentication ------------------------------------------------------------------

CREATE TABLE users (
    id                  short_id    PRIMARY KEY,
    email               text        NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$'),  -- normalized
    email_verified      boolean     NOT NULL DEFAULT false,
    role                text        NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    status              text        NOT NULL DEFAULT 'active'
                                    CHECK (status IN ('active', 'suspended', 'banned')),
    referral_code       text        NOT NULL CHECK (referral_code ~ '^[A-Za-z0-9_-]{4,32}$'),
    profile             jsonb       NOT NULL DEFAULT '{}',   -- display name, country, timezone
    preferences         jsonb       NOT NULL DEFAULT '{}',
    password_hash       text        NOT NULL,                -- argon2id
    password_changed_at timestamptz NOT NULL,
    created_at          timestamptz NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_referral_code_key UNIQUE (referral_code)
);

-- Revocable login sessions, by the SHA-256 of their token (the token itself is never stored).
CREATE TABLE sessions (
    token_hash sha256_hex  PRIMARY KEY,
    user_id    short_id    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    ip         inet,
    user_agent text,
    CONSTRAINT sessions_expire_after_creation CHECK (expires_at >= created_at)
);
CREATE INDEX sessions_user_idx ON sessions (user_id, created_at);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

CREATE TABLE api_keys (
    id           short_id    PRIMARY KEY,
    user_id      short_id    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    key_hash     sha256_hex  NOT NULL CONSTRAINT api_keys_key_hash_key UNIQUE,
    prefix       text        NOT NULL,       -- shown to the user to tell keys apart
    scopes       text[]      NOT NULL CHECK (cardinality(scopes) > 0),
    created_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id, created_at);

-- A wallet proven by an EIP-191 signature: one per user, and one user per address.
CREATE TABLE wallet_links (
    user_id   short_id    PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    address   text        NOT NULL CONSTRAINT wallet_links_address_key UNIQUE
                          CHECK (address ~ '^0x[0-9a-f]{40}$'),   -- lower case
    linked_at timestamptz NOT NULL
);

-- Devices and uptime ------------------------------------------------------------------------

CREATE TABLE devices (
    id               uuid        PRIMARY KEY,    -- the node's browser_id
    user_id          short_id    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type             text        NOT NULL
                                 CHECK (type IN ('extension', 'desktop', 'community', 'android')),
    version          text,
    user_agent       text,
    ip               inet,
    country          char(2)     CHECK (country ~ '^[A-Z]{2}$'),
    status           text        NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'offline')),
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    paused           boolean     NOT NULL DEFAULT false,
    name             text,
    score            smallint    CHECK (score BETWEEN 0 AND 100),  -- latest network score
    score_components jsonb,                      -- availability, stability, latency, ip quality
    score_at         timestamptz,                -- when the score was computed
    CONSTRAINT devices_seen_in_order CHECK (last_seen >= first_seen),
    CONSTRAINT devices_score_whole CHECK (num_nulls(score, score_components, score_at) IN (0, 3))
);
CREATE INDEX devices_user_idx ON devices (user_id, first_seen);
CREATE INDEX devices_ip_idx ON devices (ip) WHERE ip IS NOT NULL;
CREATE INDEX devices_online_idx ON devices (last_seen) WHERE status = 'online';

-- Uptime per device, bucket and IP. The flusher adds deltas (COPY into a temporary table, then
-- one INSERT ... ON CONFLICT (bucket_start, device_id, ip) DO UPDATE adding them up; see
-- grass.storage.postgres.uptime); round-trip times are kept as count/sum/max so deltas add up
-- and the mean stays exact. user_id is the owner named by the latest delta; a device that
-- changes network mid-bucket has one row per IP.
-- No foreign keys here, on purpose: this is the hottest bulk write (100 000 rows a minute),
-- and the per-row checks of two foreign keys made the flush 1.7x slower (measured with
-- scripts/bench/pg_flush.py). The flush joins devices itself (unknown devices are reported,
-- not written) and deleting a user deletes its buckets in the same transaction.
-- user_id is plain text, not the short_id domain: the model validated it, and a domain's
-- regex would run again on every flushed row. The bucket length is configuration, so
-- bucket_start is not forced onto a whole hour, and seconds may exceed an hour's worth only
-- through that configuration: the model's non-negative checks are kept.
-- The primary key leads with the bucket (it must hold the partition key anyway), so it also
-- serves the bucket closer's "every device of this bucket" scan; a device's history goes
-- through its user's index (a user has few devices).
-- Most flushes update buckets that exist (a bucket gets a delta every flush interval): the
-- partitions keep free space on every page (fillfactor) so those updates are HOT, touching
-- no index; measured 2x faster on the update path.
CREATE TABLE uptime_buckets (
    device_id    uuid        NOT NULL,
    bucket_start timestamptz NOT NULL,
    user_id      text        NOT NULL,
    ip           inet        NOT NULL,
    seconds      integer     NOT NULL DEFAULT 0 CHECK (seconds >= 0),
    rtt_count    integer     NOT NULL DEFAULT 0 CHECK (rtt_count >= 0),
    rtt_sum_ms   bigint      NOT NULL DEFAULT 0 CHECK (rtt_sum_ms >= 0),
    rtt_max_ms   integer     NOT NULL DEFAULT 0 CHECK (rtt_max_ms >= 0),
    reconnects   integer     NOT NULL DEFAULT 0 CHECK (reconnects >= 0),
    PRIMARY KEY (bucket_start, device_id, ip)
) PARTITION BY RANGE (bucket_start);
CREATE INDEX uptime_buckets_user_idx ON uptime_buckets (user_id, bucket_start);
CREATE INDEX uptime_buckets_ip_idx ON uptime_buckets (ip, bucket_start);
CREATE TABLE uptime_buckets_default PARTITION OF uptime_buckets DEFAULT WITH (fillfactor = 50);

-- Earnings ----------------------------------------------------------------------------------

-- Idempotency of credits.
-- A unique constraint on a partitioned table must contain the partition key, so UNIQUE
-- (idempotency_key) cannot live on `earnings`, and UNIQUE (idempotency_key, accrued_at) would
-- let a retry that computes another accrued_at pay twice. The keys therefore live in this
-- unpartitioned table: a writer inserts the keys first (ON CONFLICT DO NOTHING RETURNING),
-- then the entries of the keys that were new, in the same transaction. The foreign key from
-- earnings makes an entry without its key impossible; (entry_id, accrued_at) finds the entry
-- of a key through the primary key of its partition.
-- entry_id is unique here since earnings' own primary key must include accrued_at: this is
-- what keeps an entry id taken once across every partition. user_id lets deleting a user
-- delete its keys (and, through the cascade from the key, its entries).
CREATE TABLE earnings_keys (
    idempotency_key text        PRIMARY KEY CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    entry_id        short_id    NOT NULL CONSTRAINT earnings_keys_entry_id_key UNIQUE,
    accrued_at      timestamptz NOT NULL,
    user_id         short_id    NOT NULL REFERENCES users (id) ON DELETE CASCADE
);

-- One credit. accrued_at is the time the points belong to (the bucket's start for uptime and
-- referral credits, the award time otherwise): aggregations by period and by epoch use it.
CREATE TABLE earnings (
    id              short_id    NOT NULL,
    user_id         short_id    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source          text        NOT NULL
                                CHECK (source IN ('uptime', 'referral', 'milestone', 'network',
                                                  'adjustment')),
    amount          bigint      NOT NULL,
    idempotency_key text        NOT NULL
                                REFERENCES earnings_keys (idempotency_key) ON DELETE CASCADE,
    accrued_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    device_id       uuid,        -- no foreign key: a credit outlives a deleted device
    ip              inet,
    bucket_start    timestamptz,
    referee_id      short_id,
    referral_level  smallint     CHECK (referral_level BETWEEN 1 AND 3),
    PRIMARY KEY (id, accrued_at),
    CONSTRAINT earnings_only_adjustments_negative CHECK (amount >= 0 OR source = 'adjustment'),
    CONSTRAINT earnings_referral_level
        CHECK ((source = 'referral') = (referral_level IS NOT NULL)),
    CONSTRAINT earnings_referral_referee CHECK (source <> 'referral' OR referee_id IS NOT NULL)
) PARTITION BY RANGE (accrued_at);
CREATE INDEX earnings_user_idx ON earnings (user_id, accrued_at);
CREATE INDEX earnings_device_idx ON earnings (device_id, accrued_at) WHERE device_id IS NOT NULL;
CREATE INDEX earnings_ip_idx ON earnings (ip, accrued_at) WHERE ip IS NOT NULL;
CREATE INDEX earnings_bucket_idx ON earnings (bucket_start) WHERE bucket_start IS NOT NULL;
CREATE TABLE earnings_default PARTITION OF earnings DEFAULT;

-- Referrals ---------------------------------------------------------------------------------

-- One row per (referee, level): level 1 is the direct referrer, 2 and 3 are theirs.
CREATE TABLE referrals (
    referee_id  short_id    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    level       smallint    NOT NULL CHECK (level BETWEEN 1 AND 3),
    referrer_id short_id    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status      text        NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'active', 'qualified')),
    code        text        NOT NULL,            -- the referral code used at sign-up
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (referee_id, level),
    CONSTRAINT referrals_pair_key UNIQUE (referrer_id, referee_id),
    CONSTRAINT referrals_not_self CHECK (referrer_id <> referee_id)
);
CREATE INDEX referrals_referrer_idx ON referrals (referrer_id, level, created_at);

-- Notifications -----------------------------------------------------------------------------

CREATE TABLE notifications (
    id         short_id    PRIMARY KEY,
    user_id    short_id    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type       text        NOT NULL CHECK (type IN (
                   'device_online', 'device_offline', 'earnings_credited', 'referral_joined',
                   'referral_qualified', 'milestone_reached', 'epoch_settled', 'security',
                   'announcement')),
    priority   text        NOT NULL DEFAULT 'normal' CHECK (priority IN ('low', 'normal', 'high')),
    payload    jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    created_at timestamptz NOT NULL,
    read_at    timestamptz
);
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at, id);
CREATE INDEX notifications_unread_idx ON notifications (user_id) WHERE read_at IS NULL;

-- Epochs ------------------------------------------------------------------------------------

-- Fixed-length settlement periods; totals are frozen when the epoch closes.
CREATE TABLE epochs (
    number         bigint      PRIMARY KEY CHECK (number >= 0),
    name           text        NOT NULL,
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    status         text        NOT NULL DEFAULT 'open'
                               CHECK (status IN ('open', 'closing', 'settled')),
    points         bigint,
    uptime_seconds bigint      CHECK (uptime_seconds >= 0),
    users          integer     CHECK (users >= 0),
    CONSTRAINT epochs_ends_after_start CHECK (ends_at > starts_at),
    CONSTRAINT epochs_totals_whole
        CHECK (num_nulls(points, uptime_seconds, users) IN (0, 3)),
    CONSTRAINT epochs_no_overlap EXCLUDE USING gist (tstzrange(starts_at, ends_at) WITH &&)
);

-- Administration ----------------------------------------------------------------------------

CREATE TABLE feature_flags (
    name        text        PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_.-]*$'),
    enabled     boolean     NOT NULL DEFAULT false,
    value       jsonb,
    description text        NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  short_id    REFERENCES users (id) ON DELETE SET NULL
);

-- Bans of a user, a device or a network (one address is a /32 or a /128).
CREATE TABLE bans (
    id         short_id    PRIMARY KEY,
    user_id    short_id    REFERENCES users (id) ON DELETE CASCADE,
    device_id  uuid        REFERENCES devices (id) ON DELETE CASCADE,
    network    cidr,
    reason     text        NOT NULL DEFAULT '',
    created_by short_id    REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    lifted_at  timestamptz,
    CONSTRAINT bans_one_subject CHECK (num_nonnulls(user_id, device_id, network) = 1)
);
CREATE INDEX bans_network_idx ON bans USING gist (network inet_ops) WHERE network IS NOT NULL;
CREATE INDEX bans_user_idx ON bans (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX bans_device_idx ON bans (device_id) WHERE device_id IS NOT NULL;

-- Append-only record of what administrators did; the row stays if the account goes.
CREATE TABLE admin_audit_log (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_id    short_id    REFERENCES users (id) ON DELETE SET NULL,
    action      text        NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.]*$'),
    target_type text,
    target_id   text,
    details     jsonb       NOT NULL DEFAULT '{}',
    ip          inet,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX admin_audit_log_at_idx ON admin_audit_log (at);
CREATE INDEX admin_audit_log_actor_idx ON admin_audit_log (actor_id, at) WHERE actor_id IS NOT NULL;

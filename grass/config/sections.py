"""The configuration tree: its value types, its sections and their defaults.

Sections listed in ``RELOADABLE`` may change on SIGHUP; the rest need a restart
(``reload_changes``).
"""

from __future__ import annotations

import enum
from typing import Any, NewType

import attrs

Port = NewType("Port", int)
Seconds = NewType("Seconds", float)
Count = NewType("Count", int)
Fraction = NewType("Fraction", float)


@attrs.frozen
class Secret:
    """A value that never shows itself in a repr, a log line or ``config show``."""

    value: str = attrs.field(repr=False)

    def reveal(self) -> str:
        return self.value

    def __str__(self) -> str:
        return "********" if self.value else ""

    def __bool__(self) -> bool:
        return bool(self.value)


class StorageBackend(enum.StrEnum):
    MEMORY = "memory"
    POSTGRES = "postgres"


class LedgerBackend(enum.StrEnum):
    MEMORY = "memory"
    POSTGRES = "postgres"
    MOCKCHAIN = "mockchain"
    WEB3 = "web3"


class LogLevel(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogFormat(enum.StrEnum):
    AUTO = "auto"  # JSON when stderr is not a terminal, readable when it is
    JSON = "json"
    CONSOLE = "console"


@attrs.frozen(kw_only=True)
class ServerConfig:
    http_host: str = "0.0.0.0"
    http_port: Port = Port(8000)
    node_host: str = "0.0.0.0"
    node_port: Port = Port(4650)
    #: Public "host:port" handed to v5 clients at check-in; empty: derived from node_host/port.
    node_public_address: str = ""
    grace_period: Seconds = Seconds(10.0)
    tls_cert: str = ""
    tls_key: str = ""
    instance_id: str = ""  # empty: a random id per process


@attrs.frozen(kw_only=True)
class NodeConfig:
    connect_timeout: Seconds = Seconds(10.0)
    auth_timeout: Seconds = Seconds(30.0)
    heartbeat_timeout: Seconds = Seconds(180.0)
    max_message_size: Count = Count(64 * 1024)
    #: Frames one message may come in (fragments; empty ones count).
    max_message_fragments: Count = Count(128)
    send_queue_size: Count = Count(32)
    #: Sockets whose upgrade is not answered yet: in all, and per source address (IPv6 per
    #: /64; not counted for http.trusted_proxies). Past them the oldest is shed, or the new
    #: one refused.
    max_pending_connections: Count = Count(2048)
    max_pending_per_address: Count = Count(32)
    #: Node sockets this process holds at most; 0: its descriptor limit (RLIMIT_NOFILE) less
    #: descriptor_reserve (the HTTP server's, PostgreSQL's, Redis's and files').
    max_connections: Count = Count(0)
    descriptor_reserve: Count = Count(1024)
    #: Accept a bare user id as a node's proof (Grass v4's AUTH ``user_id``, a check-in's
    #: ``userId``). Anyone who learns a user id can then connect nodes under it: off by
    #: default; nodes send a node key (POST /api/v1/me/node-keys) in its place.
    allow_legacy_auth: bool = False
    allowed_extension_ids: tuple[str, ...] = ()
    checkin_token_ttl: Seconds = Seconds(300.0)
    uptime_flush_interval: Seconds = Seconds(5.0)
    #: How often the devices this instance holds are published to the presence map (joins and
    #: leaves), and fully refreshed (entries expire after 3 refresh intervals).
    presence_sync_interval: Seconds = Seconds(1.0)
    presence_refresh_interval: Seconds = Seconds(30.0)
    #: Bans reach every instance at once through pub/sub; this reload is the safety net.
    ban_reload_interval: Seconds = Seconds(60.0)


@attrs.frozen(kw_only=True)
class StorageConfig:
    backend: StorageBackend = StorageBackend.MEMORY
    postgres_dsn: Secret = Secret("")
    postgres_replica_dsn: Secret = Secret("")
    pool_min_size: Count = Count(2)
    pool_max_size: Count = Count(10)


@attrs.frozen(kw_only=True)
class RedisConfig:
    url: Secret = Secret("")


@attrs.frozen(kw_only=True)
class LedgerConfig:
    backend: LedgerBackend = LedgerBackend.MEMORY
    mockchain_path: str = "var/mockchain"
    mockchain_block_time: Seconds = Seconds(2.0)
    rpc_url: str = ""
    contract_address: str = ""
    #: The block the distributor was deployed in (printed by `grass ledger deploy`): event logs
    #: are read from there. 0: found once by searching the chain (needs a node with history).
    contract_block: Count = Count(0)
    private_key: Secret = Secret("")
    keystore_path: str = ""
    keystore_password: Secret = Secret("")
    confirmations: Count = Count(2)
    #: Seconds between two looks at the chain while the web3 writer waits for a block.
    poll_interval: Seconds = Seconds(1.0)
    #: Seconds a wallet-link nonce (POST /api/v1/me/wallet/nonce) stays usable.
    wallet_nonce_ttl: Seconds = Seconds(600.0)


@attrs.frozen(kw_only=True)
class SecretsConfig:
    #: Signs check-in tokens; empty: a random key per process (tokens die with it).
    token_key: Secret = Secret("")


@attrs.frozen(kw_only=True)
class LimitsConfig:
    #: Devices a user may have active at once: connected now, or seen within
    #: ``device_active_window`` (stored rows of devices gone longer ago do not count).
    max_devices_per_user: Count = Count(100)
    device_active_window: Seconds = Seconds(3600.0)
    #: Devices a user may have stored, active or not: a new device id beyond it is refused
    #: (the active cap alone let a node key store new device ids without end).
    max_stored_devices_per_user: Count = Count(1000)
    max_connections_per_ip: Count = Count(25)
    min_network_score: Fraction = Fraction(0.0)
    auth_requests_per_minute: Count = Count(20)
    api_requests_per_minute: Count = Count(600)


class MailTransport(enum.StrEnum):
    LOG = "log"  # write each mail to the log (development; nothing leaves the machine)
    SMTP = "smtp"


@attrs.frozen(kw_only=True)
class HttpConfig:
    #: Web origins allowed to call the API from a browser (CORS), e.g. https://app.example.
    cors_origins: tuple[str, ...] = ()
    #: Where users open links sent by mail (verification, password reset).
    public_url: str = "http://localhost:8000"
    #: Proxies (CIDR ranges) whose X-Forwarded-For is believed: the client address of rate
    #: limits, lockouts, logs and check-in tokens. Empty: the socket peer is the client.
    trusted_proxies: tuple[str, ...] = ()
    #: Events kept per user for live dashboard sockets that reconnect (?since=), and how long
    #: a user's kept events outlive the last one.
    live_replay_events: Count = Count(100)
    live_replay_seconds: Seconds = Seconds(3600.0)
    #: How often a live socket checks that its session or API key is still valid (revocations
    #: close it at once through pub/sub; this catches a lost message).
    live_recheck_interval: Seconds = Seconds(60.0)


@attrs.frozen(kw_only=True)
class AccountsConfig:
    session_ttl: Seconds = Seconds(30 * 24 * 3600.0)
    verify_token_ttl: Seconds = Seconds(48 * 3600.0)
    reset_token_ttl: Seconds = Seconds(3600.0)
    #: Failed logins of one account before it is locked for ``lockout_seconds``.
    max_failures_per_account: Count = Count(5)
    #: Failed logins from one IP (any account) before that IP is locked out.
    max_failures_per_ip: Count = Count(20)
    #: The window in which failures are counted, and how long a lockout lasts.
    lockout_seconds: Seconds = Seconds(900.0)
    #: argon2id cost: defaults of argon2-cffi (RFC 9106 low-memory profile).
    argon2_time_cost: Count = Count(3)
    argon2_memory_kib: Count = Count(65536)
    max_api_keys: Count = Count(20)
    max_node_keys: Count = Count(20)
    #: Verified users with one of these emails become administrators when they log in.
    admin_emails: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class MailConfig:
    transport: MailTransport = MailTransport.LOG
    sender: str = "grass <no-reply@localhost>"
    smtp_host: str = "localhost"
    smtp_port: Port = Port(587)
    smtp_username: str = ""
    smtp_password: Secret = Secret("")
    smtp_starttls: bool = True
    smtp_timeout: Seconds = Seconds(20.0)
    #: Delivery attempts per mail before it is marked failed; retries back off exponentially.
    max_attempts: Count = Count(8)
    retry_base: Seconds = Seconds(30.0)
    poll_interval: Seconds = Seconds(5.0)


@attrs.frozen(kw_only=True)
class RatesConfig:
    """architecture §5. Amounts are integer micro-points (1 point = 1 000 000)."""

    base_rate: Count = Count(1_000_000)  # per hour at score 100
    multiplier_extension: Fraction = Fraction(1.0)
    multiplier_community: Fraction = Fraction(1.25)
    multiplier_desktop: Fraction = Fraction(2.0)
    multiplier_android: Fraction = Fraction(1.0)
    referral_level1: Fraction = Fraction(0.20)
    referral_level2: Fraction = Fraction(0.10)
    referral_level3: Fraction = Fraction(0.05)
    milestone_hours: Count = Count(100)
    milestone_referee_bonus: Count = Count(5_000_000_000)
    milestone_referrer_bonus: Count = Count(2_500_000_000)
    bucket_seconds: Count = Count(3600)
    epoch_seconds: Count = Count(7 * 24 * 3600)
    #: Unix time at which epoch 0 starts (default 2024-01-01T00:00:00Z, a Monday).
    epoch_genesis: Count = Count(1_704_067_200)
    #: "name:qualified referrals" from the lowest rank up; a user holds the highest it reaches.
    referral_ranks: tuple[str, ...] = ("Bronze:0", "Silver:5", "Gold:25", "Platinum:100")


@attrs.frozen(kw_only=True)
class ScoreConfig:
    """The network score (docs/score.md)."""

    #: Datacenter and proxy ranges: a device on one of them has IP quality 0, so score 0.
    datacenter_cidrs: tuple[str, ...] = ()
    #: How often every recently active device is scored again (devices are also scored at
    #: connect).
    interval: Seconds = Seconds(900.0)
    #: A device refused at the gate for its score is scored again at most this often, when it
    #: tries to connect (its score recovers as the window slides: docs/score.md).
    recheck_interval: Seconds = Seconds(60.0)
    #: The trailing window availability, stability and latency are measured over.
    window: Seconds = Seconds(24 * 3600.0)
    #: Online this share of the window (or more) is availability 100.
    full_availability: Fraction = Fraction(0.95)
    #: Reconnects per window that cost nothing, and what each further one costs.
    free_reconnects: Count = Count(1)
    reconnect_penalty: Count = Count(10)
    #: Mean round trip (ms) at or below which latency is 100, at or above which it is 0.
    good_rtt_ms: Count = Count(150)
    bad_rtt_ms: Count = Count(1000)
    #: What each further device on one IP takes off the IP's quality.
    crowd_penalty: Count = Count(10)
    #: The weights of availability, stability and latency in the score.
    weight_availability: Count = Count(40)
    weight_stability: Count = Count(30)
    weight_latency: Count = Count(30)


@attrs.frozen(kw_only=True)
class CloserConfig:
    """The bucket closer (a singleton job)."""

    #: How often the job looks for buckets to close and late uptime to pay.
    interval: Seconds = Seconds(60.0)
    #: How long after a bucket ends it is closed: uptime still in sessions and flushes must
    #: be written first (anything later is paid by the correction pass).
    delay: Seconds = Seconds(600.0)
    #: How long after a bucket ends late uptime in it is still paid (by a correction
    #: revision); later uptime is reported (log and metric), not paid: docs/score.md.
    correction_window: Seconds = Seconds(3 * 24 * 3600.0)


@attrs.frozen(kw_only=True)
class LoggingConfig:
    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.AUTO


@attrs.frozen(kw_only=True)
class Config:
    server: ServerConfig = ServerConfig()
    node: NodeConfig = NodeConfig()
    storage: StorageConfig = StorageConfig()
    redis: RedisConfig = RedisConfig()
    ledger: LedgerConfig = LedgerConfig()
    secrets: SecretsConfig = SecretsConfig()
    limits: LimitsConfig = LimitsConfig()
    rates: RatesConfig = RatesConfig()
    score: ScoreConfig = ScoreConfig()
    closer: CloserConfig = CloserConfig()
    logging: LoggingConfig = LoggingConfig()
    http: HttpConfig = HttpConfig()
    accounts: AccountsConfig = AccountsConfig()
    mail: MailConfig = MailConfig()
    features: dict[str, bool] = attrs.field(factory=dict)


SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "node": NodeConfig,
    "storage": StorageConfig,
    "redis": RedisConfig,
    "ledger": LedgerConfig,
    "secrets": SecretsConfig,
    "limits": LimitsConfig,
    "rates": RatesConfig,
    "score": ScoreConfig,
    "closer": CloserConfig,
    "logging": LoggingConfig,
    "http": HttpConfig,
    "accounts": AccountsConfig,
    "mail": MailConfig,
}
RELOADABLE = ("limits", "rates", "logging", "features")


def reload_changes(old: Config, new: Config) -> tuple[Config, list[str]]:
    """The config to run with after a reload, and the restart-only sections that changed.

    Only the reloadable sections are taken from ``new``; the others keep their running values.
    """
    ignored = [
        name
        for name in SECTIONS
        if name not in RELOADABLE and getattr(old, name) != getattr(new, name)
    ]
    applied = attrs.evolve(old, **{name: getattr(new, name) for name in RELOADABLE})
    return applied, ignored

"""The configuration tree, its sources and its validation.

Sources, lowest precedence first: built-in defaults, an optional TOML file (``--config`` or
``GRASS_CONFIG``), then ``GRASS_*`` environment variables. A variable names a section and a key:
``GRASS_SERVER_HTTP_PORT=8080`` sets ``server.http_port``. A few short forms exist for the settings
operators touch most (see ``ALIASES``): ``GRASS_STORAGE``, ``GRASS_LEDGER``, ``GRASS_REDIS_URL``.
Two ``GRASS_*`` variables are not settings and are left alone: ``GRASS_CONFIG`` and
``GRASS_NODE_KEY`` (the node key of ``grass node``); any other unknown one is a problem.

Every problem is collected before anything is reported, so one run names every bad key and why.
Sections listed in ``RELOADABLE`` may change on SIGHUP; the rest need a restart.
"""

from __future__ import annotations

import enum
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NewType

import attrs
import cattrs

from grass.errors import ConfigError

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


RELOADABLE = ("limits", "rates", "logging", "features")
ALIASES = {
    "GRASS_STORAGE": ("storage", "backend"),
    "GRASS_LEDGER": ("ledger", "backend"),
    "GRASS_POSTGRES_DSN": ("storage", "postgres_dsn"),
}
#: GRASS_* variables that are not settings: the config file's path, and the node key of the
#: reference node client (``grass node``; an argument would show it in ps and shell history).
_NOT_SETTINGS = {"GRASS_CONFIG", "GRASS_NODE_KEY"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _structure_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {value!r}")


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected an integer, got {value!r}")
    try:
        return int(value.replace("_", "") if isinstance(value, str) else value)
    except ValueError:
        raise ValueError(f"expected an integer, got {value!r}") from None


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None


def _port(value: Any, _: Any) -> Port:
    port = _as_int(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"expected a port number 0-65535, got {port}")
    return Port(port)


def _seconds(value: Any, _: Any) -> Seconds:
    seconds = _as_float(value)
    if not seconds > 0:
        raise ValueError(f"expected a positive number of seconds, got {value!r}")
    return Seconds(seconds)


def _count(value: Any, _: Any) -> Count:
    count = _as_int(value)
    if count < 0:
        raise ValueError(f"expected a non-negative integer, got {count}")
    return Count(count)


def _fraction(value: Any, _: Any) -> Fraction:
    number = _as_float(value)
    if number < 0:
        raise ValueError(f"expected a non-negative number, got {value!r}")
    return Fraction(number)


def _string(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _strings(value: Any, _: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"expected a list of strings or a comma-separated string, got {value!r}")


def _secret(value: Any, _: Any) -> Secret:
    return value if isinstance(value, Secret) else Secret(_string(value, str))


def _enum(value: Any, cls: type[enum.Enum]) -> enum.Enum:
    try:
        return cls(value.lower() if isinstance(value, str) else value)
    except ValueError:
        choices = ", ".join(str(m.value) for m in cls)
        raise ValueError(f"expected one of {choices}, got {value!r}") from None


def _features(value: Any, _: Any) -> dict[str, bool]:
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a table of flag = true|false, got {value!r}")
    return {str(k): _structure_bool(v, bool) for k, v in value.items()}


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(str, _string)
    for choice in (StorageBackend, LedgerBackend, LogLevel, LogFormat, MailTransport):
        conv.register_structure_hook(choice, _enum)  # before str's hook: they are str subclasses
    conv.register_structure_hook(Port, _port)
    conv.register_structure_hook(Seconds, _seconds)
    conv.register_structure_hook(Count, _count)
    conv.register_structure_hook(Fraction, _fraction)
    conv.register_structure_hook_func(lambda t: t == tuple[str, ...], _strings)
    conv.register_structure_hook(Secret, _secret)
    conv.register_structure_hook_func(lambda t: t == dict[str, bool], _features)
    conv.register_unstructure_hook(Secret, str)
    conv.register_unstructure_hook(tuple, list)
    return conv


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
_converter = _make_converter()


def _env_settings(
    environ: Mapping[str, str], problems: list[str], origin: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Turn ``GRASS_*`` variables into a nested dict; unknown ones are problems, not ignored.

    ``origin`` learns which variable set each key, so a message can name it.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, value in environ.items():
        if not name.startswith("GRASS_") or name in _NOT_SETTINGS:
            continue
        if name.startswith("GRASS_TEST_"):
            continue  # the test suite's own variables
        if name in ALIASES:
            section, key = ALIASES[name]
        elif name.startswith("GRASS_FEATURES_"):
            out.setdefault("features", {})[name.removeprefix("GRASS_FEATURES_").lower()] = value
            origin["features"] = name
            continue
        else:
            rest = name.removeprefix("GRASS_").lower()
            section = next((s for s in SECTIONS if rest.startswith(s + "_")), "")
            key = rest.removeprefix(section + "_")
            if not section or key not in attrs.fields_dict(SECTIONS[section]):
                problems.append(f"{name}: unknown setting")
                continue
        out.setdefault(section, {})[key] = value
        origin[f"{section}.{key}"] = name
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _describe(error: cattrs.BaseValidationError, sources: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for line in cattrs.transform_error(error, path="$", format_exception=_format):
        # "expected an integer, got 'x' @ $.server.http_port" -> "server.http_port: expected ..."
        message, _, path = line.rpartition(" @ ")
        key = path.removeprefix("$").removeprefix(".")
        if message.startswith("extra fields found"):
            names = message.partition("(")[2].rstrip(")").split(", ")
            problems.extend(f"{key + '.' if key else ''}{n}: unknown setting" for n in names)
            continue
        where = sources.get(key)
        problems.append(f"{key}{f' (from {where})' if where else ''}: {message}")
    return problems


def _format(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, ValueError) and not isinstance(exc, cattrs.BaseValidationError):
        return str(exc)
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"extra fields found ({', '.join(sorted(exc.extra_fields))})"
    if isinstance(exc, TypeError | AttributeError) and attrs.has(type_):
        return "expected a table of settings"
    return cattrs.v.format_exception(exc, type_)


def _file_sources(file_data: Mapping[str, Any], path: str | None) -> dict[str, str]:
    return {
        f"{section}.{key}": str(path)
        for section, values in file_data.items()
        if isinstance(values, Mapping)
        for key in values
    }


def load_config(
    path: str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Config, str | None]:
    """Load and validate; returns the config and the file it read. Raises ConfigError."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("GRASS_CONFIG") or None
    problems: list[str] = []
    file_data: dict[str, Any] = {}
    if path:
        try:
            file_data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            problems.append(f"{path}: cannot read the config file: {exc.strerror}")
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"{path}: not valid TOML: {exc}")
    origin = _file_sources(file_data, path)
    env_data = _env_settings(environ, problems, origin)
    raw = _merge(file_data, env_data)
    config = None
    try:
        config = _converter.structure(raw, Config)
    except cattrs.BaseValidationError as exc:
        problems.extend(_describe(exc, origin))
    if config is not None:
        problems.extend(_cross_checks(config))
    if problems or config is None:
        raise ConfigError(problems)
    return config, path


def _cross_checks(config: Config) -> list[str]:
    problems: list[str] = []
    if config.storage.backend is StorageBackend.POSTGRES and not config.storage.postgres_dsn:
        problems.append("storage.postgres_dsn: required when storage.backend is postgres")
    if config.ledger.backend is LedgerBackend.POSTGRES and (
        config.storage.backend is not StorageBackend.POSTGRES
    ):
        problems.append("ledger.backend: postgres needs storage.backend = postgres")
    if config.ledger.backend is LedgerBackend.WEB3:
        if not config.ledger.rpc_url:
            problems.append("ledger.rpc_url: required when ledger.backend is web3")
        if not (config.ledger.private_key or config.ledger.keystore_path):
            problems.append("ledger.private_key: web3 needs a private key or a keystore_path")
        if not config.ledger.contract_address:
            problems.append(
                "ledger.contract_address: required when ledger.backend is web3"
                " (deploy one with `grass ledger deploy`)"
            )
    if bool(config.server.tls_cert) != bool(config.server.tls_key):
        problems.append("server.tls_cert, server.tls_key: give both or neither")
    if config.storage.pool_min_size > config.storage.pool_max_size:
        problems.append("storage.pool_min_size: larger than storage.pool_max_size")
    if config.limits.max_stored_devices_per_user < config.limits.max_devices_per_user:
        problems.append(
            "limits.max_stored_devices_per_user: smaller than limits.max_devices_per_user"
        )
    if config.rates.bucket_seconds < 1 or config.rates.epoch_seconds < config.rates.bucket_seconds:
        problems.append("rates.epoch_seconds: must be at least one bucket long")
    elif config.rates.epoch_seconds % config.rates.bucket_seconds:
        problems.append("rates.epoch_seconds: must be a whole number of buckets")
    problems.extend(_engine_checks(config))
    return problems


def _engine_checks(config: Config) -> list[str]:
    # Imported here: the domain imports nothing from config, and config stays importable alone.
    from grass.domain.ranks import InvalidRanks, parse_ranks
    from grass.domain.scoring import InvalidCidr, InvalidScoreParams, parse_cidrs, score_params

    problems: list[str] = []
    try:
        parse_cidrs(config.score.datacenter_cidrs)
    except InvalidCidr as exc:
        problems.append(f"score.datacenter_cidrs: {exc}")
    try:
        score_params(config.score)
    except InvalidScoreParams as exc:
        problems.append(f"score: {exc}")
    if config.closer.correction_window < config.closer.delay + config.rates.bucket_seconds:
        problems.append("closer.correction_window: must be at least closer.delay plus one bucket")
    try:
        parse_ranks(config.rates.referral_ranks)
    except InvalidRanks as exc:
        problems.append(f"rates.referral_ranks: {exc}")
    if config.rates.epoch_genesis % config.rates.bucket_seconds:
        problems.append("rates.epoch_genesis: must fall on a bucket boundary")
    problems.extend(_http_checks(config))
    return problems


def _http_checks(config: Config) -> list[str]:
    from grass.domain.addresses import parse_networks

    try:
        parse_networks(config.http.trusted_proxies)
    except ValueError as exc:
        return [f"http.trusted_proxies: {exc}"]
    return []


def _mask_url(url: str) -> str:
    """Show where a DSN points without its password."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:********@{host}" if ":" in creds else f"{scheme}://{user}@{host}"


def show(config: Config) -> dict[str, Any]:
    """The effective config as plain data, secrets masked (URLs keep their host)."""
    data: dict[str, Any] = _converter.unstructure(config)
    for section, cls in SECTIONS.items():
        for field in attrs.fields(cls):
            value = getattr(getattr(config, section), field.name)
            if isinstance(value, Secret) and value and "://" in value.reveal():
                data[section][field.name] = _mask_url(value.reveal())
    return data


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

"""Config: every key from the environment and from a file, precedence, messages, masking, reload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from grass.config import (
    ALIASES,
    RELOADABLE,
    SECTIONS,
    Config,
    LedgerBackend,
    Secret,
    StorageBackend,
    load_config,
    reload_changes,
    show,
)
from grass.errors import ConfigError

# A valid, non-default value for every key, as text (the form an environment variable has).
SAMPLE: dict[str, dict[str, Any]] = {
    "server": {
        "http_host": "127.0.0.2",
        "http_port": 8081,
        "node_host": "127.0.0.3",
        "node_port": 4651,
        "node_public_address": "nodes.example:443",
        "grace_period": 3.5,
        "tls_cert": "/tmp/cert.pem",
        "tls_key": "/tmp/key.pem",
        "instance_id": "i-1",
    },
    "node": {
        "connect_timeout": 4.0,
        "auth_timeout": 5.0,
        "heartbeat_timeout": 90.0,
        "max_message_size": 1024,
        "max_message_fragments": 16,
        "send_queue_size": 8,
        "max_pending_connections": 100,
        "max_pending_per_address": 4,
        "max_connections": 5000,
        "descriptor_reserve": 200,
        "allow_legacy_auth": True,
        "allowed_extension_ids": ["abc", "def"],
        "checkin_token_ttl": 60.0,
        "uptime_flush_interval": 1.5,
        "presence_sync_interval": 2.0,
        "presence_refresh_interval": 20.0,
        "ban_reload_interval": 30.0,
    },
    "storage": {
        "backend": "postgres",
        "postgres_dsn": "postgresql://grass:pw@db:5432/grass",
        "postgres_replica_dsn": "postgresql://grass:pw@replica:5432/grass",
        "pool_min_size": 1,
        "pool_max_size": 4,
    },
    "redis": {"url": "redis://:pw@cache:6379/1"},
    "ledger": {
        "backend": "postgres",
        "mockchain_path": "/tmp/chain",
        "mockchain_block_time": 0.5,
        "rpc_url": "http://127.0.0.1:8545",
        "contract_address": "0x" + "ab" * 20,
        "contract_block": 1234,
        "private_key": "0x" + "11" * 32,
        "keystore_path": "/tmp/keystore.json",
        "keystore_password": "hunter2",
        "confirmations": 3,
        "poll_interval": 0.25,
        "wallet_nonce_ttl": 120.0,
    },
    "secrets": {"token_key": "s3cret-key"},
    "limits": {
        "max_devices_per_user": 7,
        "device_active_window": 600.0,
        "max_stored_devices_per_user": 700,
        "max_connections_per_ip": 9,
        "min_network_score": 12.5,
        "auth_requests_per_minute": 5,
        "api_requests_per_minute": 50,
    },
    "rates": {
        "base_rate": 2_000_000,
        "multiplier_extension": 1.5,
        "multiplier_community": 1.75,
        "multiplier_desktop": 2.5,
        "multiplier_android": 1.1,
        "referral_level1": 0.3,
        "referral_level2": 0.2,
        "referral_level3": 0.1,
        "milestone_hours": 50,
        "milestone_referee_bonus": 1_000,
        "milestone_referrer_bonus": 500,
        "bucket_seconds": 60,
        "epoch_seconds": 600,
        "epoch_genesis": 1_699_999_200,
        "referral_ranks": ["Seed:0", "Sprout:3", "Meadow:10"],
    },
    "score": {
        "datacenter_cidrs": ["10.0.0.0/8", "2001:db8::/32"],
        "interval": 120.0,
        "recheck_interval": 30.0,
        "window": 43_200.0,
        "full_availability": 0.9,
        "free_reconnects": 2,
        "reconnect_penalty": 5,
        "good_rtt_ms": 100,
        "bad_rtt_ms": 800,
        "crowd_penalty": 20,
        "weight_availability": 50,
        "weight_stability": 25,
        "weight_latency": 25,
    },
    "closer": {"interval": 5.0, "delay": 30.0, "correction_window": 86_400.0},
    "logging": {"level": "debug", "format": "json"},
    "http": {
        "cors_origins": ["https://app.example", "https://admin.example"],
        "public_url": "https://grass.example",
        "trusted_proxies": ["10.0.0.0/8", "2001:db8::/32"],
        "live_replay_events": 20,
        "live_replay_seconds": 120.0,
        "live_recheck_interval": 30.0,
    },
    "accounts": {
        "session_ttl": 3600.0,
        "verify_token_ttl": 600.0,
        "reset_token_ttl": 300.0,
        "max_failures_per_account": 3,
        "max_failures_per_ip": 10,
        "lockout_seconds": 60.0,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "max_api_keys": 5,
        "max_node_keys": 3,
        "admin_emails": ["ops@grass.example"],
    },
    "mail": {
        "transport": "smtp",
        "sender": "grass <mail@grass.example>",
        "smtp_host": "smtp.example",
        "smtp_port": 2525,
        "smtp_username": "mailer",
        "smtp_password": "pw",
        "smtp_starttls": False,
        "smtp_timeout": 5.0,
        "max_attempts": 3,
        "retry_base": 2.0,
        "poll_interval": 1.0,
    },
}


def _as_env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def _value(config: Config, section: str, key: str) -> Any:
    value = getattr(getattr(config, section), key)
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, tuple):
        return list(value)
    return value.value if hasattr(value, "value") else value


def test_sample_covers_every_key() -> None:
    for section, cls in SECTIONS.items():
        assert set(SAMPLE[section]) == set(attrs.fields_dict(cls)), section


def test_defaults_need_no_services() -> None:
    config, path = load_config(environ={})
    assert path is None
    assert config.storage.backend is StorageBackend.MEMORY
    assert config.ledger.backend is LedgerBackend.MEMORY
    assert config.server.http_port == 8000
    assert config.server.node_port == 4650
    assert not config.redis.url


def test_mail_to_the_log_beside_a_real_database_is_warned_about() -> None:
    from grass.app import startup_warnings

    assert startup_warnings(load_config(environ={})[0]) == []  # a laptop: the log is the inbox
    postgres = {"GRASS_STORAGE": "postgres", "GRASS_STORAGE_POSTGRES_DSN": "postgresql://db/grass"}
    (warning,) = startup_warnings(load_config(environ=postgres)[0])
    assert "password-reset links are written to the log" in warning
    smtp = postgres | {"GRASS_MAIL_TRANSPORT": "smtp", "GRASS_MAIL_SMTP_HOST": "127.0.0.1"}
    assert startup_warnings(load_config(environ=smtp)[0]) == []


@pytest.mark.parametrize(("section", "key"), [(s, k) for s in SAMPLE for k in SAMPLE[s]])
def test_every_key_from_environment(section: str, key: str) -> None:
    value = SAMPLE[section][key]
    environ = {f"GRASS_{section.upper()}_{key.upper()}": _as_env_text(value)}
    if section == "storage" and key == "backend":
        environ["GRASS_STORAGE_POSTGRES_DSN"] = "postgresql://db/grass"
    if section == "ledger" and key == "backend":
        environ |= {"GRASS_STORAGE": "postgres", "GRASS_POSTGRES_DSN": "postgresql://db/grass"}
    if key in {"tls_cert", "tls_key"}:
        environ |= {"GRASS_SERVER_TLS_CERT": "/c", "GRASS_SERVER_TLS_KEY": "/k"}
        environ[f"GRASS_SERVER_{key.upper()}"] = _as_env_text(value)
    if key == "pool_min_size":
        environ["GRASS_STORAGE_POOL_MAX_SIZE"] = "4"
    if key == "epoch_seconds":
        environ["GRASS_RATES_BUCKET_SECONDS"] = "60"
    config, _ = load_config(environ=environ)
    assert _value(config, section, key) == value


def test_every_key_from_file(tmp_path: Path) -> None:
    import tomli_w

    path = tmp_path / "grass.toml"
    path.write_bytes(tomli_w.dumps({**SAMPLE, "features": {"jobs": True}}).encode())
    config, used = load_config(str(path), environ={})
    assert used == str(path)
    for section, values in SAMPLE.items():
        for key, value in values.items():
            assert _value(config, section, key) == value, f"{section}.{key}"
    assert config.features == {"jobs": True}


def test_environment_wins_over_file(tmp_path: Path) -> None:
    path = tmp_path / "grass.toml"
    path.write_text("[server]\nhttp_port = 9000\nnode_port = 9001\n")
    config, _ = load_config(
        None, environ={"GRASS_CONFIG": str(path), "GRASS_SERVER_HTTP_PORT": "9100"}
    )
    assert config.server.http_port == 9100
    assert config.server.node_port == 9001


def test_aliases() -> None:
    config, _ = load_config(
        environ={
            "GRASS_STORAGE": "postgres",
            "GRASS_POSTGRES_DSN": "postgresql://db/x",
            "GRASS_LEDGER": "postgres",
            "GRASS_REDIS_URL": "redis://127.0.0.1:6379/0",
            "GRASS_FEATURES_JOBS": "yes",
        }
    )
    assert config.storage.backend is StorageBackend.POSTGRES
    assert config.ledger.backend is LedgerBackend.POSTGRES
    assert config.redis.url.reveal() == "redis://127.0.0.1:6379/0"
    assert config.features == {"jobs": True}
    assert set(ALIASES) == {"GRASS_STORAGE", "GRASS_LEDGER", "GRASS_POSTGRES_DSN"}


MESSAGES = [
    (
        {"GRASS_SERVER_HTTP_PORT": "abc"},
        "server.http_port (from GRASS_SERVER_HTTP_PORT): expected an integer, got 'abc'",
    ),
    (
        {"GRASS_SERVER_NODE_PORT": "70000"},
        "server.node_port (from GRASS_SERVER_NODE_PORT): expected a port number 0-65535, got 70000",
    ),
    (
        {"GRASS_NODE_AUTH_TIMEOUT": "0"},
        "node.auth_timeout (from GRASS_NODE_AUTH_TIMEOUT): expected a positive number of seconds, got '0'",
    ),
    (
        {"GRASS_NODE_SEND_QUEUE_SIZE": "-3"},
        "node.send_queue_size (from GRASS_NODE_SEND_QUEUE_SIZE): expected a non-negative integer, got -3",
    ),
    (
        {"GRASS_NODE_ALLOW_LEGACY_AUTH": "maybe"},
        "node.allow_legacy_auth (from GRASS_NODE_ALLOW_LEGACY_AUTH): expected true or false, got 'maybe'",
    ),
    (
        {"GRASS_LIMITS_MIN_NETWORK_SCORE": "-1"},
        "limits.min_network_score (from GRASS_LIMITS_MIN_NETWORK_SCORE): expected a non-negative number, got '-1'",
    ),
    (
        {"GRASS_STORAGE": "mongo"},
        "storage.backend (from GRASS_STORAGE): expected one of memory, postgres, got 'mongo'",
    ),
    (
        {"GRASS_LEDGER_BACKEND": "bank"},
        "ledger.backend (from GRASS_LEDGER_BACKEND): expected one of memory, postgres, mockchain, web3, got 'bank'",
    ),
    (
        {"GRASS_LOGGING_LEVEL": "loud"},
        "logging.level (from GRASS_LOGGING_LEVEL): expected one of debug, info, warning, error, got 'loud'",
    ),
    (
        {"GRASS_FEATURES_JOBS": "perhaps"},
        "features (from GRASS_FEATURES_JOBS): expected true or false, got 'perhaps'",
    ),
    ({"GRASS_SERVR_PORT": "1"}, "GRASS_SERVR_PORT: unknown setting"),
    (
        {"GRASS_STORAGE": "postgres"},
        "storage.postgres_dsn: required when storage.backend is postgres",
    ),
    ({"GRASS_LEDGER": "postgres"}, "ledger.backend: postgres needs storage.backend = postgres"),
    ({"GRASS_LEDGER": "web3"}, "ledger.rpc_url: required when ledger.backend is web3"),
    ({"GRASS_SERVER_TLS_CERT": "/c"}, "server.tls_cert, server.tls_key: give both or neither"),
    (
        {"GRASS_STORAGE_POOL_MIN_SIZE": "20"},
        "storage.pool_min_size: larger than storage.pool_max_size",
    ),
    ({"GRASS_RATES_EPOCH_SECONDS": "10"}, "rates.epoch_seconds: must be at least one bucket long"),
    (
        {"GRASS_LIMITS_MAX_STORED_DEVICES_PER_USER": "99"},
        "limits.max_stored_devices_per_user: smaller than limits.max_devices_per_user",
    ),
]


@pytest.mark.parametrize(("environ", "message"), MESSAGES)
def test_each_validation_message(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ)
    assert message in caught.value.problems


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[server]\nhttp_port = "x"\ncolour = "red"\n[nope]\na = 1\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), environ={"GRASS_NODE_AUTH_TIMEOUT": "-5", "GRASS_BOGUS": "1"})
    problems = caught.value.problems
    assert f"server.http_port (from {path}): expected an integer, got 'x'" in problems
    assert "server.colour: unknown setting" in problems
    assert "nope: unknown setting" in problems
    assert "GRASS_BOGUS: unknown setting" in problems
    assert any(p.startswith("node.auth_timeout") for p in problems)
    assert len(problems) == 5
    assert str(caught.value).startswith("invalid configuration:\n  - ")


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(str(tmp_path / "missing.toml"), environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(bad), environ={})


def test_show_masks_secrets() -> None:
    environ = {
        f"GRASS_{s.upper()}_{k.upper()}": _as_env_text(v)
        for s in SAMPLE
        for k, v in SAMPLE[s].items()
    }
    config, _ = load_config(environ=environ)
    text = json.dumps(show(config))
    for secret in ("pw", "hunter2", "s3cret-key", "11" * 32):
        assert secret not in text
    shown = show(config)
    assert shown["storage"]["postgres_dsn"] == "postgresql://grass:********@db:5432/grass"
    assert shown["redis"]["url"] == "redis://:********@cache:6379/1"
    assert shown["ledger"]["private_key"] == "********"
    assert shown["server"]["http_port"] == 8081
    assert "hunter2" not in repr(config)


def test_reload_takes_only_reloadable_sections() -> None:
    old, _ = load_config(environ={})
    new, _ = load_config(
        environ={
            "GRASS_LOGGING_LEVEL": "debug",
            "GRASS_LIMITS_MAX_DEVICES_PER_USER": "3",
            "GRASS_RATES_BASE_RATE": "5",
            "GRASS_FEATURES_JOBS": "on",
            "GRASS_SERVER_HTTP_PORT": "9999",
        }
    )
    applied, ignored = reload_changes(old, new)
    assert applied.logging.level.value == "debug"
    assert applied.limits.max_devices_per_user == 3
    assert applied.rates.base_rate == 5
    assert applied.features == {"jobs": True}
    assert applied.server.http_port == old.server.http_port
    assert ignored == ["server"]
    assert set(RELOADABLE) == {"limits", "rates", "logging", "features"}


def test_readme_documents_every_key() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [
        f"{section}.{key}"
        for section, cls in SECTIONS.items()
        for key in attrs.fields_dict(cls)
        if f"| `{section}.{key}` |" not in readme
    ]
    assert missing == []

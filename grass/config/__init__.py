"""The configuration: its tree, its sources and its validation (the package's public names).

``sections`` is the tree (value types, sections, defaults, what may change on SIGHUP);
``loading`` reads it from defaults, a TOML file and ``GRASS_*`` variables; ``convert`` checks each
value on the way in and masks secrets on the way out (``show``); ``checks`` finds what is wrong
between settings.
"""

from grass.config.convert import show
from grass.config.loading import ALIASES, load_config
from grass.config.sections import (
    RELOADABLE,
    SECTIONS,
    AccountsConfig,
    CloserConfig,
    Config,
    Count,
    Fraction,
    HttpConfig,
    LedgerBackend,
    LedgerConfig,
    LimitsConfig,
    LogFormat,
    LoggingConfig,
    LogLevel,
    MailConfig,
    MailTransport,
    NodeConfig,
    Port,
    RatesConfig,
    RedisConfig,
    ScoreConfig,
    Seconds,
    Secret,
    SecretsConfig,
    ServerConfig,
    StorageBackend,
    StorageConfig,
    reload_changes,
)

__all__ = [
    "ALIASES",
    "RELOADABLE",
    "SECTIONS",
    "AccountsConfig",
    "CloserConfig",
    "Config",
    "Count",
    "Fraction",
    "HttpConfig",
    "LedgerBackend",
    "LedgerConfig",
    "LimitsConfig",
    "LogFormat",
    "LogLevel",
    "LoggingConfig",
    "MailConfig",
    "MailTransport",
    "NodeConfig",
    "Port",
    "RatesConfig",
    "RedisConfig",
    "ScoreConfig",
    "Seconds",
    "Secret",
    "SecretsConfig",
    "ServerConfig",
    "StorageBackend",
    "StorageConfig",
    "load_config",
    "reload_changes",
    "show",
]

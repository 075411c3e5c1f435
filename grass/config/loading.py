"""Loading the configuration from its sources.

Sources, lowest precedence first: built-in defaults, an optional TOML file (``--config`` or
``GRASS_CONFIG``), then ``GRASS_*`` environment variables. A variable names a section and a key:
``GRASS_SERVER_HTTP_PORT=8080`` sets ``server.http_port``. A few short forms exist for the settings
operators touch most (see ``ALIASES``): ``GRASS_STORAGE``, ``GRASS_LEDGER``, ``GRASS_REDIS_URL``.
Two ``GRASS_*`` variables are not settings and are left alone: ``GRASS_CONFIG`` and
``GRASS_NODE_KEY`` (the node key of ``grass node``); any other unknown one is a problem.

Every problem is collected before anything is reported, so one run names every bad key and why.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs

from grass.config.checks import cross_checks
from grass.config.convert import converter, describe_errors
from grass.config.sections import SECTIONS, Config
from grass.errors import ConfigError

ALIASES = {
    "GRASS_STORAGE": ("storage", "backend"),
    "GRASS_LEDGER": ("ledger", "backend"),
    "GRASS_POSTGRES_DSN": ("storage", "postgres_dsn"),
}
#: GRASS_* variables that are not settings: the config file's path, and the node key of the
#: reference node client (``grass node``; an argument would show it in ps and shell history).
_NOT_SETTINGS = {"GRASS_CONFIG", "GRASS_NODE_KEY"}


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
        config = converter.structure(raw, Config)
    except cattrs.BaseValidationError as exc:
        problems.extend(describe_errors(exc, origin))
    if config is not None:
        problems.extend(cross_checks(config))
    if problems or config is None:
        raise ConfigError(problems)
    return config, path

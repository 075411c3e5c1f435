"""Between raw settings (TOML values, environment text) and the tree, both ways.

``converter`` turns raw data into a ``Config`` and checks every value on the way (ports, positive
seconds, enums, ...); ``describe_errors`` turns what it refuses into one message per key; ``show``
turns a ``Config`` back into plain data with its secrets masked.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs

from grass.config.sections import (
    SECTIONS,
    Config,
    Count,
    Fraction,
    LedgerBackend,
    LogFormat,
    LogLevel,
    MailTransport,
    Port,
    Seconds,
    Secret,
    StorageBackend,
)

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


#: Raw settings (a TOML table, environment text) to a ``Config``, every value checked; and back.
converter = _make_converter()


def describe_errors(error: cattrs.BaseValidationError, sources: Mapping[str, str]) -> list[str]:
    """One message per key the converter refused, ``section.key (from SOURCE): why``; a key
    that is not a setting is an ``unknown setting``. ``sources`` names where each key was set."""
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
    data: dict[str, Any] = converter.unstructure(config)
    for section, cls in SECTIONS.items():
        for field in attrs.fields(cls):
            value = getattr(getattr(config, section), field.name)
            if isinstance(value, Secret) and value and "://" in value.reveal():
                data[section][field.name] = _mask_url(value.reveal())
    return data

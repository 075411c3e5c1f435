"""Structured logging.

JSON lines when stderr is not a terminal, readable lines when it is. Context (a request id, a
connection id, a device) is bound with :func:`bind` for the current task and shows on every line
it logs. Keys that can hold secrets are masked by :func:`_redact`, whatever logs them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog

from grass.config import LogFormat, LoggingConfig

_SECRET_WORDS = ("password", "secret", "token", "authorization", "cookie", "private_key", "dsn")


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(word in key.lower() for word in _SECRET_WORDS):
            event[key] = "********"
    return event


def configure(config: LoggingConfig, *, stream: Any = None) -> None:
    """(Re)configure logging; safe to call again on reload.

    Standard-library loggers (hypercorn, asyncpg, trio-websocket) go through the same
    processors, so every line has one format.
    """
    stream = stream or sys.stderr
    use_json = config.format is LogFormat.JSON or (
        config.format is LogFormat.AUTO and not stream.isatty()
    )
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    level = getattr(logging, config.level.value.upper())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def get(name: str) -> Any:
    return structlog.get_logger(name)


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Bind context for the current task (trio tasks each get their own contextvars copy)."""
    with structlog.contextvars.bound_contextvars(**values):
        yield

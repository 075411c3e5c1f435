"""The error tree's two mappings, ids, and the log format (ids bound, secrets masked)."""

from __future__ import annotations

import io
import json

import pytest

from grass import ids, logs
from grass.config import LogFormat, LoggingConfig, LogLevel
from grass.errors import (
    Conflict,
    Forbidden,
    GrassError,
    IntegrityViolation,
    InvalidInput,
    NotFound,
    ProtocolError,
    RateLimited,
    StorageConflict,
    StorageNotFound,
    StorageUnavailable,
    Unauthenticated,
    Unavailable,
    ValidationFailed,
    http_error,
    ws_error,
)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidInput("bad"), 400, "invalid_input"),
        (
            ValidationFailed("bad", details={"fields": {"email": "required"}}),
            422,
            "validation_failed",
        ),
        (Unauthenticated("who?"), 401, "unauthenticated"),
        (Forbidden("no"), 403, "forbidden"),
        (NotFound("gone"), 404, "not_found"),
        (Conflict("taken"), 409, "conflict"),
        (RateLimited("slow down", retry_after=1.2), 429, "rate_limited"),
        (Unavailable("db down"), 503, "unavailable"),
        (StorageNotFound("no user"), 404, "not_found"),
        (StorageConflict("email taken"), 409, "conflict"),
        (IntegrityViolation("bad ref"), 409, "integrity_violation"),
        (StorageUnavailable("db down"), 503, "unavailable"),
    ],
)
def test_http_mapping(error: GrassError, status: int, code: str) -> None:
    reply = http_error(error)
    assert reply.status == status
    assert reply.body == {
        "error": {"code": code, "message": error.message, "details": error.details}
    }


def test_rate_limited_sets_retry_after() -> None:
    reply = http_error(RateLimited("slow down", retry_after=1.2))
    assert reply.headers == {"Retry-After": "2"}
    assert reply.body["error"]["details"] == {"retry_after": 1.2}


def test_unexpected_errors_are_opaque() -> None:
    reply = http_error(KeyError("internal detail"))
    assert reply.status == 500
    assert reply.body == {"error": {"code": "internal", "message": "internal error", "details": {}}}
    assert http_error(GrassError("secret internals")).body["error"]["message"] == "internal error"


def test_ws_mapping() -> None:
    assert ws_error(ProtocolError("bad frame")).close_code == 1002
    assert ws_error(Unauthenticated("unknown user")).close_code == 1008
    assert ws_error(KeyError("x")) == ws_error(RuntimeError("y"))
    assert ws_error(KeyError("x")).close_code == 1011

    class Soft(ProtocolError):
        code = "unknown_action"
        ws_close_code = None

    soft = ws_error(Soft("no such action"))
    assert soft.close_code is None
    assert soft.message == {"error": {"code": "unknown_action", "message": "no such action"}}
    long = ws_error(ProtocolError("é" * 200))
    assert len(long.reason.encode()) <= 123


def test_ids() -> None:
    made = {ids.short_id() for _ in range(1000)}
    assert len(made) == 1000
    assert all(ids.is_short_id(i) for i in made)
    assert not ids.is_short_id("short")
    assert ids.is_uuid(ids.new_uuid())
    assert not ids.is_uuid("not-a-uuid")
    assert not ids.is_uuid("6F9619FF-8B86-D011-B42D-00C04FC964FF")  # ids are lower-case on the wire


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_logs_bind_context_and_mask_secrets() -> None:
    stream = io.StringIO()
    logs.configure(LoggingConfig(level=LogLevel.DEBUG, format=LogFormat.JSON), stream=stream)
    log = logs.get("test")
    with logs.bound(connection_id="c-1"):
        log.info(
            "auth",
            password="hunter2",
            token="abc",
            user_id="u1",
            postgres_dsn="postgresql://a:b@h/d",
        )
    log.debug("after")
    first, second = _lines(stream)
    assert first["connection_id"] == "c-1"
    assert first["user_id"] == "u1"
    assert first["password"] == first["token"] == first["postgres_dsn"] == "********"
    assert "hunter2" not in stream.getvalue()
    assert "connection_id" not in second
    assert first["level"] == "info"
    assert "timestamp" in first


def test_level_filters_and_stdlib_logs_share_the_format() -> None:
    import logging

    stream = io.StringIO()
    logs.configure(LoggingConfig(level=LogLevel.WARNING, format=LogFormat.JSON), stream=stream)
    logs.get("test").info("hidden")
    logging.getLogger("some.library").warning("library says %s", "hi")
    (line,) = _lines(stream)
    assert line["event"] == "library says hi"
    assert line["logger"] == "some.library"


def test_console_format_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    logs.configure(LoggingConfig(level=LogLevel.INFO, format=LogFormat.AUTO), stream=stream)
    logs.get("test").info("hello", secret="s")
    text = stream.getvalue()
    assert "hello" in text
    assert not text.startswith("{")
    assert "secret" in text
    assert "********" in text


def test_sole_exception_unwraps_groups_of_one_and_keeps_larger_groups():
    from grass.errors import sole_exception

    error = ValueError("x")
    assert sole_exception(ExceptionGroup("a", [ExceptionGroup("b", [error])])) is error
    two = ExceptionGroup("a", [ValueError("x"), KeyError("y")])
    assert sole_exception(two) is two
    nested_two = ExceptionGroup("a", [two])
    assert sole_exception(nested_two) is nested_two

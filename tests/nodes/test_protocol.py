"""The node protocol state machine, on plain strings: shapes, transitions, every error and code."""

from __future__ import annotations

import contextlib
import gc
import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grass.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    ProtocolError,
    Unauthenticated,
    ValidationFailed,
    ws_error,
)
from grass.ids import is_uuid
from grass.nodes import protocol
from grass.nodes.protocol import (
    AlreadyAuthenticated,
    Authenticated,
    AuthIdMismatch,
    BinaryFrame,
    ConnectionClosing,
    DeviceType,
    HttpResponse,
    InvalidAuth,
    InvalidMessage,
    LocalProtocolError,
    MalformedBrowserId,
    MalformedJson,
    NodeConnection,
    NotAuthenticated,
    Ping,
    PongEcho,
    State,
    UnknownAction,
    UnknownDeviceType,
    UnknownRequest,
    new_message_id,
)
from grass.websocket.errors import InvalidUtf8, MessageTooBig

BROWSER_ID = "5f3c2a1e-1b2c-4d5e-8f90-123456789abc"


def auth_result(**changes: Any) -> dict[str, Any]:
    # What the Grass extension sends, extension_id included.
    result = {
        "browser_id": BROWSER_ID,
        "user_id": "2oNpOoz9bB3sTSNqfw8JgQbWZ1x",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0",
        "timestamp": 1_717_000_000,
        "device_type": "extension",
        "version": "4.26.2",
        "extension_id": "ilehaonighjijnmpnagapkhpcdbhclfg",
    }
    result.update(changes)
    return {k: v for k, v in result.items() if v is not ...}


def auth_envelope(conn: NodeConnection, result: Any) -> str:
    request_id = json.loads(conn.auth_request())["id"]
    return json.dumps({"id": request_id, "origin_action": "AUTH", "result": result})


def auth_answer(conn: NodeConnection, **changes: Any) -> str:
    return auth_envelope(conn, auth_result(**changes))


def authenticated() -> NodeConnection:
    conn = NodeConnection()
    conn.receive_text(auth_answer(conn))
    return conn


def ping(id_: str = "7d2c5a5e-9d4b-4b8e-a7a4-2f0f3b0c1d2e") -> str:
    return json.dumps({"id": id_, "version": "1.0.0", "action": "PING", "data": {}})


# -- shapes and transitions ---------------------------------------------------------------------


def test_auth_request_shape() -> None:
    conn = NodeConnection()
    message = json.loads(conn.auth_request())
    assert set(message) == {"id", "version", "action", "data"}
    assert message["version"] == "1.0.0"
    assert message["action"] == "AUTH"
    assert message["data"] == {}
    assert is_uuid(message["id"])
    assert json.loads(conn.auth_request())["id"] == message["id"]  # a resend names the same request
    assert conn.state is State.AWAITING_AUTH


def test_auth_answer_authenticates() -> None:
    conn = NodeConnection()
    event = conn.receive_text(auth_answer(conn))
    assert isinstance(event, Authenticated)
    assert event.result.device_id == BROWSER_ID
    assert event.result.user_id == "2oNpOoz9bB3sTSNqfw8JgQbWZ1x"
    assert event.result.device_type is DeviceType.EXTENSION
    assert event.result.timestamp == 1_717_000_000.0
    assert event.result.version == "4.26.2"
    assert event.result.extension_id == "ilehaonighjijnmpnagapkhpcdbhclfg"
    assert conn.state is State.AUTHENTICATED
    with pytest.raises(LocalProtocolError):
        conn.auth_request()


@pytest.mark.parametrize("device_type", ["extension", "desktop", "community", "android"])
def test_every_device_type(device_type: str) -> None:
    conn = NodeConnection()
    event = conn.receive_text(auth_answer(conn, device_type=device_type, extension_id=...))
    assert isinstance(event, Authenticated)
    assert event.result.device_type == device_type
    assert event.result.extension_id is None


def test_extra_keys_are_tolerated() -> None:
    conn = NodeConnection()
    request_id = json.loads(conn.auth_request())["id"]
    result = auth_result(is_premium=True, os={"name": "linux"}, timestamp=1_717_000_000.25)
    answer = {"id": request_id, "origin_action": "AUTH", "result": result, "sent_at": 5}
    event = conn.receive_text(json.dumps(answer))
    assert isinstance(event, Authenticated)
    assert event.result.timestamp == 1_717_000_000.25
    extra_ping = json.dumps({"id": "p1", "action": "PING", "data": {"x": 1}, "seq": 4})
    assert conn.receive_text(extra_ping) == Ping(id="p1", version=None)
    assert conn.receive_text('{"id":"p2","origin_action":"PONG","rtt":3}') == PongEcho(id="p2")


def test_uppercase_browser_id_is_normalised() -> None:
    conn = NodeConnection()
    event = conn.receive_text(auth_answer(conn, browser_id=BROWSER_ID.upper()))
    assert isinstance(event, Authenticated)
    assert event.result.browser_id == BROWSER_ID


def test_ping_pong_round() -> None:
    conn = authenticated()
    assert conn.receive_text(ping("abc")) == Ping(id="abc", version="1.0.0")
    pongs = [json.loads(conn.pong()) for _ in range(3)]
    for pong in pongs:
        assert set(pong) == {"id", "action", "data"}
        assert pong["action"] == "PONG"
        assert pong["data"] == {}
        assert is_uuid(pong["id"])
    assert len({pong["id"] for pong in pongs}) == 3
    echo = json.dumps({"id": pongs[0]["id"], "origin_action": "PONG"})
    assert conn.receive_text(echo) == PongEcho(id=pongs[0]["id"])
    assert conn.state is State.AUTHENTICATED


def test_http_request_round() -> None:
    conn = authenticated()
    request_id, text = conn.http_request(
        url="https://example.com/", method="POST", headers={"accept": "*/*"}, body=b"\x00hi"
    )
    message = json.loads(text)
    assert message == {
        "id": request_id,
        "action": "HTTP_REQUEST",
        "data": {
            "url": "https://example.com/",
            "method": "POST",
            "headers": {"accept": "*/*"},
            "body": "AGhp",
        },
    }
    assert is_uuid(request_id)
    result = {
        "url": "https://example.com/",
        "status": 200,
        "status_text": "OK",
        "headers": {"content-type": "text/html"},
        "body": "PGh0bWw+",
        "redirected": False,
    }
    answer = json.dumps({"id": request_id, "origin_action": "HTTP_REQUEST", "result": result})
    event = conn.receive_text(answer)
    assert isinstance(event, HttpResponse)
    assert event.result.status == 200
    assert event.result.headers == {"content-type": "text/html"}
    assert event.result.body == b"<html>"
    with pytest.raises(UnknownRequest) as info:  # answered once; a replay is not a result
        conn.receive_text(answer)
    assert info.value.ws_close_code is None
    assert conn.state is State.AUTHENTICATED


def test_http_request_without_body_and_forgotten() -> None:
    conn = authenticated()
    request_id, text = conn.http_request(url="https://example.com/")
    assert json.loads(text)["data"] == {
        "url": "https://example.com/",
        "method": "GET",
        "headers": {},
        "body": None,
    }
    conn.forget_request(request_id)
    answer = {
        "id": request_id,
        "origin_action": "HTTP_REQUEST",
        "result": {"url": "u", "status": 0},
    }
    with pytest.raises(UnknownRequest):
        conn.receive_text(json.dumps(answer))


def test_http_request_needs_authentication() -> None:
    with pytest.raises(LocalProtocolError):
        NodeConnection().http_request(url="https://example.com/")
    conn = authenticated()
    conn.close(1001)
    with pytest.raises(LocalProtocolError):
        conn.http_request(url="https://example.com/")


def test_server_close() -> None:
    conn = authenticated()
    conn.close(1001)
    conn.close(1000)  # the first decision stands
    assert conn.state is State.CLOSING
    assert conn.close_code == 1001
    with pytest.raises(ConnectionClosing) as info:
        conn.receive_text(ping())
    assert info.value.ws_close_code == 1001
    with pytest.raises(ConnectionClosing):
        conn.receive_bytes_as_text(b"{}")
    with pytest.raises(ConnectionClosing):
        conn.receive_binary(b"\x00")


def test_fatal_error_moves_to_closing_and_keeps_its_code() -> None:
    conn = authenticated()
    with pytest.raises(BinaryFrame):
        conn.receive_binary(b"\x00")
    assert (conn.state, conn.close_code) == (State.CLOSING, 1003)
    with pytest.raises(ConnectionClosing) as info:
        conn.receive_text("not even json")
    assert info.value.ws_close_code == 1003


def test_error_message_shape() -> None:
    conn = authenticated()
    with pytest.raises(UnknownAction) as info:
        conn.receive_text('{"id":"m1","action":"DANCE","data":{}}')
    message = json.loads(conn.error_message(info.value))
    assert message["action"] == "ERROR"
    assert is_uuid(message["id"])
    assert message["data"] == {
        "code": "unknown_action",
        "message": "unknown action 'DANCE'",
        "origin_id": "m1",
    }
    assert ws_error(info.value).close_code is None


def test_constructor_checks_size() -> None:
    assert NodeConnection().max_message_size == 64 * 1024
    with pytest.raises(ValueError, match="positive"):
        NodeConnection(max_message_size=0)


def test_injected_ids() -> None:
    ids = iter(["auth-1", "pong-1"])
    conn = NodeConnection(new_id=lambda: next(ids))
    assert json.loads(conn.auth_request())["id"] == "auth-1"
    conn.receive_text(auth_answer(conn))
    assert json.loads(conn.pong())["id"] == "pong-1"


def test_message_ids_are_random_v4_uuids() -> None:
    ids = [new_message_id() for _ in range(1000)]  # crosses several refills of the pool
    assert len(set(ids)) == 1000
    assert all(is_uuid(i) and uuid.UUID(i).version == 4 for i in ids)
    new_message_id.reset()
    assert new_message_id() not in ids


# -- every error and its outcome --------------------------------------------------------------

CLOSES = "closes"

# (name, input builder, error class, close code in AWAITING_AUTH, close code once AUTHENTICATED)
BEFORE_AUTH: list[tuple[str, Any, type[ProtocolError]]] = [
    ("malformed json", lambda c: '{"id": ', MalformedJson),
    ("not an object", lambda c: "[1, 2]", InvalidMessage),
    ("no action", lambda c: '{"id": "x"}', InvalidMessage),
    ("both tags", lambda c: '{"id":"x","action":"PING","origin_action":"PONG"}', InvalidMessage),
    ("unknown action", lambda c: '{"id":"x","action":"DANCE","data":{}}', UnknownAction),
    ("ping before auth", lambda c: ping(), NotAuthenticated),
    ("echo before auth", lambda c: '{"id":"x","origin_action":"PONG"}', NotAuthenticated),
    ("wrong auth id", lambda c: auth_answer(NodeConnection()), AuthIdMismatch),
    ("browser_id not a uuid", lambda c: auth_answer(c, browser_id="my-laptop"), MalformedBrowserId),
    (
        "browser_id without dashes",
        lambda c: auth_answer(c, browser_id=BROWSER_ID.replace("-", "")),
        MalformedBrowserId,
    ),
    ("unknown device type", lambda c: auth_answer(c, device_type="fridge"), UnknownDeviceType),
    ("device type not a string", lambda c: auth_answer(c, device_type=1), UnknownDeviceType),
    ("user_id a number", lambda c: auth_answer(c, user_id=42), InvalidMessage),
    ("user_id missing", lambda c: auth_answer(c, user_id=...), InvalidMessage),
    ("user_id empty", lambda c: auth_answer(c, user_id=""), InvalidAuth),
    ("timestamp a string", lambda c: auth_answer(c, timestamp="now"), InvalidMessage),
    ("timestamp a bool", lambda c: auth_answer(c, timestamp=True), InvalidMessage),
    (
        "timestamp overflows to infinity",
        lambda c: auth_answer(c, timestamp=0).replace('"timestamp": 0', '"timestamp": 1e999'),
        InvalidMessage,
    ),
    ("user_agent too long", lambda c: auth_answer(c, user_agent="a" * 513), InvalidAuth),
    ("version holds NUL", lambda c: auth_answer(c, version="4\u0000"), InvalidAuth),
    ("user_agent holds a newline", lambda c: auth_answer(c, user_agent="a\nb"), InvalidAuth),
    ("nested too deep", lambda c: "[" * 30_000 + "]" * 30_000, MalformedJson),
    ("result not an object", lambda c: auth_envelope(c, [auth_result()]), InvalidMessage),
    ("NaN is not JSON", lambda c: '{"id":"x","action":"PING","version":NaN}', MalformedJson),
]


@pytest.mark.parametrize(("name", "build", "error"), BEFORE_AUTH, ids=[b[0] for b in BEFORE_AUTH])
def test_bad_input_before_auth_closes_1008(name: str, build: Any, error: Any) -> None:
    conn = NodeConnection()
    text = build(conn)
    with pytest.raises(error) as info:
        conn.receive_text(text)
    assert info.value.ws_close_code == 1008
    assert (conn.state, conn.close_code) == (State.CLOSING, 1008)
    assert ws_error(info.value).close_code == 1008


AFTER_AUTH: list[tuple[str, str, type[ProtocolError]]] = [
    ("malformed json", '{"id": "x", "action": "PING"', MalformedJson),
    ("not an object", '"PING"', InvalidMessage),
    ("unknown action", '{"id":"x","action":"DANCE","data":{}}', UnknownAction),
    ("unknown origin action", '{"id":"x","origin_action":"DANCE"}', UnknownAction),
    ("action not a string", '{"id":"x","action":7}', UnknownAction),
    ("action a list", '{"id":"x","action":["PING"]}', UnknownAction),
    ("origin_action an object", '{"id":"x","origin_action":{"a":1}}', UnknownAction),
    ("id a number", '{"id":5,"action":"PING","data":{}}', InvalidMessage),
    ("id missing", '{"action":"PING","data":{}}', InvalidMessage),
    ("id empty", '{"id":"","action":"PING","data":{}}', InvalidMessage),
    ("id too long", json.dumps({"id": "x" * 129, "action": "PING"}), InvalidMessage),
    ("version a number", '{"id":"x","version":1,"action":"PING","data":{}}', InvalidMessage),
    ("nested too deep", "[" * 30_000 + "]" * 30_000, MalformedJson),
    ("nested too deep in a ping", ping()[:-1] + ',"pad":' + "[" * 200 + "]" * 200 + "}", MalformedJson),
    (
        "http result with a bad status",
        '{"id":"x","origin_action":"HTTP_REQUEST","result":{"url":"u","status":"200"}}',
        InvalidMessage,
    ),
    (
        "http result with bad base64",
        '{"id":"x","origin_action":"HTTP_REQUEST","result":{"url":"u","status":1,"body":"%%"}}',
        InvalidMessage,
    ),
    ("http result for no request", json.dumps({
        "id": "x", "origin_action": "HTTP_REQUEST", "result": {"url": "u", "status": 200}
    }), UnknownRequest),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "error"), AFTER_AUTH, ids=[a[0] for a in AFTER_AUTH])
def test_bad_message_after_auth_is_answered(name: str, text: str, error: Any) -> None:
    conn = authenticated()
    with pytest.raises(error) as info:
        conn.receive_text(text)
    assert info.value.ws_close_code is None
    assert conn.state is State.AUTHENTICATED
    reply = json.loads(conn.error_message(info.value))
    assert reply["data"]["code"] == info.value.code
    assert conn.receive_text(ping()) == Ping(
        id="7d2c5a5e-9d4b-4b8e-a7a4-2f0f3b0c1d2e", version="1.0.0"
    )


def test_second_auth_is_answered_and_identity_kept() -> None:
    conn = NodeConnection()
    first = auth_answer(conn)
    conn.receive_text(first)
    with pytest.raises(AlreadyAuthenticated) as info:
        conn.receive_text(first.replace("2oNpOoz9bB3sTSNqfw8JgQbWZ1x", "someone-else"))
    assert info.value.ws_close_code is None
    assert isinstance(info.value, Conflict)
    assert conn.state is State.AUTHENTICATED


@pytest.mark.parametrize("authed", [False, True], ids=["awaiting_auth", "authenticated"])
def test_frame_level_errors_close_in_every_state(authed: bool) -> None:
    def fresh() -> NodeConnection:
        return authenticated() if authed else NodeConnection()

    conn = fresh()
    with pytest.raises(BinaryFrame) as binary:
        conn.receive_binary(b'{"id":"x","action":"PING"}')
    assert binary.value.ws_close_code == 1003
    conn = fresh()
    with pytest.raises(InvalidUtf8) as utf8:
        conn.receive_bytes_as_text(b'{"id":"\xff\xfe"}')
    assert utf8.value.ws_close_code == 1007
    assert conn.close_code == 1007
    conn = fresh()
    with pytest.raises(MessageTooBig) as big:
        conn.receive_text(json.dumps({"id": "x", "action": "PING", "pad": "a" * 65536}))
    assert big.value.ws_close_code == 1009
    conn = fresh()
    with pytest.raises(MessageTooBig):
        conn.receive_bytes_as_text(b" " * 65537)
    assert (conn.state, conn.close_code) == (State.CLOSING, 1009)


def test_size_limit_counts_utf8_bytes() -> None:
    conn = NodeConnection(max_message_size=100)
    text = json.dumps({"id": "x", "action": "PING", "pad": "é" * 40}, ensure_ascii=False)
    assert len(text) < 100 < len(text.encode())
    with pytest.raises(MessageTooBig):
        conn.receive_text(text)
    conn = authenticated()
    fits = json.dumps({"id": "x", "action": "PING", "pad": "é" * 40}, ensure_ascii=False)
    assert conn.receive_text(fits) == Ping(id="x")


def test_valid_utf8_bytes_are_decoded() -> None:
    conn = authenticated()
    assert conn.receive_bytes_as_text(ping("é").encode()) == Ping(id="é", version="1.0.0")


def test_deep_nesting_is_malformed_json_not_a_crash() -> None:
    conn = authenticated()
    with pytest.raises(MalformedJson):
        conn.receive_text("[" * 60_000)


@pytest.mark.parametrize("authed", [False, True], ids=["awaiting_auth", "authenticated"])
def test_a_lone_surrogate_escape_closes_1007(authed: bool) -> None:
    """JSON's \\udfff escape decodes to a lone surrogate, which UTF-8 cannot encode: the
    message breaks the text frame's promise like invalid UTF-8 does (a device row holding it
    made every uptime flush fail on PostgreSQL)."""
    conn = authenticated() if authed else NodeConnection()
    text = ping("\udfff") if authed else auth_answer(conn, version="4\udfff")
    assert "\\udfff" in text  # json.dumps escapes it: the frame itself is valid UTF-8
    with pytest.raises(InvalidUtf8) as info:
        conn.receive_text(text)
    assert "version" in info.value.message or "id" in info.value.message
    assert (conn.state, conn.close_code) == (State.CLOSING, 1007)
    assert ws_error(info.value).close_code == 1007


def test_a_surrogate_pair_escape_is_text() -> None:
    conn = NodeConnection()
    text = auth_answer(conn, user_agent="Node \U0001f600")
    assert "\\ud83d\\ude00" in text
    event = conn.receive_text(text)
    assert isinstance(event, Authenticated)
    assert event.result.user_agent == "Node \U0001f600"


def test_error_kinds() -> None:
    assert issubclass(MalformedBrowserId, ValidationFailed)
    assert issubclass(UnknownDeviceType, InvalidInput)
    assert issubclass(NotAuthenticated, Unauthenticated)
    assert issubclass(AuthIdMismatch, Unauthenticated)
    assert issubclass(UnknownRequest, NotFound)
    for cls in (MessageTooBig, BinaryFrame, InvalidUtf8, MalformedJson, InvalidMessage):
        assert issubclass(cls, InvalidInput)
        assert cls("x").http_status == 400
    assert MalformedJson("x").code == "malformed_json"
    assert NotAuthenticated("x").http_status == 401


# -- properties -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)  # fmt: skip
tags = st.sampled_from(["PING", "PONG", "AUTH", "HTTP_REQUEST", "DANCE", 1, None]) | json_values
messages = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=5), st.integers(), st.none()),
        "action": tags,
        "origin_action": tags,
        "version": st.one_of(st.text(max_size=5), st.integers(), st.none()),
        "data": json_values,
        "result": json_values,
    },
)


def _only_protocol_errors(conn: NodeConnection, call: Any, payload: Any) -> None:
    error: ProtocolError | None = None
    try:
        call(payload)
    except ProtocolError as exc:
        error = exc
    if error is None:
        return
    assert error.ws_close_code in (None, 1003, 1007, 1008, 1009)
    if error.ws_close_code is None:
        json.loads(conn.error_message(error))
    else:
        assert conn.close_code == error.ws_close_code


@given(st.text(max_size=200), st.booleans())
def test_any_text_raises_only_protocol_errors(text: str, authed: bool) -> None:
    conn = authenticated() if authed else NodeConnection()
    _only_protocol_errors(conn, conn.receive_text, text)


@given(st.binary(max_size=200), st.booleans())
def test_any_bytes_raise_only_protocol_errors(data: bytes, authed: bool) -> None:
    conn = authenticated() if authed else NodeConnection()
    _only_protocol_errors(conn, conn.receive_bytes_as_text, data)


@given(messages, st.booleans())
def test_any_message_shape_raises_only_protocol_errors(
    message: dict[str, Any], authed: bool
) -> None:
    conn = authenticated() if authed else NodeConnection()
    _only_protocol_errors(conn, conn.receive_text, json.dumps(message))


auth_fields = st.fixed_dictionaries(
    {},
    optional={
        name: st.one_of(st.just(valid), json_values)
        for name, valid in auth_result(extension_id="x").items()
    },
)


@given(auth_fields)
def test_any_auth_answer_raises_only_protocol_errors(result: dict[str, Any]) -> None:
    conn = NodeConnection()
    _only_protocol_errors(conn, conn.receive_text, auth_envelope(conn, result))
    assert conn.state in (State.AUTHENTICATED, State.CLOSING)


@given(messages)
def test_fast_path_agrees_with_cattrs(message: dict[str, Any]) -> None:
    fast = protocol._fast_event(message)
    try:
        slow = protocol._converter.structure(message, protocol._EVENT)
    except ProtocolError:
        slow = None
    if fast is not None:
        assert fast == slow
    elif isinstance(slow, (Ping, PongEcho)):
        pytest.fail(f"fast path missed a valid {slow!r}")


def test_connection_forms_no_reference_cycles() -> None:
    """A whole life, errors included, leaves nothing for the cyclic collector (DESIGN §12)."""
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            conn = NodeConnection()
            with contextlib.suppress(ProtocolError):
                conn.receive_text(auth_answer(conn, device_type="fridge"))
            with contextlib.suppress(ProtocolError):
                conn.receive_text(ping())
            conn = authenticated()
            conn.receive_text(ping())
            conn.pong()
            conn.http_request(url="https://example.com/")
            for text in ("{", '{"id":"x","action":"DANCE"}', '{"id":5,"action":"PING"}'):
                try:
                    conn.receive_text(text)
                except ProtocolError as exc:
                    conn.error_message(exc)
            with contextlib.suppress(ProtocolError):
                conn.receive_bytes_as_text(b"\xff")
            del conn
        assert gc.collect() == 0
    finally:
        gc.enable()

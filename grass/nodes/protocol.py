"""The Grass v4 node protocol as a pure state machine: text in, typed events out, text to send.

No sockets and no trio here (the session adapter owns I/O), so every case is testable on plain
strings. The message shapes, the state diagram and the table of error outcomes are in
``docs/protocol.md``. Errors, all raised from :meth:`NodeConnection.receive_text` and friends::

    ProtocolError (grass.errors)
    ├── MessageTooBig          close 1009
    ├── BinaryFrame            close 1003
    ├── InvalidUtf8            close 1007: not UTF-8, or a string escaping a lone surrogate
    ├── FramingError           close 1002: a frame breaking RFC 6455 (grass.websocket.frames)
    ├── BadMessage             error message after AUTH; close 1008 before it
    │   ├── MalformedJson
    │   ├── InvalidMessage     wrong types, missing fields
    │   └── UnknownAction
    ├── NotAuthenticated       close 1008: anything but the AUTH answer first
    ├── AuthIdMismatch         close 1008: the AUTH answer names another request
    ├── InvalidAuth            close 1008: MalformedBrowserId, UnknownDeviceType, a field too
    │                          long or holding a control character
    ├── AlreadyAuthenticated   error message: a second AUTH answer
    ├── UnknownRequest         error message: an HTTP_REQUEST result nobody asked for
    ├── ConnectionClosing      input after the connection started closing (its close code)
    └── LocalProtocolError     close 1011: the server misused the state machine
"""

from __future__ import annotations

import base64
import enum
import json
import re
from collections.abc import Callable
from typing import Any, NoReturn

import attrs

from grass.errors import GrassError, InvalidInput, ProtocolError, ws_error
from grass.ids import is_uuid
from grass.jsontext import MAX_DEPTH
from grass.jsontext import loads as json_loads
from grass.nodes.messages import (
    _EVENT,
    AUTH_FIELD_LIMITS,
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_ID_LENGTH,
    PROTOCOL_VERSION,
    AlreadyAuthenticated,
    Authenticated,
    AuthIdMismatch,
    AuthResult,
    BadMessage,
    BinaryFrame,
    ConnectionClosing,
    DeviceType,
    Event,
    HttpResponse,
    HttpResult,
    InvalidAuth,
    InvalidMessage,
    LocalProtocolError,
    MalformedBrowserId,
    MalformedJson,
    NotAuthenticated,
    Ping,
    PongEcho,
    UnknownAction,
    UnknownDeviceType,
    UnknownRequest,
    _clip,
    _converter,
    _fast_event,
    _json_problem,
    new_message_id,
)
from grass.websocket.errors import FramingError, InvalidUtf8, MessageTooBig

__all__ = [
    "AUTH_FIELD_LIMITS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_ID_LENGTH",
    "PROTOCOL_VERSION",
    "AlreadyAuthenticated",
    "AuthIdMismatch",
    "AuthResult",
    "Authenticated",
    "BadMessage",
    "BinaryFrame",
    "ConnectionClosing",
    "DeviceType",
    "Event",
    "FramingError",
    "HttpResponse",
    "HttpResult",
    "InvalidAuth",
    "InvalidMessage",
    "InvalidUtf8",
    "LocalProtocolError",
    "MalformedBrowserId",
    "MalformedJson",
    "MessageTooBig",
    "NodeConnection",
    "NotAuthenticated",
    "Ping",
    "PongEcho",
    "ProtocolError",
    "State",
    "UnknownAction",
    "UnknownDeviceType",
    "UnknownRequest",
    "new_message_id",
]


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class State(enum.Enum):
    AWAITING_AUTH = "awaiting_auth"
    AUTHENTICATED = "authenticated"
    CLOSING = "closing"


class NodeConnection:
    """One node connection's protocol state: AWAITING_AUTH -> AUTHENTICATED -> CLOSING.

    Holds only strings and numbers (no callbacks into the session), so it forms no reference
    cycle. Every ``receive_*`` returns exactly one event or raises a ProtocolError; an error
    with a close code moves the connection to CLOSING.
    """

    __slots__ = ("_auth_id", "_close_code", "_max_size", "_new_id", "_pending", "_state")

    def __init__(
        self,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        new_id: Callable[[], str] = new_message_id,
    ) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        self._state = State.AWAITING_AUTH
        self._max_size = max_message_size
        self._new_id = new_id
        self._auth_id: str | None = new_id()
        self._close_code: int | None = None
        self._pending: set[str] | None = None  # HTTP_REQUEST ids awaiting a result

    @property
    def state(self) -> State:
        return self._state

    @property
    def close_code(self) -> int | None:
        return self._close_code

    @property
    def max_message_size(self) -> int:
        return self._max_size

    # -- inbound ---------------------------------------------------------------------------

    def receive_text(self, text: str) -> Event:
        try:
            if self._state is State.CLOSING:
                raise ConnectionClosing(self._close_code or 1000)
            if len(text) > self._max_size >> 2 and self._oversized(text):
                raise MessageTooBig(f"message larger than {self._max_size} bytes")
            try:
                # The one JSON parser (grass.jsontext), called here: one frame less per PING.
                obj = json_loads(text, MAX_DEPTH, "message")
            except InvalidInput as parsing:
                problem: tuple[type[ProtocolError], str] | None = _json_problem(parsing)
            else:
                problem = None
            if problem is not None:
                # Raised outside the except block: no link to the parser's error.
                raise problem[0](problem[1])
            if self._state is State.AUTHENTICATED:
                event = _fast_event(obj)
                if event is not None:
                    return event
            return self._dispatch(obj)
        except ProtocolError as exc:
            self._fail(exc)
            raise

    def receive_bytes_as_text(self, data: bytes) -> Event:
        """A text frame's raw payload, for adapters that do not decode UTF-8 themselves."""
        if self._state is State.CLOSING:
            self._reject(ConnectionClosing(self._close_code or 1000))
        if len(data) > self._max_size:
            self._reject(MessageTooBig(f"message larger than {self._max_size} bytes"))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self._reject(InvalidUtf8("text frame is not valid UTF-8"))
        return self.receive_text(text)

    def receive_binary(self, data: bytes) -> NoReturn:
        if self._state is State.CLOSING:
            self._reject(ConnectionClosing(self._close_code or 1000))
        self._reject(BinaryFrame("binary frames are not accepted"))

    def _reject(self, exc: ProtocolError) -> NoReturn:
        self._fail(exc)
        try:
            raise exc
        finally:
            del exc  # the traceback holds this frame: a local naming exc would be a cycle

    def _oversized(self, text: str) -> bool:
        if len(text) > self._max_size:
            return True
        return len(text.encode("utf-8", "surrogatepass")) > self._max_size

    def _dispatch(self, obj: Any) -> Event:
        event: Event = _converter.structure(obj, _EVENT)
        if self._state is State.AWAITING_AUTH:
            if type(event) is not Authenticated:
                raise NotAuthenticated("the first message must answer the AUTH request")
            if event.id != self._auth_id:
                raise AuthIdMismatch("the AUTH answer does not match the AUTH request id")
            event = _checked_auth(event)
            self._state, self._auth_id = State.AUTHENTICATED, None
            return event
        if type(event) is Authenticated:
            raise AlreadyAuthenticated("already authenticated", details={"origin_id": event.id})
        if type(event) is HttpResponse:
            if self._pending is None or event.id not in self._pending:
                raise UnknownRequest(
                    "no HTTP_REQUEST with this id", details={"origin_id": event.id}
                )
            self._pending.discard(event.id)
        return event

    def _fail(self, exc: GrassError) -> None:
        if self._state is State.AWAITING_AUTH and exc.ws_close_code is None:
            exc.ws_close_code = 1008  # before AUTH nothing is answered: a stranger gets no dialogue
        if exc.ws_close_code is not None and self._state is not State.CLOSING:
            self._state, self._close_code = State.CLOSING, exc.ws_close_code

    # -- outbound --------------------------------------------------------------------------

    def auth_request(self) -> str:
        """The server's first message; the AUTH answer must carry its id."""
        if self._auth_id is None:
            raise LocalProtocolError("AUTH was already answered")
        return json.dumps(
            {"id": self._auth_id, "version": PROTOCOL_VERSION, "action": "AUTH", "data": {}},
            separators=(",", ":"),
        )

    def pong(self) -> str:
        return '{"id":"' + self._new_id() + '","action":"PONG","data":{}}'

    def http_request(
        self,
        *,
        url: str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[str, str]:
        """A job for the node: returns (request id, text); its result arrives as HttpResponse."""
        if self._state is not State.AUTHENTICATED:
            raise LocalProtocolError(f"cannot send a job in state {self._state.name}")
        request_id = self._new_id()
        data = {
            "url": url,
            "method": method,
            "headers": dict(headers or {}),
            "body": None if body is None else base64.b64encode(body).decode("ascii"),
        }
        text = json.dumps({"id": request_id, "action": "HTTP_REQUEST", "data": data})
        if self._pending is None:
            self._pending = set()
        self._pending.add(request_id)
        return request_id, text

    def forget_request(self, request_id: str) -> None:
        """Stop waiting for a job's result (the caller timed it out)."""
        if self._pending is not None:
            self._pending.discard(request_id)
            if not self._pending:
                self._pending = None

    def error_message(self, exc: GrassError) -> str:
        """The JSON error message for an error that keeps the connection open."""
        reply = ws_error(exc).message or {"error": {"code": exc.code, "message": exc.message}}
        data = dict(reply["error"])
        origin_id = exc.details.get("origin_id")
        if origin_id is not None:
            data["origin_id"] = origin_id
        return json.dumps({"id": self._new_id(), "action": "ERROR", "data": data})

    def close(self, code: int = 1000) -> None:
        """The server decided to close (shutdown 1001, replaced by a newer connection, ...)."""
        if self._state is not State.CLOSING:
            self._state, self._close_code = State.CLOSING, code


def _checked_auth(event: Authenticated) -> Authenticated:
    result = event.result
    # Some platforms (Apple's UUID().uuidString) write UUIDs upper-case; the device id is stored
    # in the one canonical, lower-case spelling.
    browser_id = result.browser_id.lower()
    if not is_uuid(browser_id):
        raise MalformedBrowserId(f"browser_id {_clip(result.browser_id)} is not a UUID")
    for name, limit in AUTH_FIELD_LIMITS.items():
        value = getattr(result, name)
        if value is not None and len(value) > limit:
            raise InvalidAuth(f"{name} longer than {limit} characters")
        # They end up in device rows: PostgreSQL stores no NUL, and no screen shows the rest.
        if value is not None and _CONTROL.search(value):
            raise InvalidAuth(f"{name} holds a control character")
    if not result.user_id:
        raise InvalidAuth("user_id is empty")
    if result.browser_id != browser_id:
        event = attrs.evolve(event, result=attrs.evolve(result, browser_id=browser_id))
    return event

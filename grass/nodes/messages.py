"""The node protocol's vocabulary: errors, messages (the events), and the wire converter.

The state machine that uses them is :mod:`grass.nodes.protocol` (which re-exports every public
name here); the error tree is drawn in its docstring.
"""

from __future__ import annotations

import base64
import binascii
import enum
import math
import os
from collections.abc import Callable
from typing import Any, Final

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn
from cattrs.v import format_exception

from grass import jsontext
from grass.errors import (
    Conflict,
    GrassError,
    InvalidInput,
    NotFound,
    ProtocolError,
    Unauthenticated,
    ValidationFailed,
)
from grass.websocket.errors import InvalidUtf8

PROTOCOL_VERSION: Final = "1.0.0"
DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024
MAX_ID_LENGTH: Final = 128
#: Caps on AUTH fields that end up in device rows (the message size alone would allow 64 KiB).
AUTH_FIELD_LIMITS: Final = {"user_id": 128, "user_agent": 512, "version": 64, "extension_id": 128}


class DeviceType(enum.StrEnum):
    EXTENSION = "extension"
    DESKTOP = "desktop"
    COMMUNITY = "community"
    ANDROID = "android"


# Layer errors set ``code`` and ``ws_close_code`` themselves: ProtocolError comes first in their
# MRO, so its defaults would otherwise shadow those of the kind (InvalidInput, ...). mypy infers
# ProtocolError.ws_close_code as int, hence the ignores where None ("answer, keep open") is set.


class BinaryFrame(ProtocolError, InvalidInput):
    code = "binary_frame"
    ws_close_code = 1003


class BadMessage(ProtocolError, InvalidInput):
    """A frame that is not a valid message; the state machine sets close 1008 before AUTH."""

    code = "invalid_message"
    ws_close_code = None

    def __init__(self, message: str, *, origin_id: str | None = None) -> None:
        super().__init__(message, details={"origin_id": origin_id} if origin_id else None)


class MalformedJson(BadMessage):
    code = "malformed_json"


class InvalidMessage(BadMessage):
    code = "invalid_message"


class UnknownAction(BadMessage):
    code = "unknown_action"


class NotAuthenticated(ProtocolError, Unauthenticated):
    code = "not_authenticated"
    ws_close_code = 1008


class AuthIdMismatch(ProtocolError, Unauthenticated):
    code = "auth_id_mismatch"
    ws_close_code = 1008


class InvalidAuth(ProtocolError, ValidationFailed):
    code = "invalid_auth"
    ws_close_code = 1008


class MalformedBrowserId(InvalidAuth):
    code = "malformed_browser_id"


class UnknownDeviceType(InvalidAuth):
    code = "unknown_device_type"


class AlreadyAuthenticated(ProtocolError, Conflict):
    code = "already_authenticated"
    ws_close_code = None


class UnknownRequest(ProtocolError, NotFound):
    code = "unknown_request"
    ws_close_code = None


class ConnectionClosing(ProtocolError):
    code = "closing"

    def __init__(self, close_code: int) -> None:
        super().__init__("the connection is closing")
        self.ws_close_code = close_code


class LocalProtocolError(ProtocolError):
    code = "local_protocol_error"
    ws_close_code = 1011


# Inbound messages, which are also the events handed to the caller.


@attrs.frozen(kw_only=True)
class AuthResult:
    browser_id: str
    user_id: str
    user_agent: str
    timestamp: float
    device_type: DeviceType
    version: str
    extension_id: str | None = None

    @property
    def device_id(self) -> str:
        return self.browser_id


@attrs.frozen(kw_only=True)
class Authenticated:
    """The client's valid answer to our AUTH request; deciding whether the user may connect
    (known user, device caps, token claims) is the caller's business."""

    id: str
    result: AuthResult


@attrs.frozen(kw_only=True)
class Ping:
    id: str
    version: str | None = None


@attrs.frozen(kw_only=True)
class PongEcho:
    id: str


@attrs.frozen(kw_only=True)
class HttpResult:
    url: str
    status: int
    status_text: str = ""
    headers: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""


@attrs.frozen(kw_only=True)
class HttpResponse:
    id: str
    result: HttpResult


Event = Authenticated | Ping | PongEcho | HttpResponse
_EVENT: Final[Any] = Event  # structure() is typed for classes, not unions

_TAGS: Final[dict[tuple[str, object], type[Event]]] = {
    ("origin_action", "AUTH"): Authenticated,
    ("action", "PING"): Ping,
    ("origin_action", "PONG"): PongEcho,
    ("origin_action", "HTTP_REQUEST"): HttpResponse,
}

# The wire converter: strict scalars (cattrs would otherwise turn 5 into "5"), extra keys allowed
# because Grass clients add fields over versions.
_converter = cattrs.Converter(forbid_extra_keys=False, detailed_validation=True)


def _strict_str(value: Any, _: Any) -> str:
    if type(value) is not str:
        raise TypeError("expected a string")
    return value


def _strict_int(value: Any, _: Any) -> int:
    if type(value) is not int:
        raise TypeError("expected an integer")
    return value


def _finite_number(value: Any, _: Any) -> float:
    if (type(value) is int or type(value) is float) and math.isfinite(value):
        return float(value)
    raise TypeError("expected a number")


def _base64(value: Any, _: Any) -> bytes:
    try:
        return base64.b64decode(_strict_str(value, None), validate=True)
    except binascii.Error:
        raise ValueError("expected base64") from None


def _device_type(value: Any, _: Any) -> DeviceType:
    if type(value) is str and value in DeviceType._value2member_map_:
        return DeviceType(value)
    expected = " | ".join(DeviceType)
    raise UnknownDeviceType(f"unknown device_type {_clip(value)}; expected {expected}")


def _object_hook(cls: type[Any]) -> Callable[[Any, Any], Any]:
    structure = make_dict_structure_fn(cls, _converter)

    def hook(value: Any, type_: Any) -> Any:
        if type(value) is not dict:
            raise TypeError("expected an object")
        return structure(value, type_)

    return hook


def _structure_event(obj: Any, _: Any) -> Event:
    """The tagged union: ``action`` tags what the client starts, ``origin_action`` its answers."""
    if type(obj) is not dict:
        raise InvalidMessage("a message must be a JSON object")
    origin_id = _origin_id(obj)
    action, origin = obj.get("action"), obj.get("origin_action")
    if action is not None and origin is not None:
        raise InvalidMessage("a message has action or origin_action, not both", origin_id=origin_id)
    if action is None and origin is None:
        raise InvalidMessage("a message needs action or origin_action", origin_id=origin_id)
    key = ("action", action) if action is not None else ("origin_action", origin)
    cls = _TAGS.get(key) if type(key[1]) is str else None  # a list tag is not even hashable
    if cls is None:
        raise UnknownAction(f"unknown {key[0]} {_clip(key[1])}", origin_id=origin_id)
    try:
        event: Event = _converter.structure(obj, cls)
    except cattrs.BaseValidationError as exc:
        kind, text = _explain(exc)
    else:
        if not 0 < len(event.id) <= MAX_ID_LENGTH:
            raise InvalidMessage(f"id must have 1 to {MAX_ID_LENGTH} characters", origin_id=None)
        return event
    # Raised outside the except block so the error keeps no link to cattrs' exception group.
    if kind is None:
        raise InvalidMessage(text, origin_id=origin_id)
    raise kind(text)


_converter.register_structure_hook(str, _strict_str)
_converter.register_structure_hook(int, _strict_int)
_converter.register_structure_hook(float, _finite_number)
_converter.register_structure_hook(bytes, _base64)
_converter.register_structure_hook(DeviceType, _device_type)
_converter.register_structure_hook_factory(attrs.has, _object_hook)
_converter.register_structure_hook(_EVENT, _structure_event)


def _explain(exc: BaseException) -> tuple[type[ProtocolError] | None, str]:
    """A readable reason for a cattrs failure, or our own error when a hook raised one.

    Leaf tracebacks are cleared: cattrs collects leaves in a list that their own frames hold,
    a cycle only the garbage collector would otherwise free.
    """
    text = "; ".join(cattrs.transform_error(exc, format_exception=_format))
    found: type[ProtocolError] | None = None
    stack = [exc]
    while stack:
        error = stack.pop()
        error.__traceback__ = None
        if isinstance(error, BaseExceptionGroup):
            stack.extend(error.exceptions)
        elif isinstance(error, ProtocolError) and found is None:
            found, text = type(error), error.message
    return found, text


def _format(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, GrassError):
        return exc.message
    if isinstance(exc, TypeError) and exc.args and str(exc.args[0]).startswith("expected "):
        return str(exc.args[0])
    return format_exception(exc, type_)


def _clip(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _origin_id(obj: dict[str, Any]) -> str | None:
    value = obj.get("id")
    return value if type(value) is str and 0 < len(value) <= MAX_ID_LENGTH else None


def _fast_event(obj: Any) -> Event | None:
    """PING and its PONG echo without cattrs: the hot path, tens of thousands a second.

    Returns None whenever the full path might judge differently; tests check both agree.
    """
    if type(obj) is not dict:
        return None
    id_ = obj.get("id")
    if type(id_) is not str or not 0 < len(id_) <= MAX_ID_LENGTH:
        return None
    action, origin = obj.get("action"), obj.get("origin_action")
    if action == "PING" and origin is None:
        version = obj.get("version")
        if version is None or type(version) is str:
            return Ping(id=id_, version=version)
    elif origin == "PONG" and action is None:
        return PongEcho(id=id_)
    return None


def _json_problem(exc: InvalidInput) -> tuple[type[ProtocolError], str]:
    """The protocol's error for what grass.jsontext refused in a message: a string that is
    not UTF-8 text closes with 1007 (InvalidUtf8) like a frame that is not; nested too deep
    or not JSON at all is malformed JSON."""
    if isinstance(exc, jsontext.NotText):
        return InvalidUtf8, f"not UTF-8 text: {exc.message}"
    if isinstance(exc, jsontext.JsonTooDeep):
        return MalformedJson, "malformed JSON: nested too deeply"
    return MalformedJson, exc.message


_VARIANT: Final = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


class _UuidPool:
    """Random (version 4) UUIDs from one os.urandom call per 128: uuid.uuid4() costs more than
    decoding a PING. Refilled after fork so processes never share ids."""

    __slots__ = ("_hex", "_pos")

    def __init__(self) -> None:
        self._hex = ""
        self._pos = 0

    def __call__(self) -> str:
        pos = self._pos
        if pos >= len(self._hex):
            self._hex, pos = os.urandom(16 * 128).hex(), 0
        h = self._hex[pos : pos + 32]
        self._pos = pos + 32
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"

    def reset(self) -> None:
        self._hex, self._pos = "", 0


new_message_id: Final = _UuidPool()
os.register_at_fork(after_in_child=new_message_id.reset)

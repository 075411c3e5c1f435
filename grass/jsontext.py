"""The one parser of JSON that comes from outside the process, and the test of what is text.

Every boundary that decodes JSON it did not write itself (HTTP bodies, the live dashboard
socket, node messages, cursors, tokens, commands between instances, session payloads) calls
:func:`loads`, which adds two rules to ``json.loads``:

- **Depth.** Arrays and objects nest at most :data:`MAX_DEPTH` deep. ``json.loads`` recurses
  once per level and only the interpreter's recursion limit stops it: a library that raises
  that limit (py_ecc does, see grass/__init__.py) turns 100 000 ``[`` into a segfault. The
  depth is measured on the text BEFORE it is parsed, whatever the recursion limit: a text no
  longer than the limit, or holding no more brackets, cannot nest deeper; any other is
  measured outside its strings (:func:`_check_depth`).
- **Text.** Every string, keys included, must be encodable as UTF-8. JSON's ``\\udfff`` escape
  decodes to a lone surrogate, which UTF-8 cannot encode: PostgreSQL refuses it ("surrogates
  not allowed") and so does every reply that would show it. Only a text holding a surrogate
  escape (or, given as ``str``, a surrogate itself) has its strings looked at.

``NaN`` and ``Infinity`` are refused too: they are not JSON. Errors::

    InvalidJson (InvalidInput, 400)        not JSON (syntax, not UTF-8)
    JsonTooDeep (ValidationFailed, 422)    nested deeper than the limit
    NotText     (ValidationFailed, 422)    a string that is not UTF-8 text; ``details.fields``
                                           names where (``result.version``, ``items[2]``)

Boundaries turn them into their own replies: 400/422 over HTTP; on WebSockets close 1007 for
text (NotText's close code) and the protocol's own error for the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final, NoReturn, cast

from grass.errors import InvalidInput, ValidationFailed

#: Nesting allowed in any JSON we accept. The deepest document grass defines nests 3 deep and
#: 128 levels ask nothing of the C stack; at 128, a text of at most 128 characters (every PING
#: and PONG a node sends) cannot nest deeper, so the gateway's hot path skips even the count.
MAX_DEPTH: Final = 128

#: A ``\\u`` escape of a surrogate; an escaped backslash before "u" matches too (and is then
#: found to be harmless when the strings are looked at).
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89abcdefABCDEF]")


class InvalidJson(InvalidInput):
    code = "invalid_json"

    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed JSON: {reason}", details={"reason": reason})
        self.reason = reason


class JsonTooDeep(ValidationFailed):
    code = "json_too_deep"

    def __init__(self, what: str, max_depth: int) -> None:
        problem = f"must not nest more than {max_depth} levels deep"
        super().__init__(f"{what}: {problem}", details={"fields": {what: problem}})


class NotText(ValidationFailed):
    """A string that UTF-8 cannot encode (a lone surrogate)."""

    code = "invalid_text"
    #: A WebSocket carrying it breaks the text frame's promise (RFC 6455 7.4.1).
    ws_close_code = 1007

    def __init__(self, where: str) -> None:
        problem = "must be UTF-8 text (a lone surrogate is not)"
        super().__init__(f"{where}: {problem}", details={"fields": {where: problem}})
        self.where = where


def is_text(value: str) -> bool:
    """True when ``value`` encodes as UTF-8 (``str.isascii`` is O(1): ASCII costs nothing;
    encoding is three times quicker than searching for a surrogate)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(value: str, where: str) -> str:
    if not is_text(value):
        raise NotText(where)
    return value


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


_decoder: Final = json.JSONDecoder(parse_constant=_reject_constant)
_scan_once: Final[Callable[[str, int], tuple[Any, int]]] = cast(Any, _decoder).scan_once


def loads(text: str | bytes, max_depth: int = MAX_DEPTH, what: str = "body") -> Any:
    """Parse untrusted JSON (bytes must be UTF-8). A :class:`NotText` error names the string's
    place, ``what`` standing for the whole document. (Not keyword-only: the node gateway
    passes them by position, a few nanoseconds a message.)"""
    if not isinstance(text, str):
        text = _utf8(text)
    if len(text) > max_depth and text.count("[") + text.count("{") > max_depth:
        _check_depth(text, max_depth, what)
    if not text.isascii() and not is_text(text):  # isascii first: no call for ASCII
        raise NotText(what)
    # scan_once skips json.loads' argument handling (the node gateway parses tens of thousands
    # of PINGs a second); anything unusual (surrounding space, an error) takes the decoder.
    try:
        value, end = _scan_once(text, 0)
    except (StopIteration, ValueError, RecursionError):
        end = -1
    if end != len(text):
        value = _decode(text)
    if "\\" in text and _SURROGATE_ESCAPE.search(text):
        bad = _first_non_text(value, "")
        if bad is not None:
            raise NotText(bad or what)
    return value


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    raise InvalidJson("not UTF-8")


def _decode(text: str) -> Any:
    try:
        return _decoder.decode(text)
    except json.JSONDecodeError as exc:
        reason = exc.msg
    except (ValueError, RecursionError) as exc:
        reason = str(exc)[:80] if isinstance(exc, ValueError) else "nested too deeply"
    # Raised outside the except block: the error keeps no link to json's exception.
    raise InvalidJson(reason)


def _byte_tables() -> tuple[bytes, tuple[int, ...], tuple[int, ...]]:
    """How the depth moves over 8 brackets packed in a byte (1 opens, 0 closes, the first one
    in the highest bit): the change over all eight, and the highest point reached."""
    delete = bytes(b for b in range(256) if b not in b"[]{}")
    net, top = [], []
    for packed in range(256):
        depth, high = 0, -8
        for bit in range(7, -1, -1):
            depth += 1 if packed >> bit & 1 else -1
            high = max(high, depth)
        net.append(depth)
        top.append(high)
    return delete, tuple(net), tuple(top)


#: ``bytes.translate`` arguments: brackets become bits, every other byte goes (UTF-8 encodes
#: every non-ASCII character with bytes >= 0x80, none of them a bracket).
_AS_BITS: Final = bytes.maketrans(b"[{]}", b"1100")
_NOT_BRACKETS, _NET, _TOP = _byte_tables()


def _check_depth(text: str, max_depth: int, what: str) -> None:
    """Measure how deep ``text`` nests before it is parsed, in C loops over its bytes.

    Strings are cut out first: escaped backslashes, then escaped quotes, are deleted (the
    order in which JSON reads them), so every quote left opens or closes a string and the
    pieces between quotes alternate outside, inside. The brackets outside become bits, eight
    to a byte, and the depth is followed a byte at a time through two 256-entry tables: one
    turn of a Python loop per eight brackets, stopping at the first byte that goes too deep
    (a 1 MiB body of nothing but brackets costs less than ``json.loads`` takes to build it).
    Kinds are not told apart (``[}`` makes the parser fail where it is opened). Where the text
    is not JSON, the parser stops at its first error, and the brackets before it were read as
    the parser reads them, so it never nests deeper than measured here.
    """
    data = text.encode("utf-8", "surrogatepass")
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    bits = b"".join(data.split(b'"')[::2]).translate(_AS_BITS, _NOT_BRACKETS)
    if not bits:
        return
    size = -(-len(bits) // 8)
    # Padded with closing brackets, which never raise the depth.
    packed = int(bits.ljust(size * 8, b"0"), 2).to_bytes(size, "big")
    depth, net, top = 0, _NET, _TOP
    for byte in packed:
        if depth + top[byte] > max_depth:
            raise JsonTooDeep(what, max_depth)
        depth += net[byte]


def _first_non_text(value: Any, where: str) -> str | None:
    """Where the first string that is not text is (the depth is already bounded)."""
    kind = type(value)
    if kind is str:
        return None if is_text(value) else where
    if kind is dict:
        for key, item in value.items():
            if not is_text(key):
                return where  # a key cannot be shown: its object is named
            found = _first_non_text(item, f"{where}.{key}" if where else key)
            if found is not None:
                return found
    elif kind is list:
        for n, item in enumerate(value):
            found = _first_non_text(item, f"{where}[{n}]")
            if found is not None:
                return found
    return None

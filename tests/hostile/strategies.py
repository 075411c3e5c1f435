"""Hypothesis strategies for hostile input: JSON that parses but hurts, bytes that do not
parse, query strings, path segments and headers.

JSON is written by hand (:func:`write`) because ``json.dumps`` cannot write what an attacker
writes: ``1e400``, five thousand digits, ``NaN``, a lone surrogate escape, a key given twice.
A value is a plain JSON value, a :class:`Raw` token written as is, or :class:`Pairs` (an object
whose keys may repeat).

Deep nesting here stays at or under :data:`SAFE_DEPTH`. The server imports py_ecc, which sets
the recursion limit to 100 000: JSON nested deeper than the C stack holds (about 65 000 levels)
then kills the whole process (#13 finding 1). And while a hypothesis example runs, hypothesis
sets the limit of the whole process to its own depth plus 2 000, which the server in the same
process then shares: deeper JSON would meet a RecursionError that production never sees. So
in-process campaigns nest to 1 000 levels, and ``test_depth.py`` plays deeper shapes against a
``grass serve`` subprocess, where the limit is production's.
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import quote_from_bytes

import attrs
from hypothesis import strategies as st

from grass.http.openapi import MAX_BODY_BYTES

#: Nesting that in-process campaigns play (see the docstring).
SAFE_DEPTH = 1_000


@attrs.frozen
class Raw:
    """A JSON token written exactly as given (valid or not)."""

    text: str


@attrs.frozen
class Pairs:
    """A JSON object with its keys in order, duplicates allowed."""

    items: tuple[tuple[str, Any], ...]


def write(value: Any) -> str:
    """JSON text for a value of this module's vocabulary. Strings go through ``json.dumps``
    (ASCII-only), so a lone surrogate comes out as its ``\\udXXX`` escape."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs | dict):
        items = value.items if isinstance(value, Pairs) else value.items()
        return "{" + ",".join(f"{json.dumps(k)}:{write(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(write(v) for v in value) + "]"
    return json.dumps(value)


# -- leaves ------------------------------------------------------------------------------------

HUGE_NUMBERS = st.sampled_from(
    [
        "1e400",
        "-1e400",
        "1e-400",
        "1E+99999",
        "9" * 5000,  # over int's 4300-digit conversion limit
        "-" + "1" * 4301,
        "1" + "0" * 4299,  # just under it
        "0." + "0" * 5000 + "1",
        "123456789012345678901234567890",
        "18446744073709551616",  # 2**64
        "-9223372036854775809",  # one under int64
        "NaN",
        "Infinity",
        "-Infinity",
        "-0",
        "1.7976931348623157e309",
    ]
).map(Raw)

#: Text an attacker likes: NUL and other controls, bidi overrides, BOM, non-characters,
#: astral planes, quotes and backslashes.
NASTY_STRINGS = st.sampled_from(
    [
        "",
        "\x00",
        "a\x00b",
        "\x1b[31m",
        "\r\n\r\nX-Injected: 1",
        "\u202e\u2066",
        "\ufeff",
        "\ufffe\uffff",
        "\u0085\u2028\u2029",
        "\U0010ffff\U0001f600",
        "\\",
        '"',
        "' OR 1=1 --",
        "%00",
        "../../etc/passwd",
        "${jndi:ldap://127.0.0.1/a}",
        "{{7*7}}",
        "\x7f\x9f",
    ]
)

#: Lone surrogates: valid as JSON escapes, not encodable as UTF-8 (#13 finding 2).
SURROGATES = st.text(
    alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3
)


# Strategies are built once (functools.cache): hypothesis validates a strategy the first time it
# draws from it, which costs more than the draw when a composite builds new ones every example.


@functools.cache
def _text(surrogates: bool) -> st.SearchStrategy[str]:
    plain = st.text(max_size=40) | NASTY_STRINGS
    if not surrogates:
        return plain
    mixed = st.tuples(plain, SURROGATES, plain).map("".join)
    return plain | SURROGATES | mixed


@functools.cache
def leaves(*, surrogates: bool = False) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([2**31, 2**63, 2**64, -(2**63) - 1, 10**30]),
        st.floats(allow_nan=False, allow_infinity=False),
        HUGE_NUMBERS,
        _text(surrogates),
    )


def _nested(depth: int, kind: str, closed: bool) -> Raw:
    if kind == "array":
        head, leaf, tail = "[", "0", "]"
    elif kind == "object":
        head, leaf, tail = '{"a":', "0", "}"
    else:  # alternating, as a JSON-aware parser's two paths
        head, leaf, tail = '[{"a":', "0", "}]"
    return Raw(head * depth + (leaf + tail * depth if closed else ""))


@functools.cache
def nesting(max_depth: int = SAFE_DEPTH) -> st.SearchStrategy[Raw]:
    """Arrays, objects and both, nested up to ``max_depth``, closed or left open."""
    return st.builds(
        _nested,
        st.integers(min(100, max_depth), max_depth),
        st.sampled_from(["array", "object", "mixed"]),
        st.booleans(),
    )


@functools.cache
def values(*, surrogates: bool = False) -> st.SearchStrategy[Any]:
    """Any hostile JSON value: leaves, containers of them (duplicate keys included), and
    nesting up to :data:`SAFE_DEPTH`."""
    keys = _text(surrogates)
    tree = st.recursive(
        leaves(surrogates=surrogates),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(keys, inner, max_size=4),
            st.lists(st.tuples(keys, inner), max_size=4).map(lambda items: Pairs(tuple(items))),
        ),
        max_leaves=12,
    )
    return tree | nesting()


# -- HTTP bodies -------------------------------------------------------------------------------

UNKNOWN_KEYS = st.sampled_from(["__proto__", "constructor", "", "id", "role", "admin", "x" * 300])


@functools.cache
def objects(fields: tuple[str, ...], *, surrogates: bool = False) -> st.SearchStrategy[str]:
    """An object for a body with these ``fields``: some given hostile values (wrong types,
    huge numbers...), some given twice, unknown keys beside them."""
    known = st.tuples(st.sampled_from(fields), values(surrogates=surrogates)) if fields else None
    unknown = st.tuples(UNKNOWN_KEYS | _text(surrogates), leaves(surrogates=surrogates))
    given = st.lists(known, max_size=len(fields) + 1) if known is not None else st.just([])
    return st.builds(lambda a, b: write(Pairs((*a, *b))), given, st.lists(unknown, max_size=2))


#: A valid value for each body field of the API, by name: a body of these with one field
#: spoiled gets past validation of the others and reaches the handlers and storage.
PLAUSIBLE: dict[str, Any] = {
    "email": "mallory@example.com",
    "password": "correct horse battery",
    "current_password": "correct horse battery",
    "new_password": "another horse battery",
    "referral_code": "ABCD1234",
    "token": "t" * 43,
    "display_name": "Mallory",
    "country": "FR",
    "timezone": "Europe/Paris",
    "channels": ["email", "in_app"],
    "quiet_hours": {"start": "22:00", "end": "07:00"},
    "name": "a name",
    "scopes": ["stats:read"],
    "range": "198.51.100.0/24",  # never loopback: the canary's node must not be banned
    "reason": "abuse",
    "user_id": "u" * 21,
    "enabled": True,
    "address": "0x" + "ab" * 20,
    "nonce": "nonce",
    "signature": "0x" + "cd" * 65,
    "browserId": "5f3c2a1e-1b2c-4d5e-8f90-123456789abc",
    "userId": "u" * 21,
    "version": "4.26.2",
    "deviceType": "extension",
    "extensionId": "ilehaonighjijnmpnagapkhpcdbhclfg",
    "userAgent": "Mozilla/5.0",
}


def _spoil(body: dict[str, Any], field: str, how: str, value: Any, at: int, bad: str) -> str:
    items = list(body.items())
    index = next(i for i, (k, _) in enumerate(items) if k == field)
    original = items[index][1]
    if how == "drop":
        del items[index]
    elif how == "duplicate":
        items.append((field, value))
    elif how == "splice" and isinstance(original, str):
        cut = at % (len(original) + 1)
        items[index] = (field, original[:cut] + bad + original[cut:])
    else:
        items[index] = (field, value)
    return write(Pairs(tuple(items)))


@functools.cache
def plausible(fields: tuple[str, ...], *, surrogates: bool = False) -> st.SearchStrategy[str]:
    """A valid-looking body with one field spoiled: dropped, given twice, replaced by a hostile
    value, or with hostile text (lone surrogates when asked) spliced into it."""
    known = [f for f in fields if f in PLAUSIBLE]
    if not known:
        return objects(fields, surrogates=surrogates)
    body = {f: PLAUSIBLE[f] for f in known}
    bad = SURROGATES if surrogates else NASTY_STRINGS.filter(bool)
    return st.builds(
        _spoil,
        st.just(body),
        st.sampled_from(known),
        st.sampled_from(["drop", "duplicate", "replace", "splice", "splice"]),
        values(surrogates=surrogates),
        st.integers(0, 64),
        bad,
    )


#: Bytes that are not UTF-8, alone or inside JSON strings.
INVALID_UTF8 = st.sampled_from(
    [
        b"\xff",
        b"\xc0\x80",  # overlong NUL
        b"\xed\xa0\x80",  # an encoded surrogate (CESU-8)
        b"\xf4\x90\x80\x80",  # beyond U+10FFFF
        b"\xe2\x82",  # truncated
        b"\x80",
    ]
)


@st.composite
def broken_bodies(draw: st.DrawFn) -> bytes:
    """Bodies that are not JSON, or not UTF-8, or JSON in the wrong encoding or with junk."""
    kind = draw(st.sampled_from(["binary", "utf8", "bom", "utf16", "trailing", "cut", "empty"]))
    sample = b'{"email":"a@example.com","password":"x"}'
    if kind == "binary":
        return draw(st.binary(max_size=200))
    if kind == "utf8":
        bad = draw(INVALID_UTF8)
        return draw(st.sampled_from([b'{"name":"' + bad + b'"}', bad, b'{"' + bad + b'":1}']))
    if kind == "bom":
        return b"\xef\xbb\xbf" + sample
    if kind == "utf16":
        return sample.decode().encode(draw(st.sampled_from(["utf-16", "utf-16-be", "utf-32"])))
    if kind == "trailing":
        return sample + draw(st.sampled_from([b"x", b"{}", b"\x00", b"]", b" // c"]))
    if kind == "cut":
        return sample[: draw(st.integers(1, len(sample) - 1))]
    return b""


def _huge(name: str, over: int, unit: str) -> bytes:
    frame = f'{{"{name}":"",'.encode() + b'"k":0}'
    size = (MAX_BODY_BYTES + over - len(frame)) // len(unit.encode())
    return f'{{"{name}":"{unit * size}","k":0}}'.encode()


@functools.cache
def huge_bodies(fields: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    """One field holding a string that takes the body to (or just over) its 1 MiB cap."""
    return st.builds(
        _huge,
        st.sampled_from(fields or ("x",)),
        st.sampled_from([-64, -1, 0, 1, 4096]),
        st.sampled_from(["A", "é", "\\u0000", "\\\\", "\U0001f600"]),
    )


@functools.cache
def bodies(fields: tuple[str, ...], *, surrogates: bool = False) -> st.SearchStrategy[bytes]:
    """Every family of hostile body for a route whose body has these ``fields`` (a body at
    the cap one time in twenty: each costs a mebibyte)."""
    common = st.one_of(
        objects(fields, surrogates=surrogates).map(str.encode),
        plausible(fields, surrogates=surrogates).map(str.encode),
        values(surrogates=surrogates).map(lambda v: write(v).encode()),
        broken_bodies(),
    )
    return st.integers(0, 19).flatmap(lambda n: huge_bodies(fields) if n == 0 else common)


# -- query strings, path segments, headers ------------------------------------------------------


def _encoded(data: bytes) -> str:
    return quote_from_bytes(data, safe="")


@functools.cache
def _text_bytes(surrogates: bool) -> st.SearchStrategy[bytes]:
    as_utf8 = _text(False).map(str.encode)
    raw = st.one_of(
        as_utf8,
        INVALID_UTF8,
        st.binary(max_size=30),
        st.sampled_from([b"9" * 5000, b"-1", b"0", b"1e400", b"true", b"null", b"x" * 3000]),
    )
    if surrogates:  # WTF-8: a surrogate written as UTF-8 would write it
        wtf8 = SURROGATES.map(lambda t: t.encode("utf-8", "surrogatepass"))
        return raw | wtf8
    return raw


def _query(pairs: list[tuple[bytes, bytes]], junk: str) -> str:
    return "&".join(
        [*(f"{_encoded(k)}={_encoded(v)}" for k, v in pairs), *([junk] if junk else [])]
    )


@functools.cache
def query_strings(names: tuple[str, ...], *, surrogates: bool = False) -> st.SearchStrategy[str]:
    """Known parameters with hostile values, unknown ones, repeats, and malformed pairs."""
    known = st.sampled_from(names).map(str.encode) if names else st.nothing()
    name = known | _text_bytes(False) | st.just(b"")
    junk = st.sampled_from(["", "", "=", "&", "a", "%", "%zz", "a=%ff%fe", ";", "a=b=c"])
    pairs = st.lists(st.tuples(name, _text_bytes(surrogates)), max_size=4)
    return st.builds(_query, pairs, junk)


@functools.cache
def path_segments(*, surrogates: bool = False) -> st.SearchStrategy[str]:
    """What goes where a path names an id: encoded slashes and NULs, invalid UTF-8, huge
    segments, dot segments, well-formed ids of nothing."""
    return st.one_of(
        _text_bytes(surrogates).filter(bool).map(_encoded),
        st.sampled_from(["%2F", "..", ".", "%2e%2e", "0", "-1", "9" * 40, "a" * 300]),
        st.uuids().map(str),
    )


#: Header values an HTTP client can send (latin-1 without CR, LF, NUL or DEL).
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
).map(str.strip)  # h11 refuses a value that starts or ends with white space


_HEADER_VALUES = HEADER_TEXT | st.sampled_from(["::1, 127.0.0.1", "1.2.3.4, , ,", "999.1.1.1", "*"])
_CONTENT_TYPES = HEADER_TEXT | st.sampled_from(
    [
        "application/json",
        "text/plain",
        "application/json; charset=utf-16",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
    ]
)

#: Headers beside the bearer token: each present or not, with a hostile value.
EXTRA_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": _CONTENT_TYPES,
        "X-Forwarded-For": _HEADER_VALUES,
        "X-Request-Id": _HEADER_VALUES,
        "If-None-Match": _HEADER_VALUES | st.just("W/"),
        "Origin": _HEADER_VALUES,
        "Accept": _HEADER_VALUES,
    },
)

"""grass.jsontext: the one parser of untrusted JSON measures depth before parsing and refuses
strings that are not UTF-8 text; on everything else it is ``json.loads``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grass import jsontext
from grass.errors import InvalidInput, ValidationFailed
from grass.jsontext import InvalidJson, JsonTooDeep, NotText

text = st.text(st.characters(blacklist_categories=["Cs"]))  # surrogates: tested below
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=40,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


def reference(text: str) -> Any:
    """What json.loads makes of it, NaN and Infinity refused as not JSON."""

    def refuse(name: str) -> Any:
        raise ValueError(name)

    return json.loads(text, parse_constant=refuse)


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@given(values, st.integers(min_value=0, max_value=6), st.booleans())
def test_depth_is_measured_exactly(value: Any, limit: int, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    if depth(value) > limit:
        with pytest.raises(JsonTooDeep):
            jsontext.loads(text, max_depth=limit)
    else:
        assert jsontext.loads(text, max_depth=limit) == reference(text)


@given(st.text(alphabet='[]{}",:\\ a1u0dfe\n', max_size=60), st.integers(0, 4))
def test_any_text_is_parsed_as_json_does_or_refused_for_a_reason(text: str, limit: int) -> None:
    try:
        expected: Any = reference(text)
    except (ValueError, RecursionError):
        expected = InvalidJson
    try:
        got = jsontext.loads(text, max_depth=limit)
    except InvalidJson:
        assert expected is InvalidJson
    except JsonTooDeep:
        assert expected is InvalidJson or depth(expected) > limit
    except NotText:
        assert expected is not InvalidJson
        assert any(not jsontext.is_text(s) for s in _strings(expected))
    else:
        assert got == expected
        assert depth(got) <= limit
        assert all(jsontext.is_text(s) for s in _strings(got))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [*value, *(s for item in value.values() for s in _strings(item))]
    return []


@pytest.mark.parametrize(
    "text",
    [
        nested(jsontext.MAX_DEPTH),
        '["' + "[" * 500 + '"]',  # brackets in a string are text
        '["\\"' + "[" * 500 + '"]',  # after an escaped quote too
        '["\\\\\\"' + "[" * 500 + '"]',
        '{"a": "' + "{" * 500 + '", "b": [' + "[1]," * 200 + "[]]}",
    ],
)
def test_brackets_in_strings_and_wide_documents_are_not_depth(text: str) -> None:
    assert jsontext.loads(text) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    [
        nested(100_000),
        "[" * 100_000,  # never closed: the parser would recurse all the way before failing
        '{"a":' * 100_000,
        '["\\\\",' + nested(200) + "]",  # an escaped backslash ends its string
        '["' + '\\"' * 50 + '",' + nested(200) + "]",
        "[" + "[1]," * 1000 + nested(jsontext.MAX_DEPTH) + "]",
    ],
)
def test_deep_documents_are_refused_before_parsing(text: str) -> None:
    with pytest.raises(JsonTooDeep) as raised:
        jsontext.loads(text, what="body")
    assert raised.value.http_status == 422
    assert raised.value.details == {"fields": {"body": "must not nest more than 128 levels deep"}}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('"\\udfff"', "message"),
        ('{"version": "4\\udfff"}', "version"),
        ('{"result": {"version": "4\\uDFFF"}}', "result.version"),
        ('{"items": ["ok", "\\ud83d"]}', "items[1]"),
        ('{"a": {"\\udfff": 1}}', "a"),  # a key cannot be shown: its object is named
        ('{"a": "\\ude00\\ud83d"}', "a"),  # a pair the wrong way round is two lone halves
        ('{"a": "x\udfff"}', "message"),  # the text itself holds one
    ],
)
def test_strings_that_are_not_text_are_refused(text: str, where: str) -> None:
    with pytest.raises(NotText) as raised:
        jsontext.loads(text, what="message")
    assert raised.value.where == where
    assert raised.value.ws_close_code == 1007
    assert raised.value.details["fields"] == {where: "must be UTF-8 text (a lone surrogate is not)"}


def test_text_rules() -> None:
    assert jsontext.loads('{"ua": "\\ud83d\\ude00 \\u00e9 \\\\udfff"}') == {"ua": "😀 é \\udfff"}
    assert jsontext.loads('{"ua": "😀"}'.encode()) == {"ua": "😀"}
    assert jsontext.is_text("plain")
    assert jsontext.is_text("Zoë ✓ 名 😀")
    assert not jsontext.is_text("4\udfff")
    assert jsontext.check_text("ok", "name") == "ok"
    with pytest.raises(NotText):
        jsontext.check_text("\ud800", "name")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[1,]",
        b"NaN",
        b'{"a": Infinity}',
        b"\xff",
        '["\udfff"]'.encode("utf-8", "surrogatepass"),
    ],
)
def test_not_json(data: bytes) -> None:
    with pytest.raises(InvalidJson) as raised:
        jsontext.loads(data)
    assert raised.value.http_status == 400


def test_error_kinds() -> None:
    assert issubclass(InvalidJson, InvalidInput)
    assert not issubclass(InvalidJson, ValidationFailed)
    assert issubclass(JsonTooDeep, ValidationFailed)
    assert issubclass(NotText, ValidationFailed)

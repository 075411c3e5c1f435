"""The inputs of a declared route, read from the request: path parameters, query string and
JSON body, each structured by the HTTP converter (grass.http.schema), 400/422 otherwise.
Used by the request pipeline (grass.http.api)."""

from __future__ import annotations

import datetime as dt
import enum
import re
import types
import typing
from collections.abc import Callable
from typing import Any

import attrs
from quart import request

from grass import jsontext
from grass.errors import InvalidInput, ValidationFailed
from grass.http import schema as s

#: A path parameter without a declared schema: any segment up to this length.
MAX_PATH_PARAMETER = 256


def check_path(path_fields: type[Any] | None, path: dict[str, str]) -> None:
    """The path parameters against their attrs class, or each 1 to 256 characters (422)."""
    if path_fields is not None:
        hints = typing.get_type_hints(path_fields)
        problems: dict[str, str] = {}
        raw: dict[str, Any] = {}
        for name, text in path.items():
            try:
                raw[name] = _path_value(text, hints[name])
            except ValueError as exc:
                problems[name] = str(exc)
        if problems:
            summary = "; ".join(f"{k}: {v}" for k, v in problems.items())
            raise ValidationFailed(f"invalid path: {summary}", details={"fields": problems})
        s.structure(raw, path_fields, what="path")
        return
    problem = f"must be 1 to {MAX_PATH_PARAMETER} characters"
    bad = {k: problem for k, v in path.items() if not 1 <= len(v) <= MAX_PATH_PARAMETER}
    if bad:
        raise ValidationFailed(f"invalid path: {', '.join(bad)}", details={"fields": bad})


async def parse_body(kind: type[Any] | None, parser: Callable[[Any], Any] | None) -> Any:
    """The request's JSON body, structured as ``kind`` (or by ``parser``): 400 if missing or
    not JSON, 422 if it breaks the class's rules."""
    raw = await request.get_data(as_text=False)
    if not raw:
        raise InvalidInput("a JSON body is required")
    try:
        # Too deep or not text: 422, naming the field (grass.jsontext).
        data = jsontext.loads(raw)
    except jsontext.InvalidJson:
        raise InvalidInput("the body is not valid JSON") from None
    if parser is not None:
        return parser(data)
    assert kind is not None
    return s.structure(data, kind)


def parse_query(kind: type[Any]) -> Any:
    """The query string, structured as ``kind``: unknown or repeated parameters are 422."""
    hints = typing.get_type_hints(kind)
    known = {field.name for field in attrs.fields(kind)}
    unknown = sorted(set(request.args) - known)
    if unknown:
        fields = dict.fromkeys(unknown, "unknown parameter")
        raise ValidationFailed(
            f"unknown query parameter: {', '.join(unknown)}", details={"fields": fields}
        )
    raw: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name in known & set(request.args):
        values = request.args.getlist(name)
        if len(values) > 1:
            problems[name] = "give it once"
            continue
        try:
            raw[name] = _query_value(values[0], hints[name])
        except ValueError as exc:
            problems[name] = str(exc)
    if problems:
        summary = "; ".join(f"{k}: {v}" for k, v in problems.items())
        raise ValidationFailed(f"invalid query: {summary}", details={"fields": problems})
    return s.structure(raw, kind, what="query")


def _query_value(text: str, kind: Any) -> Any:
    """A query string is text: turn it into what the field's type expects before structuring."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if kind is int:
        if not re.fullmatch(r"-?[0-9]{1,18}", text):
            raise ValueError("must be an integer")
        return int(text)
    if kind is bool:
        if text not in ("true", "false"):
            raise ValueError("must be true or false")
        return text == "true"
    if kind in (str, dt.datetime) or (isinstance(kind, type) and issubclass(kind, enum.Enum)):
        return text
    raise TypeError(f"query parameters of type {kind!r} are not supported")


def _path_value(text: str, kind: Any) -> Any:
    """A path segment is text: an int field takes ASCII digits (a bigint's worth) only."""
    if kind is int:
        if not re.fullmatch(r"[0-9]{1,19}", text):
            raise ValueError("must be an integer")
        return int(text)
    return text

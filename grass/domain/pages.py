"""Keyset pagination: a page of rows and the opaque cursor that continues it.

A cursor is the sort key of the last row returned, as URL-safe base64 (unpadded) of a compact JSON
array; times in it are integer microseconds since the Unix epoch (:func:`micros`). Every backend
encodes it the same way, so a cursor names a position, never an offset.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import attrs

from grass import jsontext
from grass.errors import InvalidInput

T = TypeVar("T")
U = TypeVar("U")
CursorPart = str | int | None
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class InvalidPage(InvalidInput):
    """A cursor that no list produced, or a limit out of range."""

    code = "invalid_page"


@attrs.frozen
class Page(Generic[T]):
    items: tuple[T, ...]
    #: Pass it back to get the next page; None when this page is the last.
    next_cursor: str | None

    def map(self, fn: Callable[[T], U]) -> Page[U]:
        """The same page, each item through ``fn`` (the cursor is unchanged)."""
        return Page(tuple(fn(item) for item in self.items), self.next_cursor)


def check_limit(limit: int) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidPage(f"limit must be from 1 to {MAX_PAGE_SIZE}", details={"limit": limit})


def encode_cursor(key: Sequence[CursorPart]) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, kinds: Sequence[type]) -> tuple[CursorPart, ...]:
    """Parse a cursor whose parts have the given types (``str`` or ``int``, or null)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = jsontext.loads(raw, what="cursor")
    except (binascii.Error, ValueError, TypeError, InvalidInput):
        raise InvalidPage("malformed cursor") from None
    if not isinstance(parts, list) or len(parts) != len(kinds):
        raise InvalidPage("malformed cursor")
    for part, kind in zip(parts, kinds, strict=True):
        if part is not None and type(part) is not kind:
            raise InvalidPage("malformed cursor")
    return tuple(parts)


def micros(at: dt.datetime) -> int:
    """Exact integer microseconds since the Unix epoch; orders like the time itself."""
    return (at - _EPOCH) // dt.timedelta(microseconds=1)


def from_micros(value: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=value)

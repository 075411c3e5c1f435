"""Field checks shared by the domain models.

Every failed check raises :class:`InvalidModel`, which is both a ``ValueError`` (what attrs
validators conventionally raise) and a :class:`~grass.errors.ValidationFailed`, so a model built
from bad input turns into a 422 naming the field without any mapping in between.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import zoneinfo
from typing import Any

import attrs

from grass.domain.addresses import standard_spelling
from grass.errors import ValidationFailed
from grass.ids import is_short_id, is_uuid

UTC = dt.UTC
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_HEX = re.compile(r"^[0-9a-f]+$")


class InvalidModel(ValidationFailed, ValueError):
    """A domain model was given a value that breaks one of its rules."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", details={"field": field, "problem": problem})
        self.field = field


def _fail(attribute: attrs.Attribute[Any], problem: str) -> InvalidModel:
    return InvalidModel(attribute.name, problem)


def utc(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Every stored time is an aware UTC datetime, so comparisons never mix zones."""
    if (
        not isinstance(value, dt.datetime)
        or value.tzinfo is None
        or value.utcoffset() != dt.timedelta(0)
    ):
        raise _fail(attribute, "must be a timezone-aware UTC datetime")


def optional_utc(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        utc(instance, attribute, value)


def short_id(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not is_short_id(value):
        raise _fail(attribute, "must be a short id (grass.ids.short_id)")


def optional_short_id(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        short_id(instance, attribute, value)


def uuid(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not is_uuid(value):
        raise _fail(attribute, "must be a lower-case UUID")


def optional_uuid(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        uuid(instance, attribute, value)


def non_negative(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _fail(attribute, "must be a non-negative integer")


def integer(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(attribute, "must be an integer")


def between(low: int, high: int) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise _fail(attribute, f"must be an integer from {low} to {high}")

    return check


def text(max_length: int, *, min_length: int = 1) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str) or not min_length <= len(value) <= max_length:
            raise _fail(attribute, f"must be a string of {min_length} to {max_length} characters")

    return check


def optional_text(max_length: int) -> Any:
    inner = text(max_length)

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            inner(instance, attribute, value)

    return check


def member(enum_type: type[enum.Enum]) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, enum_type):
            raise _fail(attribute, f"must be a {enum_type.__name__}")

    return check


def email(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL.match(value):
        raise _fail(attribute, "must be an email address")


def normalize_email(value: str) -> str:
    """Emails are unique case-insensitively; storing them folded keeps every backend simple."""
    return value.strip().lower() if isinstance(value, str) else value


def country(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (not isinstance(value, str) or not _COUNTRY.match(value)):
        raise _fail(attribute, "must be an ISO 3166-1 alpha-2 code in capitals")


def timezone(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise _fail(attribute, "must be an IANA time zone name")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _fail(attribute, "must be an IANA time zone name") from None


def ip(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise _fail(attribute, "must be an IP address")
    canonical = standard_spelling(value)
    if canonical is None:
        raise _fail(attribute, "must be an IP address")
    if canonical != value:
        raise _fail(attribute, f"must be in canonical form ({canonical})")


def optional_ip(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        ip(instance, attribute, value)


def hex_digest(length: int) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str) or len(value) != length or not _HEX.match(value):
            raise _fail(attribute, f"must be {length} lower-case hex digits")

    return check


def not_before(other: str) -> Any:
    """The field must not be earlier than the field named ``other`` (already set)."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        start = getattr(instance, other)
        if value is not None and start is not None and value < start:
            raise _fail(attribute, f"must not be earlier than {other}")

    return check

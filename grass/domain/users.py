"""Accounts: users with their profile, preferences and credentials; sessions, API keys, wallets."""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import Any

import attrs

from grass.domain import _checks as check

_REFERRAL_CODE = re.compile(r"^[A-Za-z0-9_-]{4,32}$")
_ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")


class Role(enum.StrEnum):
    USER = "user"
    ADMIN = "admin"


class UserStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    BANNED = "banned"


class NotificationChannel(enum.StrEnum):
    IN_APP = "in_app"
    EMAIL = "email"


class ApiScope(enum.StrEnum):
    STATS_READ = "stats:read"
    DEVICES_READ = "devices:read"
    EARNINGS_READ = "earnings:read"


def _referral_code(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _REFERRAL_CODE.match(value):
        raise check.InvalidModel(attribute.name, "must be 4-32 characters of A-Z a-z 0-9 _ -")


def _members_of(enum_type: type[enum.Enum], *, allow_empty: bool) -> Any:
    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, frozenset) or not all(isinstance(v, enum_type) for v in value):
            raise check.InvalidModel(attribute.name, f"must be a frozenset of {enum_type.__name__}")
        if not value and not allow_empty:
            raise check.InvalidModel(attribute.name, "must not be empty")

    return validate


@attrs.frozen(kw_only=True)
class QuietHours:
    """Local wall-clock times (in the user's timezone) during which no notification is pushed.

    ``start > end`` means the window wraps midnight (22:00-07:00).
    """

    start: dt.time = attrs.field()
    end: dt.time = attrs.field()

    @start.validator
    @end.validator
    def _naive(self, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, dt.time) or value.tzinfo is not None:
            raise check.InvalidModel(attribute.name, "must be a naive local time")

    def __attrs_post_init__(self) -> None:
        if self.start == self.end:
            raise check.InvalidModel("end", "must differ from start")

    def contains(self, local: dt.time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@attrs.frozen(kw_only=True)
class Preferences:
    channels: frozenset[NotificationChannel] = attrs.field(
        default=frozenset({NotificationChannel.IN_APP, NotificationChannel.EMAIL}),
        validator=_members_of(NotificationChannel, allow_empty=True),
    )
    quiet_hours: QuietHours | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(QuietHours))
    )


@attrs.frozen(kw_only=True)
class Profile:
    display_name: str | None = attrs.field(default=None, validator=check.optional_text(64))
    country: str | None = attrs.field(default=None, validator=check.country)
    timezone: str = attrs.field(default="UTC", validator=check.timezone)


@attrs.frozen(kw_only=True)
class Credentials:
    password_hash: str = attrs.field(validator=check.text(512), repr=False)
    changed_at: dt.datetime = attrs.field(validator=check.utc)


@attrs.frozen(kw_only=True)
class User:
    id: str = attrs.field(validator=check.short_id)
    #: Folded to lower case: addresses are unique case-insensitively.
    email: str = attrs.field(converter=check.normalize_email, validator=check.email)
    email_verified: bool = False
    role: Role = attrs.field(default=Role.USER, validator=check.member(Role))
    status: UserStatus = attrs.field(default=UserStatus.ACTIVE, validator=check.member(UserStatus))
    referral_code: str = attrs.field(validator=_referral_code)
    profile: Profile = attrs.field(factory=Profile)
    preferences: Preferences = attrs.field(factory=Preferences)
    credentials: Credentials
    created_at: dt.datetime = attrs.field(validator=check.utc)


@attrs.frozen(kw_only=True)
class Session:
    """A login; the client holds the token, the store only its SHA-256."""

    token_hash: str = attrs.field(validator=check.hex_digest(64), repr=False)
    user_id: str = attrs.field(validator=check.short_id)
    created_at: dt.datetime = attrs.field(validator=check.utc)
    expires_at: dt.datetime = attrs.field(validator=[check.utc, check.not_before("created_at")])
    revoked_at: dt.datetime | None = attrs.field(default=None, validator=check.optional_utc)
    ip: str | None = attrs.field(default=None, validator=check.optional_ip)
    user_agent: str | None = attrs.field(default=None, validator=check.optional_text(512))

    def is_active(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


@attrs.frozen(kw_only=True)
class ApiKey:
    """A read-only key for stats; shown once, stored as its SHA-256 with a recognisable prefix."""

    id: str = attrs.field(validator=check.short_id)
    user_id: str = attrs.field(validator=check.short_id)
    name: str = attrs.field(validator=check.text(64))
    key_hash: str = attrs.field(validator=check.hex_digest(64), repr=False)
    prefix: str = attrs.field(validator=check.text(16, min_length=4))
    scopes: frozenset[ApiScope] = attrs.field(validator=_members_of(ApiScope, allow_empty=False))
    created_at: dt.datetime = attrs.field(validator=check.utc)
    revoked_at: dt.datetime | None = attrs.field(default=None, validator=check.optional_utc)
    last_used_at: dt.datetime | None = attrs.field(default=None, validator=check.optional_utc)


@attrs.frozen(kw_only=True)
class NodeKey:
    """What a user's nodes authenticate with (their AUTH answer's ``user_id``, or the v5
    check-in's ``userId``): a secret shown once, stored as its SHA-256. Revoking it disconnects
    the nodes that joined with it."""

    id: str = attrs.field(validator=check.short_id)
    user_id: str = attrs.field(validator=check.short_id)
    name: str = attrs.field(validator=check.text(64))
    key_hash: str = attrs.field(validator=check.hex_digest(64), repr=False)
    prefix: str = attrs.field(validator=check.text(16, min_length=4))
    created_at: dt.datetime = attrs.field(validator=check.utc)
    revoked_at: dt.datetime | None = attrs.field(default=None, validator=check.optional_utc)


def _lower(value: str) -> str:
    return value.lower() if isinstance(value, str) else value


@attrs.frozen(kw_only=True)
class WalletLink:
    """An EVM address proven by an EIP-191 signature; one address belongs to one user."""

    user_id: str = attrs.field(validator=check.short_id)
    #: Lower case; EIP-55 checksumming is a presentation concern.
    address: str = attrs.field(converter=_lower)
    linked_at: dt.datetime = attrs.field(validator=check.utc)

    @address.validator
    def _address(self, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str) or not _ADDRESS.match(value):
            raise check.InvalidModel(attribute.name, "must be a 0x-prefixed 20-byte hex address")

"""Account request bodies and replies shared by the auth and me routes."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import attrs

from grass.domain.users import (
    ApiKey,
    ApiScope,
    NotificationChannel,
    Preferences,
    Profile,
    QuietHours,
    Role,
    Session,
    User,
    UserStatus,
)
from grass.http import schema as s

# ASCII only: the same rule in the document and here, whatever a generator makes of it.
EMAIL_PATTERN = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
TIMEZONES = sorted(zoneinfo.available_timezones())
_TIMEZONE_SET = frozenset(TIMEZONES)


def time_zone(*, default: str | None) -> Any:
    """An IANA time zone name (``None`` allowed when that is the default), as an enum."""
    fragment: dict[str, Any] = {"type": "string", "enum": TIMEZONES}
    if default is not None:
        fragment["default"] = default

    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and default is None:
            return
        if value not in _TIMEZONE_SET:
            raise s.FieldInvalid(f"{attribute.name}: must be an IANA time zone name")

    return attrs.field(default=default, validator=check, metadata={s.SCHEMA: fragment})


def email_field() -> Any:
    return s.text(max_length=254, min_length=3, pattern=EMAIL_PATTERN)


def password_field() -> Any:
    return s.text(max_length=256, min_length=8, printable=False)


@attrs.frozen(kw_only=True)
class Register:
    email: str = email_field()
    password: str = password_field()
    referral_code: str | None = s.text(
        max_length=32, min_length=4, pattern="^[A-Za-z0-9_-]+$", optional=True, default=None
    )


@attrs.frozen(kw_only=True)
class Login:
    email: str = email_field()
    password: str = s.text(max_length=256, min_length=1, printable=False)


@attrs.frozen(kw_only=True)
class MailedToken:
    token: str = s.text(max_length=128, min_length=1)


@attrs.frozen(kw_only=True)
class ResetRequest:
    email: str = email_field()


@attrs.frozen(kw_only=True)
class ResetConfirm:
    token: str = s.text(max_length=128, min_length=1)
    password: str = password_field()


@attrs.frozen(kw_only=True)
class PasswordChange:
    current_password: str = s.text(max_length=256, min_length=1, printable=False)
    new_password: str = password_field()


@attrs.frozen(kw_only=True)
class PasswordConfirm:
    password: str = s.text(max_length=256, min_length=1, printable=False)


@attrs.frozen(kw_only=True)
class ProfileBody:
    display_name: str | None = s.text(max_length=64, min_length=1, optional=True, default=None)
    country: str | None = s.text(
        max_length=2, min_length=2, pattern="^[A-Z]{2}$", optional=True, default=None
    )
    timezone: str = time_zone(default="UTC")

    def to_profile(self) -> Profile:
        return Profile(display_name=self.display_name, country=self.country, timezone=self.timezone)


@attrs.frozen(kw_only=True)
class QuietHoursBody:
    """Local times "HH:MM"; start after end wraps midnight; start and end must differ."""

    start: dt.time
    end: dt.time


@attrs.frozen(kw_only=True)
class PreferencesBody:
    channels: frozenset[NotificationChannel]
    quiet_hours: QuietHoursBody | None = None

    def to_preferences(self) -> Preferences:
        quiet = self.quiet_hours
        return Preferences(
            channels=self.channels,
            quiet_hours=QuietHours(start=quiet.start, end=quiet.end) if quiet else None,
        )


@attrs.frozen(kw_only=True)
class NewApiKeyBody:
    name: str = s.text(max_length=64, min_length=1)
    scopes: frozenset[ApiScope] = attrs.field(metadata={s.SCHEMA: {"minItems": 1}})

    @scopes.validator
    def _some(self, attribute: attrs.Attribute[frozenset[ApiScope]], value: object) -> None:
        if not value:
            raise s.FieldInvalid("scopes: name at least one scope")


@attrs.frozen(kw_only=True)
class UserView:
    id: str
    email: str
    email_verified: bool
    role: Role
    status: UserStatus
    referral_code: str
    profile: Profile
    preferences: Preferences
    created_at: dt.datetime

    @classmethod
    def of(cls, user: User) -> UserView:
        return cls(
            id=user.id,
            email=user.email,
            email_verified=user.email_verified,
            role=user.role,
            status=user.status,
            referral_code=user.referral_code,
            profile=user.profile,
            preferences=user.preferences,
            created_at=user.created_at,
        )


@attrs.frozen(kw_only=True)
class LoginView:
    """Send ``token`` as ``Authorization: Bearer <token>``."""

    token: str
    expires_at: dt.datetime
    user: UserView


@attrs.frozen(kw_only=True)
class SessionView:
    id: str
    created_at: dt.datetime
    expires_at: dt.datetime
    ip: str | None
    user_agent: str | None
    #: The session making this request.
    current: bool

    @classmethod
    def of(cls, session: Session, current: str | None) -> SessionView:
        return cls(
            id=session.token_hash,
            created_at=session.created_at,
            expires_at=session.expires_at,
            ip=session.ip,
            user_agent=session.user_agent,
            current=session.token_hash == current,
        )


@attrs.frozen(kw_only=True)
class ApiKeyView:
    id: str
    name: str
    prefix: str
    scopes: frozenset[ApiScope]
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyView:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            scopes=key.scopes,
            created_at=key.created_at,
            revoked_at=key.revoked_at,
            last_used_at=key.last_used_at,
        )


@attrs.frozen(kw_only=True)
class CreatedApiKey:
    """``key`` is shown this once: only its hash is kept."""

    key: str
    api_key: ApiKeyView

"""The rows of users, sessions, API keys and wallet links, to and from the domain's models
(:mod:`grass.storage.postgres.users` runs the queries)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from grass.domain.users import (
    ApiKey,
    ApiScope,
    Credentials,
    NotificationChannel,
    Preferences,
    Profile,
    QuietHours,
    Role,
    Session,
    User,
    UserStatus,
    WalletLink,
)
from grass.postgres.connection import Record
from grass.storage.postgres.rows import text_or_none

__all__ = [
    "KEY_COLUMNS",
    "SESSION_COLUMNS",
    "USER_COLUMNS",
    "api_key_of",
    "session_of",
    "user_args",
    "user_of",
    "wallet_of",
]

USER_COLUMNS = (
    "id, email, email_verified, role, status, referral_code, profile, preferences,"
    " password_hash, password_changed_at, created_at"
)


def _profile_json(profile: Profile) -> dict[str, Any]:
    return {
        "display_name": profile.display_name,
        "country": profile.country,
        "timezone": profile.timezone,
    }


def _preferences_json(prefs: Preferences) -> dict[str, Any]:
    quiet = prefs.quiet_hours
    return {
        "channels": sorted(prefs.channels),
        "quiet_hours": None
        if quiet is None
        else {"start": quiet.start.isoformat(), "end": quiet.end.isoformat()},
    }


def _preferences(data: dict[str, Any]) -> Preferences:
    quiet = data.get("quiet_hours")
    return Preferences(
        channels=frozenset(NotificationChannel(c) for c in data["channels"]),
        quiet_hours=None
        if quiet is None
        else QuietHours(
            start=dt.time.fromisoformat(quiet["start"]), end=dt.time.fromisoformat(quiet["end"])
        ),
    )


def user_of(row: Record) -> User:
    profile = row["profile"]
    return User(
        id=row["id"],
        email=row["email"],
        email_verified=row["email_verified"],
        role=Role(row["role"]),
        status=UserStatus(row["status"]),
        referral_code=row["referral_code"],
        profile=Profile(
            display_name=profile["display_name"],
            country=profile["country"],
            timezone=profile["timezone"],
        ),
        preferences=_preferences(row["preferences"]),
        credentials=Credentials(
            password_hash=row["password_hash"], changed_at=row["password_changed_at"]
        ),
        created_at=row["created_at"],
    )


def user_args(user: User) -> tuple[object, ...]:
    return (
        user.id,
        user.email,
        user.email_verified,
        user.role.value,
        user.status.value,
        user.referral_code,
        _profile_json(user.profile),
        _preferences_json(user.preferences),
        user.credentials.password_hash,
        user.credentials.changed_at,
        user.created_at,
    )


SESSION_COLUMNS = "token_hash, user_id, created_at, expires_at, revoked_at, ip, user_agent"


def session_of(row: Record) -> Session:
    return Session(
        token_hash=row["token_hash"],
        user_id=row["user_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        ip=text_or_none(row["ip"]),
        user_agent=row["user_agent"],
    )


KEY_COLUMNS = "id, user_id, name, key_hash, prefix, scopes, created_at, revoked_at, last_used_at"


def api_key_of(row: Record) -> ApiKey:
    return ApiKey(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        key_hash=row["key_hash"],
        prefix=row["prefix"],
        scopes=frozenset(ApiScope(s) for s in row["scopes"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


def wallet_of(row: Record) -> WalletLink:
    return WalletLink(user_id=row["user_id"], address=row["address"], linked_at=row["linked_at"])

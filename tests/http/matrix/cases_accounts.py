"""Matrix cases of the auth and me routes."""

from __future__ import annotations

import datetime as dt

from grass.domain.accounts import AccountToken, TokenPurpose
from grass.domain.bearer import hash_token, new_mail_token
from grass.ids import short_id
from tests.http.conftest import PASSWORD
from tests.http.matrix import Case, Request, World, static
from tests.storage.conftest import make_node_key


async def _register(world: World) -> Request:
    email = f"new-{short_id(6).lower()}@example.com".replace("_", "x")
    return Request(path="/api/v1/auth/register", json={"email": email, "password": "a password"})


def _mailed(purpose: TokenPurpose, path: str, **extra: str) -> Case:
    async def prepare(world: World) -> Request:
        secret, now = new_mail_token(), dt.datetime.now(dt.UTC)
        await world.storage.accounts.create_token(
            AccountToken(
                token_hash=hash_token(secret),
                user_id=world.owner.id,
                purpose=purpose,
                created_at=now,
                expires_at=now + dt.timedelta(hours=1),
            )
        )
        return Request(path=path, json={"token": secret, **extra})

    return Case(prepare=prepare)


async def _login(world: World) -> Request:
    return Request(
        path="/api/v1/auth/login", json={"email": world.owner.user.email, "password": PASSWORD}
    )


async def _owner_session(world: World) -> Request:
    return Request(path=f"/api/v1/me/sessions/{world.owner.session_hash}")


async def _owner_key(world: World) -> Request:
    return Request(path=f"/api/v1/me/api-keys/{world.owner.api_key_id}")


async def _owner_node_key(world: World) -> Request:
    key = make_node_key(world.owner.user)
    await world.storage.node_keys.create_node_key(key)
    return Request(path=f"/api/v1/me/node-keys/{key.id}")


CASES: dict[str, Case] = {
    "register": Case(prepare=_register),
    "verify_email": _mailed(TokenPurpose.VERIFY_EMAIL, "/api/v1/auth/verify-email"),
    "login": Case(prepare=_login),
    "logout": static("/api/v1/auth/logout"),
    "request_password_reset": static(
        "/api/v1/auth/password-reset", json={"email": "nobody@example.com"}
    ),
    "reset_password": _mailed(
        TokenPurpose.RESET_PASSWORD,
        "/api/v1/auth/password-reset/confirm",
        password="a new password",
    ),
    "get_me": static("/api/v1/me"),
    "set_profile": static(
        "/api/v1/me/profile",
        json={"display_name": "Ann", "country": "DE", "timezone": "Europe/Berlin"},
    ),
    "set_preferences": static(
        "/api/v1/me/preferences",
        json={"channels": ["in_app"], "quiet_hours": {"start": "22:00", "end": "07:00"}},
    ),
    "change_password": static(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "another password"},
    ),
    "resend_verification": static("/api/v1/me/email/verification"),
    "delete_me": static("/api/v1/me", json={"password": PASSWORD}),
    "list_sessions": static("/api/v1/me/sessions"),
    "revoke_session": Case(prepare=_owner_session, owned=True),
    "list_api_keys": static("/api/v1/me/api-keys"),
    "create_api_key": static(
        "/api/v1/me/api-keys", json={"name": "stats", "scopes": ["stats:read"]}
    ),
    "revoke_api_key": Case(prepare=_owner_key, owned=True),
    "list_node_keys": static("/api/v1/me/node-keys"),
    "create_node_key": static("/api/v1/me/node-keys", json={"name": "home"}),
    "revoke_node_key": Case(prepare=_owner_node_key, owned=True),
}

"""``/api/v1/me/*``: the signed-in user's account, sessions and API keys."""

from __future__ import annotations

import attrs

from grass.domain.pages import Page
from grass.errors import ValidationFailed
from grass.http import schema as s
from grass.http.api import Call, PageQuery, route
from grass.http.auth import USER
from grass.http.views import (
    ApiKeyView,
    CreatedApiKey,
    NewApiKeyBody,
    PasswordChange,
    PasswordConfirm,
    PreferencesBody,
    ProfileBody,
    SessionView,
    UserView,
)
from grass.services.account_settings import AccountSettings, ApiKeyNotFound, TooManyApiKeys
from grass.services.accounts import (
    Accounts,
    AlreadyVerified,
    LoginLocked,
    SessionNotFound,
    WrongPassword,
)

TAG = "me"


@attrs.frozen(kw_only=True)
class SessionPath:
    """A session's id is the SHA-256 of its token (``id`` in the session list)."""

    session_id: str = s.text(max_length=64, min_length=64, pattern=s.SHA256_PATTERN)


@attrs.frozen(kw_only=True)
class ApiKeyPath:
    key_id: str = s.text(max_length=21, min_length=21, pattern=s.SHORT_ID_PATTERN)


class MeRoutes:
    """The signed-in user's account, sessions and API keys."""

    def __init__(self, settings: AccountSettings, accounts: Accounts) -> None:
        self._settings = settings
        self._accounts = accounts

    @route("GET", "/api/v1/me", summary="My account", tag=TAG, auth=USER, response=UserView)
    async def get_me(self, call: Call) -> UserView:
        return UserView.of(await self._settings.user(call.user_id))

    @route(
        "PUT",
        "/api/v1/me/profile",
        summary="Set my profile (display name, country, timezone)",
        tag=TAG,
        auth=USER,
        body=ProfileBody,
        response=UserView,
    )
    async def set_profile(self, call: Call) -> UserView:
        body: ProfileBody = call.body
        return UserView.of(await self._settings.set_profile(call.user_id, body.to_profile()))

    @route(
        "PUT",
        "/api/v1/me/preferences",
        summary="Set my notification preferences (channels, quiet hours)",
        tag=TAG,
        auth=USER,
        body=PreferencesBody,
        response=UserView,
        errors=(ValidationFailed,),
        description="Quiet hours must not start and end at the same minute (422).",
    )
    async def set_preferences(self, call: Call) -> UserView:
        body: PreferencesBody = call.body
        return UserView.of(
            await self._settings.set_preferences(call.user_id, body.to_preferences())
        )

    @route(
        "POST",
        "/api/v1/me/password",
        summary="Change my password; my other sessions end",
        tag=TAG,
        auth=USER,
        body=PasswordChange,
        errors=(WrongPassword, LoginLocked),
        rate_limit="auth",
    )
    async def change_password(self, call: Call) -> None:
        body: PasswordChange = call.body
        await self._accounts.change_password(
            call.user_id, call.caller.session_hash, body.current_password, body.new_password
        )

    @route(
        "POST",
        "/api/v1/me/email/verification",
        summary="Send the verification mail again",
        tag=TAG,
        auth=USER,
        status=202,
        errors=(AlreadyVerified,),
        rate_limit="auth",
    )
    async def resend_verification(self, call: Call) -> None:
        await self._accounts.resend_verification(call.user_id)

    @route(
        "DELETE",
        "/api/v1/me",
        summary="Delete my account and everything that is mine",
        tag=TAG,
        auth=USER,
        body=PasswordConfirm,
        errors=(WrongPassword, LoginLocked),
        rate_limit="auth",
    )
    async def delete_me(self, call: Call) -> None:
        await self._accounts.delete_account(call.user_id, call.body.password)

    @route(
        "GET",
        "/api/v1/me/sessions",
        summary="My active sessions",
        tag=TAG,
        auth=USER,
        query=PageQuery,
        page_of=SessionView,
    )
    async def list_sessions(self, call: Call) -> Page[SessionView]:
        page = await self._accounts.sessions(
            call.user_id, cursor=call.query.cursor, limit=call.query.limit
        )
        current = call.caller.session_hash
        return page.map(lambda s: SessionView.of(s, current))

    @route(
        "DELETE",
        "/api/v1/me/sessions/<session_id>",
        path_fields=SessionPath,
        summary="End one of my sessions (its live sockets close)",
        tag=TAG,
        auth=USER,
        errors=(SessionNotFound,),
    )
    async def revoke_session(self, call: Call) -> None:
        await self._accounts.revoke_session(call.user_id, call.path["session_id"])

    @route(
        "GET",
        "/api/v1/me/api-keys",
        summary="My API keys (revoked ones too)",
        tag=TAG,
        auth=USER,
        query=PageQuery,
        page_of=ApiKeyView,
    )
    async def list_api_keys(self, call: Call) -> Page[ApiKeyView]:
        page = await self._settings.api_keys(
            call.user_id, cursor=call.query.cursor, limit=call.query.limit
        )
        return page.map(ApiKeyView.of)

    @route(
        "POST",
        "/api/v1/me/api-keys",
        summary="Create a read-only API key (shown once)",
        tag=TAG,
        auth=USER,
        body=NewApiKeyBody,
        response=CreatedApiKey,
        status=201,
        errors=(TooManyApiKeys,),
    )
    async def create_api_key(self, call: Call) -> CreatedApiKey:
        body: NewApiKeyBody = call.body
        created = await self._settings.create_api_key(call.user_id, body.name, body.scopes)
        return CreatedApiKey(key=created.secret, api_key=ApiKeyView.of(created.key))

    @route(
        "DELETE",
        "/api/v1/me/api-keys/<key_id>",
        path_fields=ApiKeyPath,
        summary="Revoke one of my API keys",
        tag=TAG,
        auth=USER,
        errors=(ApiKeyNotFound,),
    )
    async def revoke_api_key(self, call: Call) -> None:
        await self._settings.revoke_api_key(call.user_id, call.path["key_id"])

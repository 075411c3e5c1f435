"""``/api/v1/auth/*``: register, verify email, log in and out, reset a forgotten password."""

from __future__ import annotations

from grass.http.api import Call, route
from grass.http.auth import ANONYMOUS, USER
from grass.http.views import (
    Login,
    LoginView,
    MailedToken,
    Register,
    ResetConfirm,
    ResetRequest,
    UserView,
)
from grass.services.accounts import (
    AccountInactive,
    Accounts,
    EmailTaken,
    InvalidCredentials,
    LoginLocked,
    TokenRejected,
    UnknownReferralCode,
)

TAG = "auth"


class AuthRoutes:
    """Register, verify the email, log in and out, reset a forgotten password."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    @route(
        "POST",
        "/api/v1/auth/register",
        summary="Create an account (a verification mail is sent)",
        tag=TAG,
        auth=ANONYMOUS,
        body=Register,
        response=UserView,
        status=201,
        errors=(EmailTaken, UnknownReferralCode),
        rate_limit="auth",
    )
    async def register(self, call: Call) -> UserView:
        body: Register = call.body
        user = await self._accounts.register(body.email, body.password, body.referral_code)
        return UserView.of(user)

    @route(
        "POST",
        "/api/v1/auth/verify-email",
        summary="Confirm the email address with the mailed token",
        tag=TAG,
        auth=ANONYMOUS,
        body=MailedToken,
        response=UserView,
        errors=(TokenRejected,),
        rate_limit="auth",
    )
    async def verify_email(self, call: Call) -> UserView:
        return UserView.of(await self._accounts.verify_email(call.body.token))

    @route(
        "POST",
        "/api/v1/auth/login",
        summary="Log in: a session token",
        tag=TAG,
        auth=ANONYMOUS,
        body=Login,
        response=LoginView,
        errors=(InvalidCredentials, LoginLocked, AccountInactive),
        rate_limit="auth",
        description="Repeated failures lock the account and the address for a while (429).",
    )
    async def login(self, call: Call) -> LoginView:
        body: Login = call.body
        done = await self._accounts.login(body.email, body.password, call.ip, call.user_agent)
        return LoginView(
            token=done.token, expires_at=done.session.expires_at, user=UserView.of(done.user)
        )

    @route(
        "POST",
        "/api/v1/auth/logout",
        summary="End this session (its live sockets close)",
        tag=TAG,
        auth=USER,
    )
    async def logout(self, call: Call) -> None:
        assert call.caller.session_hash is not None  # USER admits sessions only
        await self._accounts.logout(call.user_id, call.caller.session_hash)

    @route(
        "POST",
        "/api/v1/auth/password-reset",
        summary="Mail a password-reset token (the answer is the same for unknown emails)",
        tag=TAG,
        auth=ANONYMOUS,
        body=ResetRequest,
        status=202,
        rate_limit="auth",
    )
    async def request_password_reset(self, call: Call) -> None:
        await self._accounts.request_password_reset(call.body.email)

    @route(
        "POST",
        "/api/v1/auth/password-reset/confirm",
        summary="Set a new password with the mailed token; every session ends",
        tag=TAG,
        auth=ANONYMOUS,
        body=ResetConfirm,
        errors=(TokenRejected,),
        rate_limit="auth",
    )
    async def reset_password(self, call: Call) -> None:
        await self._accounts.reset_password(call.body.token, call.body.password)

"""The mails accounts send: email verification and password reset.

Each carries a new single-use token: the mail holds the secret (in a link to the web app and
as text), the store only its hash; it expires after ``accounts.verify_token_ttl`` or
``accounts.reset_token_ttl``.
"""

from __future__ import annotations

import datetime as dt

from grass.config import Config
from grass.domain.accounts import AccountToken, Mail, TokenPurpose
from grass.domain.bearer import hash_token, new_mail_token
from grass.domain.users import User
from grass.services.mail import new_mail


def verification_mail(config: Config, user: User, now: dt.datetime) -> tuple[AccountToken, Mail]:
    """The token to store and the mail that carries it, to confirm the user's email address."""
    secret = new_mail_token()
    ttl = config.accounts.verify_token_ttl
    link = f"{config.http.public_url}/verify-email?token={secret}"
    body = (
        f"Welcome to grass.\n\nConfirm your email address by opening this link within "
        f"{int(ttl // 3600)} hours:\n\n{link}\n\nOr send this token: {secret}\n"
    )
    token = _token(secret, user, TokenPurpose.VERIFY_EMAIL, ttl, now)
    return token, new_mail(user.email, "Confirm your email address", body, now)


def reset_mail(config: Config, user: User, now: dt.datetime) -> tuple[AccountToken, Mail]:
    """The token to store and the mail that carries it, to set a forgotten password."""
    secret = new_mail_token()
    ttl = config.accounts.reset_token_ttl
    link = f"{config.http.public_url}/reset-password?token={secret}"
    body = (
        f"Someone asked to reset the password of your grass account.\n\nIf it was you, open "
        f"this link within {max(1, int(ttl // 60))} minutes:\n\n{link}\n\n"
        f"Or send this token: {secret}\n\nIf it was not you, ignore this mail.\n"
    )
    token = _token(secret, user, TokenPurpose.RESET_PASSWORD, ttl, now)
    return token, new_mail(user.email, "Reset your password", body, now)


def _token(
    secret: str, user: User, purpose: TokenPurpose, ttl: float, now: dt.datetime
) -> AccountToken:
    return AccountToken(
        token_hash=hash_token(secret),
        user_id=user.id,
        purpose=purpose,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=ttl),
    )

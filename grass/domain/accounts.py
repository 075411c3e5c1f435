"""Account housekeeping rows: single-use tokens (email verification, password reset) and the
mail outbox, whose rows outlive a crash so no mail is ever lost."""

from __future__ import annotations

import datetime as dt
import enum

import attrs

from grass.domain import _checks as check


#: IPv6 addresses are counted per network of this length (one subscriber's usual allocation).
class TokenPurpose(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"


@attrs.frozen(kw_only=True)
class AccountToken:
    """A token mailed to a user; the store keeps only its SHA-256. Used once, then dead."""

    token_hash: str = attrs.field(validator=check.hex_digest(64), repr=False)
    user_id: str = attrs.field(validator=check.short_id)
    purpose: TokenPurpose = attrs.field(validator=check.member(TokenPurpose))
    created_at: dt.datetime = attrs.field(validator=check.utc)
    expires_at: dt.datetime = attrs.field(validator=[check.utc, check.not_before("created_at")])
    used_at: dt.datetime | None = attrs.field(default=None, validator=check.optional_utc)

    def is_usable(self, now: dt.datetime) -> bool:
        return self.used_at is None and now < self.expires_at


class MailState(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up after the configured attempts


@attrs.frozen(kw_only=True)
class Mail:
    id: str = attrs.field(validator=check.short_id)
    recipient: str = attrs.field(validator=check.email)
    subject: str = attrs.field(validator=check.text(200))
    body: str = attrs.field(validator=check.text(20_000), repr=False)
    created_at: dt.datetime = attrs.field(validator=check.utc)
    #: When a sender may next take it (a claim moves it forward: a lease, not a lock).
    next_attempt_at: dt.datetime = attrs.field(validator=check.utc)
    attempts: int = attrs.field(default=0, validator=check.non_negative)
    sent_at: dt.datetime | None = attrs.field(default=None, validator=check.optional_utc)
    failed_at: dt.datetime | None = attrs.field(default=None, validator=check.optional_utc)
    last_error: str | None = attrs.field(default=None, validator=check.optional_text(1000))

    @property
    def state(self) -> MailState:
        if self.sent_at is not None:
            return MailState.SENT
        return MailState.FAILED if self.failed_at is not None else MailState.PENDING

"""AccountStore: account tokens, the mail outbox and failed-login records.

Part of :class:`grass.storage.abc.Stores` (``storage.accounts``), so a registration writes the
user, its referral links, its verification token and the mail carrying it in one unit of work.
Deleting a user deletes its tokens; mails and login failures are not keyed by user (the
account deletion drops the pending mails to its address itself).
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from grass.domain.accounts import AccountToken, Mail, TokenPurpose


class AccountStore(Protocol):
    async def create_token(self, token: AccountToken) -> None:
        """IntegrityViolation for an unknown user; StorageConflict for a hash already stored."""
        ...

    async def use_token(
        self, token_hash: str, purpose: TokenPurpose, at: dt.datetime
    ) -> AccountToken:
        """Mark the token used and return it, atomically: of two concurrent uses one wins.
        StorageNotFound when no unused token of that purpose exists or it expired by ``at``."""
        ...

    async def revoke_tokens(self, user_id: str, purpose: TokenPurpose, at: dt.datetime) -> int:
        """Mark the user's unused tokens of ``purpose`` used; how many were."""
        ...

    async def enqueue_mail(self, mail: Mail) -> None: ...

    async def delete_pending_mail(self, recipient: str) -> int:
        """Drop the mails to ``recipient`` not sent yet (an account being deleted); sent and
        failed ones stay as the delivery record. How many went."""
        ...

    async def get_mail(self, mail_id: str) -> Mail: ...

    async def claim_mail(
        self, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[Mail]:
        """Up to ``limit`` pending mails due by ``now`` (oldest due first), each leased until
        ``lease_until``: no other claim takes them before then, and a sender that dies lets
        them come back when the lease ends (at-least-once delivery)."""
        ...

    async def mail_sent(self, mail_id: str, at: dt.datetime) -> Mail:
        """One more attempt, and it succeeded."""
        ...

    async def mail_attempt_failed(
        self, mail_id: str, at: dt.datetime, error: str, retry_at: dt.datetime | None
    ) -> Mail:
        """One more attempt, and it failed: retry at ``retry_at``, or give up when None."""
        ...

    async def add_login_failure(self, key: str, at: dt.datetime) -> None: ...

    async def login_failures(self, key: str, since: dt.datetime, limit: int) -> list[dt.datetime]:
        """Times of the failures recorded under ``key`` at or after ``since``, newest first."""
        ...

    async def remove_login_failure(self, key: str, at: dt.datetime) -> None:
        """Take back one failure recorded under ``key`` at ``at`` (an attempt recorded before
        it was known not to be a failure); nothing if there is none."""
        ...

    async def clear_login_failures(self, key: str) -> None: ...

    async def delete_login_failures_before(self, before: dt.datetime) -> int: ...

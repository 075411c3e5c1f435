"""AccountStore in memory: tokens, the mail outbox and failed logins."""

from __future__ import annotations

import datetime as dt

import attrs

from grass.domain.accounts import AccountToken, Mail, TokenPurpose
from grass.errors import StorageNotFound
from grass.storage.memory._db import Scope, found


class MemoryAccountStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def create_token(self, token: AccountToken) -> None:
        async with self._scope.op() as db:
            db.require_user(token.user_id)
            db.accounts.tokens.insert(token)

    async def use_token(
        self, token_hash: str, purpose: TokenPurpose, at: dt.datetime
    ) -> AccountToken:
        async with self._scope.op() as db:
            token = db.accounts.tokens.get(token_hash)
            if token is None or token.purpose is not purpose or not token.is_usable(at):
                raise StorageNotFound("no such token, or it was used or expired")
            used = attrs.evolve(token, used_at=at)
            db.accounts.tokens.save(used)
            return used

    async def revoke_tokens(self, user_id: str, purpose: TokenPurpose, at: dt.datetime) -> int:
        async with self._scope.op() as db:
            revoked = 0
            for token in db.accounts.tokens.group("user", user_id):
                if token.purpose is purpose and token.used_at is None:
                    db.accounts.tokens.save(attrs.evolve(token, used_at=at))
                    revoked += 1
            return revoked

    async def enqueue_mail(self, mail: Mail) -> None:
        async with self._scope.op() as db:
            db.accounts.mail.insert(mail)

    async def delete_pending_mail(self, recipient: str) -> int:
        async with self._scope.op() as db:
            pending = [
                m.id
                for m in db.accounts.mail.rows()
                if m.recipient == recipient and m.sent_at is None and m.failed_at is None
            ]
            for mail_id in pending:
                db.accounts.mail.delete(mail_id)
            return len(pending)

    async def get_mail(self, mail_id: str) -> Mail:
        async with self._scope.op() as db:
            return found(db.accounts.mail.get(mail_id), "mail", mail_id)

    async def claim_mail(
        self, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[Mail]:
        async with self._scope.op() as db:
            due = sorted(
                (
                    m
                    for m in db.accounts.mail.rows()
                    if m.sent_at is None and m.failed_at is None and m.next_attempt_at <= now
                ),
                key=lambda m: (m.next_attempt_at, m.id),
            )[:limit]
            claimed = [attrs.evolve(m, next_attempt_at=lease_until) for m in due]
            for mail in claimed:
                db.accounts.mail.save(mail)
            return claimed

    async def mail_sent(self, mail_id: str, at: dt.datetime) -> Mail:
        async with self._scope.op() as db:
            mail = found(db.accounts.mail.get(mail_id), "mail", mail_id)
            done = attrs.evolve(mail, attempts=mail.attempts + 1, sent_at=at, last_error=None)
            db.accounts.mail.save(done)
            return done

    async def mail_attempt_failed(
        self, mail_id: str, at: dt.datetime, error: str, retry_at: dt.datetime | None
    ) -> Mail:
        async with self._scope.op() as db:
            mail = found(db.accounts.mail.get(mail_id), "mail", mail_id)
            failed = attrs.evolve(
                mail,
                attempts=mail.attempts + 1,
                last_error=error[:1000],
                next_attempt_at=retry_at or mail.next_attempt_at,
                failed_at=None if retry_at is not None else at,
            )
            db.accounts.mail.save(failed)
            return failed

    async def add_login_failure(self, key: str, at: dt.datetime) -> None:
        async with self._scope.op() as db:
            db.accounts.failures.insert((key, at, next(db.accounts.serial)))

    async def login_failures(self, key: str, since: dt.datetime, limit: int) -> list[dt.datetime]:
        async with self._scope.op() as db:
            times = sorted((f[1] for f in db.accounts.failures.group("key", key)), reverse=True)
            return [t for t in times if t >= since][:limit]

    async def remove_login_failure(self, key: str, at: dt.datetime) -> None:
        async with self._scope.op() as db:
            for failure in db.accounts.failures.group("key", key):
                if failure[1] == at:
                    db.accounts.failures.delete(failure)
                    return

    async def clear_login_failures(self, key: str) -> None:
        async with self._scope.op() as db:
            for failure in db.accounts.failures.group("key", key):
                db.accounts.failures.delete(failure)

    async def delete_login_failures_before(self, before: dt.datetime) -> int:
        async with self._scope.op() as db:
            old = [f for f in db.accounts.failures.rows() if f[1] < before]
            for failure in old:
                db.accounts.failures.delete(failure)
            return len(old)

"""AccountStore on PostgreSQL (migration 0002)."""

from __future__ import annotations

import datetime as dt

from grass.domain.accounts import AccountToken, Mail, TokenPurpose
from grass.errors import StorageNotFound
from grass.postgres.connection import Connection, Record
from grass.storage.postgres.rows import require, row_count
from grass.storage.postgres.scope import Scope

__all__ = ["PgAccountStore"]

_TOKEN = "token_hash, user_id, purpose, created_at, expires_at, used_at"
_MAIL = (
    "id, recipient, subject, body, created_at, next_attempt_at, attempts, sent_at, failed_at,"
    " last_error"
)


def _token(row: Record) -> AccountToken:
    return AccountToken(
        token_hash=row["token_hash"],
        user_id=row["user_id"],
        purpose=TokenPurpose(row["purpose"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
    )


def _mail(row: Record) -> Mail:
    return Mail(**{name: row[name] for name in _MAIL.replace(" ", "").split(",")})


class PgAccountStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def create_token(self, token: AccountToken) -> None:
        t = token

        async def insert(conn: Connection) -> None:
            await conn.execute(
                f"INSERT INTO account_tokens ({_TOKEN}) VALUES ($1, $2, $3, $4, $5, $6)",
                t.token_hash,
                t.user_id,
                t.purpose.value,
                t.created_at,
                t.expires_at,
                t.used_at,
            )

        await self._scope.write(insert)

    async def use_token(
        self, token_hash: str, purpose: TokenPurpose, at: dt.datetime
    ) -> AccountToken:
        async def use(conn: Connection) -> Record:
            # One statement: of two concurrent uses, the second finds used_at set.
            row: Record | None = await conn.fetchrow(
                f"UPDATE account_tokens SET used_at = $3 WHERE token_hash = $1 AND purpose = $2"
                f" AND used_at IS NULL AND expires_at > $3 RETURNING {_TOKEN}",
                token_hash,
                purpose.value,
                at,
            )
            if row is None:
                raise StorageNotFound("no such token, or it was used or expired")
            return row

        return _token(await self._scope.write(use))

    async def revoke_tokens(self, user_id: str, purpose: TokenPurpose, at: dt.datetime) -> int:
        async def revoke(conn: Connection) -> str:
            status: str = await conn.execute(
                "UPDATE account_tokens SET used_at = $3"
                " WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
                user_id,
                purpose.value,
                at,
            )
            return status

        return row_count(await self._scope.write(revoke))

    async def enqueue_mail(self, mail: Mail) -> None:
        m = mail

        async def insert(conn: Connection) -> None:
            await conn.execute(
                f"INSERT INTO mail_outbox ({_MAIL})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                m.id,
                m.recipient,
                m.subject,
                m.body,
                m.created_at,
                m.next_attempt_at,
                m.attempts,
                m.sent_at,
                m.failed_at,
                m.last_error,
            )

        await self._scope.write(insert)

    async def delete_pending_mail(self, recipient: str) -> int:
        async def delete(conn: Connection) -> str:
            status: str = await conn.execute(
                "DELETE FROM mail_outbox"
                " WHERE recipient = $1 AND sent_at IS NULL AND failed_at IS NULL",
                recipient,
            )
            return status

        return row_count(await self._scope.write(delete))

    async def get_mail(self, mail_id: str) -> Mail:
        async def fetch(conn: Connection) -> Record | None:
            row: Record | None = await conn.fetchrow(
                f"SELECT {_MAIL} FROM mail_outbox WHERE id = $1", mail_id
            )
            return row

        return _mail(require(await self._scope.read_primary(fetch), "mail", mail_id))

    async def claim_mail(
        self, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[Mail]:
        async def claim(conn: Connection) -> list[Record]:
            rows: list[Record] = await conn.fetch(
                f"UPDATE mail_outbox SET next_attempt_at = $2 WHERE id IN ("
                " SELECT id FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL"
                " AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $3"
                f" FOR UPDATE SKIP LOCKED) RETURNING {_MAIL}",
                now,
                lease_until,
                limit,
            )
            return rows

        rows = await self._scope.write(claim)
        return sorted((_mail(r) for r in rows), key=lambda m: m.id)

    async def mail_sent(self, mail_id: str, at: dt.datetime) -> Mail:
        async def sent(conn: Connection) -> Record:
            row: Record | None = await conn.fetchrow(
                "UPDATE mail_outbox SET attempts = attempts + 1, sent_at = $2, last_error = NULL"
                f" WHERE id = $1 RETURNING {_MAIL}",
                mail_id,
                at,
            )
            return require(row, "mail", mail_id)

        return _mail(await self._scope.write(sent))

    async def mail_attempt_failed(
        self, mail_id: str, at: dt.datetime, error: str, retry_at: dt.datetime | None
    ) -> Mail:
        async def failed(conn: Connection) -> Record:
            row: Record | None = await conn.fetchrow(
                "UPDATE mail_outbox SET attempts = attempts + 1, last_error = $3,"
                " next_attempt_at = coalesce($4, next_attempt_at),"
                " failed_at = CASE WHEN $4::timestamptz IS NULL THEN $2::timestamptz END"
                f" WHERE id = $1 RETURNING {_MAIL}",
                mail_id,
                at,
                error[:1000],
                retry_at,
            )
            return require(row, "mail", mail_id)

        return _mail(await self._scope.write(failed))

    async def add_login_failure(self, key: str, at: dt.datetime) -> None:
        async def insert(conn: Connection) -> None:
            await conn.execute("INSERT INTO login_failures (key, at) VALUES ($1, $2)", key, at)

        await self._scope.write(insert)

    async def login_failures(self, key: str, since: dt.datetime, limit: int) -> list[dt.datetime]:
        async def fetch(conn: Connection) -> list[Record]:
            rows: list[Record] = await conn.fetch(
                "SELECT at FROM login_failures WHERE key = $1 AND at >= $2"
                " ORDER BY at DESC LIMIT $3",
                key,
                since,
                limit,
            )
            return rows

        # The primary: a lockout must see the failure recorded a moment ago.
        return [row["at"] for row in await self._scope.read_primary(fetch)]

    async def remove_login_failure(self, key: str, at: dt.datetime) -> None:
        async def delete(conn: Connection) -> None:
            # SKIP LOCKED: attempts taken back at the same time each take back a row of their own.
            await conn.execute(
                "DELETE FROM login_failures WHERE ctid = (SELECT ctid FROM login_failures"
                " WHERE key = $1 AND at = $2 LIMIT 1 FOR UPDATE SKIP LOCKED)",
                key,
                at,
            )

        await self._scope.write(delete)

    async def clear_login_failures(self, key: str) -> None:
        async def delete(conn: Connection) -> None:
            await conn.execute("DELETE FROM login_failures WHERE key = $1", key)

        await self._scope.write(delete)

    async def delete_login_failures_before(self, before: dt.datetime) -> int:
        async def delete(conn: Connection) -> str:
            status: str = await conn.execute("DELETE FROM login_failures WHERE at < $1", before)
            return status

        return row_count(await self._scope.write(delete))

"""UserStore on PostgreSQL: users, sessions, API keys and wallet links (their rows:
:mod:`grass.storage.postgres.user_rows`)."""

from __future__ import annotations

import datetime as dt

from grass.domain.pages import (
    DEFAULT_PAGE_SIZE,
    Page,
    micros,
)
from grass.domain.users import (
    ApiKey,
    Session,
    User,
    WalletLink,
)
from grass.postgres.connection import Connection, Record
from grass.postgres.migrate import LOCK_CLASS
from grass.storage.postgres.rows import (
    after_time_text,
    page_of,
    require,
    require_rows,
    row_count,
)
from grass.storage.postgres.scope import Scope
from grass.storage.postgres.uptime_flush import DELETED_USERS_LOCK, merge_pending
from grass.storage.postgres.user_rows import (
    KEY_COLUMNS,
    SESSION_COLUMNS,
    USER_COLUMNS,
    api_key_of,
    session_of,
    user_args,
    user_of,
    wallet_of,
)

__all__ = ["PgUserStore"]


# --- the store ----------------------------------------------------------------------------------


class PgUserStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def create_user(self, user: User) -> None:
        async def insert(conn: Connection) -> None:
            await conn.execute(
                f"INSERT INTO users ({USER_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                *user_args(user),
            )

        await self._scope.write(insert)

    async def get_user(self, user_id: str) -> User:
        user = await self._find_user("id", user_id, required=True)
        assert user is not None
        return user

    async def find_user_by_email(self, email: str) -> User | None:
        return await self._find_user("email", email.strip().lower())

    async def find_user_by_referral_code(self, code: str) -> User | None:
        return await self._find_user("referral_code", code)

    async def _find_user(self, column: str, value: str, *, required: bool = False) -> User | None:
        async def find(conn: Connection) -> Record | None:
            row = await conn.fetchrow(
                f"SELECT {USER_COLUMNS} FROM users WHERE {column} = $1::text", value
            )
            return require(row, "user", value) if required else row

        row = await self._scope.read_primary(find)
        return None if row is None else user_of(row)

    async def update_user(self, user: User) -> None:
        async def update(conn: Connection) -> None:
            status = await conn.execute(
                "UPDATE users SET email = $2, email_verified = $3, role = $4, status = $5,"
                " referral_code = $6, profile = $7, preferences = $8, password_hash = $9,"
                " password_changed_at = $10, created_at = $11 WHERE id = $1::text",
                *user_args(user),
            )
            require_rows(status, "user", user.id)

        await self._scope.write(update)

    async def delete_user(self, user_id: str) -> None:
        async def delete(conn: Connection) -> None:
            # Uptime has no foreign keys (the flush is the hottest write): its rows go here,
            # after merging what is pending, so that a bucket whose latest delta names this
            # user goes too. Everything else but earnings cascades from the user. First, the
            # flushes under way commit (and no new one starts until this does): their deltas
            # are then seen, and go, and a later flush finds the devices gone.
            await conn.execute(DELETED_USERS_LOCK, LOCK_CLASS)
            await merge_pending(conn)
            await conn.execute("DELETE FROM uptime_buckets WHERE user_id = $1::text", user_id)
            # A flush that committed after the merge's snapshot: its deltas go too.
            await conn.execute("DELETE FROM uptime_deltas WHERE user_id = $1::text", user_id)
            status = await conn.execute("DELETE FROM users WHERE id = $1::text", user_id)
            # Raised inside the transaction: the deletes above are rolled back with it.
            require_rows(status, "user", user_id)
            # Earnings keys after the user (migration 0009): the user's row lock waited for
            # any writer that had locked it, and this statement sees what that writer wrote.
            # Their entries go with them (the statement trigger of migration 0005).
            await conn.execute(
                "DELETE FROM earnings_keys k USING earnings e"
                " WHERE e.user_id = $1::text AND k.idempotency_key = e.idempotency_key",
                user_id,
            )

        await self._scope.write(delete)

    async def list_users(
        self, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[User]:
        after_at, after_id = after_time_text(cursor, limit)

        async def fetch(conn: Connection) -> list[Record]:
            return await conn.fetch(
                f"SELECT {USER_COLUMNS} FROM users"
                ' WHERE $1::timestamptz IS NULL OR (created_at, id COLLATE "C") > ($1, $2::text)'
                ' ORDER BY created_at, id COLLATE "C" LIMIT $3',
                after_at,
                after_id,
                limit + 1,
            )

        rows = await self._scope.read(fetch)
        return page_of(rows, limit, user_of, lambda u: (micros(u.created_at), u.id))

    # --- sessions -------------------------------------------------------------------------------

    async def create_session(self, session: Session) -> None:
        async def insert(conn: Connection) -> None:
            await conn.execute(
                f"INSERT INTO sessions ({SESSION_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6::text::inet, $7)",
                session.token_hash,
                session.user_id,
                session.created_at,
                session.expires_at,
                session.revoked_at,
                session.ip,
                session.user_agent,
            )

        await self._scope.write(insert)

    async def get_session(self, token_hash: str) -> Session:
        async def find(conn: Connection) -> Record:
            row = await conn.fetchrow(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1::text", token_hash
            )
            return require(row, "session", "(hash)")

        return session_of(await self._scope.read_primary(find))

    async def revoke_session(self, token_hash: str, at: dt.datetime) -> Session:
        async def revoke(conn: Connection) -> Record:
            # COALESCE keeps the first revocation: revoking twice is harmless.
            row = await conn.fetchrow(
                "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2)"
                f" WHERE token_hash = $1::text RETURNING {SESSION_COLUMNS}",
                token_hash,
                at,
            )
            return require(row, "session", "(hash)")

        return session_of(await self._scope.write(revoke))

    async def revoke_user_sessions(
        self, user_id: str, at: dt.datetime, *, keep: str | None = None
    ) -> tuple[str, ...]:
        async def revoke(conn: Connection) -> list[Record]:
            return await conn.fetch(
                "UPDATE sessions SET revoked_at = $2"
                " WHERE user_id = $1::text AND revoked_at IS NULL"
                " AND token_hash IS DISTINCT FROM $3::text RETURNING token_hash",
                user_id,
                at,
                keep,
            )

        return tuple(sorted(row["token_hash"] for row in await self._scope.write(revoke)))

    async def list_sessions(
        self,
        user_id: str,
        *,
        active_at: dt.datetime | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Session]:
        before_at, before_hash = after_time_text(cursor, limit)

        async def fetch(conn: Connection) -> list[Record]:
            return await conn.fetch(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1::text"
                " AND ($2::timestamptz IS NULL OR (revoked_at IS NULL AND $2 < expires_at))"
                " AND ($3::timestamptz IS NULL"
                ' OR (created_at, token_hash COLLATE "C") < ($3, $4::text))'
                ' ORDER BY created_at DESC, token_hash COLLATE "C" DESC LIMIT $5',
                user_id,
                active_at,
                before_at,
                before_hash,
                limit + 1,
            )

        rows = await self._scope.read(fetch)
        return page_of(rows, limit, session_of, lambda s: (micros(s.created_at), s.token_hash))

    async def delete_sessions_expired_before(self, before: dt.datetime) -> int:
        async def delete(conn: Connection) -> str:
            return await conn.execute("DELETE FROM sessions WHERE expires_at < $1", before)

        return row_count(await self._scope.write(delete))

    # --- API keys -------------------------------------------------------------------------------

    async def count_live_api_keys(self, user_id: str) -> int:
        async def count(conn: Connection) -> int:
            await conn.execute("SELECT 1 FROM users WHERE id = $1::text FOR NO KEY UPDATE", user_id)
            live: int = await conn.fetchval(
                "SELECT count(*) FROM api_keys WHERE user_id = $1::text AND revoked_at IS NULL",
                user_id,
            )
            return live

        return await self._scope.write(count)

    async def create_api_key(self, key: ApiKey) -> None:
        async def insert(conn: Connection) -> None:
            await conn.execute(
                f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                key.id,
                key.user_id,
                key.name,
                key.key_hash,
                key.prefix,
                sorted(key.scopes),
                key.created_at,
                key.revoked_at,
                key.last_used_at,
            )

        await self._scope.write(insert)

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey:
        async def find(conn: Connection) -> Record:
            row = await conn.fetchrow(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1::text", key_hash
            )
            return require(row, "API key", "(hash)")

        return api_key_of(await self._scope.read_primary(find))

    async def list_api_keys(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[ApiKey]:
        before_at, before_id = after_time_text(cursor, limit)

        async def fetch(conn: Connection) -> list[Record]:
            return await conn.fetch(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = $1::text"
                ' AND ($2::timestamptz IS NULL OR (created_at, id COLLATE "C") < ($2, $3::text))'
                ' ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT $4',
                user_id,
                before_at,
                before_id,
                limit + 1,
            )

        rows = await self._scope.read(fetch)
        return page_of(rows, limit, api_key_of, lambda k: (micros(k.created_at), k.id))

    async def revoke_api_key(self, user_id: str, key_id: str, at: dt.datetime) -> ApiKey:
        async def revoke(conn: Connection) -> Record:
            row = await conn.fetchrow(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3)"
                f" WHERE id = $2::text AND user_id = $1::text RETURNING {KEY_COLUMNS}",
                user_id,
                key_id,
                at,
            )
            return require(row, "API key", key_id)

        return api_key_of(await self._scope.write(revoke))

    async def touch_api_key(self, key_id: str, at: dt.datetime) -> None:
        async def touch(conn: Connection) -> None:
            status = await conn.execute(
                "UPDATE api_keys SET last_used_at = $2 WHERE id = $1::text", key_id, at
            )
            require_rows(status, "API key", key_id)

        await self._scope.write(touch)

    # --- wallet ---------------------------------------------------------------------------------

    async def set_wallet(self, link: WalletLink) -> None:
        async def upsert(conn: Connection) -> None:
            await conn.execute(
                "INSERT INTO wallet_links (user_id, address, linked_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (user_id) DO UPDATE"
                " SET address = EXCLUDED.address, linked_at = EXCLUDED.linked_at",
                link.user_id,
                link.address,
                link.linked_at,
            )

        await self._scope.write(upsert)

    async def get_wallet(self, user_id: str) -> WalletLink | None:
        async def find(conn: Connection) -> Record | None:
            return await conn.fetchrow(
                "SELECT user_id, address, linked_at FROM wallet_links WHERE user_id = $1::text",
                user_id,
            )

        row = await self._scope.read_primary(find)
        return None if row is None else wallet_of(row)

    async def remove_wallet(self, user_id: str) -> None:
        async def delete(conn: Connection) -> None:
            status = await conn.execute(
                "DELETE FROM wallet_links WHERE user_id = $1::text", user_id
            )
            require_rows(status, "wallet of user", user_id)

        await self._scope.write(delete)

from __future__ import annotations

import datetime as dt

import attrs

from grass.domain.pages import DEFAULT_PAGE_SIZE, Page, micros
from grass.domain.users import ApiKey, Session, User, WalletLink
from grass.storage.memory._db import Scope, found, paginate


class MemoryUserStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def create_user(self, user: User) -> None:
        async with self._scope.op() as db:
            db.users.insert(user)

    async def get_user(self, user_id: str) -> User:
        async with self._scope.op() as db:
            return found(db.users.get(user_id), "user", user_id)

    async def find_user_by_email(self, email: str) -> User | None:
        async with self._scope.op() as db:
            return db.users.lookup("email", email.strip().lower())

    async def find_user_by_referral_code(self, code: str) -> User | None:
        async with self._scope.op() as db:
            return db.users.lookup("referral_code", code)

    async def update_user(self, user: User) -> None:
        async with self._scope.op() as db:
            found(db.users.get(user.id), "user", user.id)
            db.users.save(user)

    async def delete_user(self, user_id: str) -> None:
        async with self._scope.op() as db:
            found(db.users.delete(user_id), "user", user_id)
            for s in db.sessions.group("user", user_id):
                db.sessions.delete(s.token_hash)
            for k in db.api_keys.group("user", user_id):
                db.api_keys.delete(k.id)
            for node_key in db.node_keys.group("user", user_id):
                db.node_keys.delete(node_key.id)
            db.wallets.delete(user_id)
            for d in db.devices.group("user", user_id):
                db.devices.delete(d.device_id)
            for b in db.uptime.group("user", user_id):
                db.uptime.delete(b.key)
            for e in db.earnings.group("user", user_id):
                db.earnings.delete(e.id)
            for r in db.referrals.group("referrer", user_id) + db.referrals.group(
                "referee", user_id
            ):
                db.referrals.delete((r.referrer_id, r.referee_id))
            for n in db.notifications.group("user", user_id):
                db.notifications.delete(n.id)
            db.accounts.delete_user(user_id)
            db.admin.forget_user(user_id)

    async def list_users(
        self, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[User]:
        async with self._scope.op() as db:
            return paginate(
                db.users.rows(),
                lambda u: (micros(u.created_at), u.id),
                (int, str),
                descending=False,
                cursor=cursor,
                limit=limit,
            )

    async def create_session(self, session: Session) -> None:
        async with self._scope.op() as db:
            db.require_user(session.user_id)
            db.sessions.insert(session)

    async def get_session(self, token_hash: str) -> Session:
        async with self._scope.op() as db:
            return found(db.sessions.get(token_hash), "session", "(hash)")

    async def revoke_session(self, token_hash: str, at: dt.datetime) -> Session:
        async with self._scope.op() as db:
            session = found(db.sessions.get(token_hash), "session", "(hash)")
            if session.revoked_at is None:
                session = attrs.evolve(session, revoked_at=at)
                db.sessions.save(session)
            return session

    async def revoke_user_sessions(
        self, user_id: str, at: dt.datetime, *, keep: str | None = None
    ) -> tuple[str, ...]:
        async with self._scope.op() as db:
            revoked = []
            for s in db.sessions.group("user", user_id):
                if s.revoked_at is None and s.token_hash != keep:
                    db.sessions.save(attrs.evolve(s, revoked_at=at))
                    revoked.append(s.token_hash)
            return tuple(sorted(revoked))

    async def list_sessions(
        self,
        user_id: str,
        *,
        active_at: dt.datetime | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Session]:
        async with self._scope.op() as db:
            rows = [
                s
                for s in db.sessions.group("user", user_id)
                if active_at is None or s.is_active(active_at)
            ]
            return paginate(
                rows,
                lambda s: (micros(s.created_at), s.token_hash),
                (int, str),
                descending=True,
                cursor=cursor,
                limit=limit,
            )

    async def delete_sessions_expired_before(self, before: dt.datetime) -> int:
        async with self._scope.op() as db:
            expired = [s.token_hash for s in db.sessions.rows() if s.expires_at < before]
            for token_hash in expired:
                db.sessions.delete(token_hash)
            return len(expired)

    async def create_api_key(self, key: ApiKey) -> None:
        async with self._scope.op() as db:
            db.require_user(key.user_id)
            db.api_keys.insert(key)

    async def count_live_api_keys(self, user_id: str) -> int:
        async with self._scope.op() as db:  # a unit of work holds the storage's lock
            return sum(1 for k in db.api_keys.group("user", user_id) if k.revoked_at is None)

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey:
        async with self._scope.op() as db:
            return found(db.api_keys.lookup("hash", key_hash), "API key", "(hash)")

    async def list_api_keys(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[ApiKey]:
        async with self._scope.op() as db:
            return paginate(
                db.api_keys.group("user", user_id),
                lambda k: (micros(k.created_at), k.id),
                (int, str),
                descending=True,
                cursor=cursor,
                limit=limit,
            )

    async def revoke_api_key(self, user_id: str, key_id: str, at: dt.datetime) -> ApiKey:
        async with self._scope.op() as db:
            key = db.api_keys.get(key_id)
            key = found(
                key if key is not None and key.user_id == user_id else None, "API key", key_id
            )
            if key.revoked_at is None:
                key = attrs.evolve(key, revoked_at=at)
                db.api_keys.save(key)
            return key

    async def touch_api_key(self, key_id: str, at: dt.datetime) -> None:
        async with self._scope.op() as db:
            key = found(db.api_keys.get(key_id), "API key", key_id)
            db.api_keys.save(attrs.evolve(key, last_used_at=at))

    async def set_wallet(self, link: WalletLink) -> None:
        async with self._scope.op() as db:
            db.require_user(link.user_id)
            db.wallets.save(link)

    async def get_wallet(self, user_id: str) -> WalletLink | None:
        async with self._scope.op() as db:
            return db.wallets.get(user_id)

    async def remove_wallet(self, user_id: str) -> None:
        async with self._scope.op() as db:
            found(db.wallets.delete(user_id), "wallet of user", user_id)

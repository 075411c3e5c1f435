"""UserStore: users with their sessions, API keys and wallet link (grass.domain.users).

Part of :class:`grass.storage.abc.Stores` (``storage.users``); the conventions of
:mod:`grass.storage.abc` apply.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from grass.domain.pages import DEFAULT_PAGE_SIZE, Page
from grass.domain.users import ApiKey, Session, User, WalletLink

__all__ = ["UserStore"]


class UserStore(Protocol):
    """Users with their sessions, API keys and wallet link.

    Unique: user id, email (stored folded), referral code; session token hash; API key id and
    hash; wallet address (one user each). Deleting a user deletes everything keyed by it:
    sessions, API keys, node keys, wallet, devices, uptime buckets, earnings, referrals on
    either side and notifications. Referral credits other users earned from it stay theirs.
    """

    async def create_user(self, user: User) -> None: ...
    async def get_user(self, user_id: str) -> User: ...
    async def find_user_by_email(self, email: str) -> User | None: ...
    async def find_user_by_referral_code(self, code: str) -> User | None: ...
    async def update_user(self, user: User) -> None: ...
    async def delete_user(self, user_id: str) -> None: ...
    async def list_users(
        self, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[User]:
        """Order: created_at, id (ascending)."""
        ...

    async def create_session(self, session: Session) -> None: ...
    async def get_session(self, token_hash: str) -> Session:
        """Revoked and expired sessions too: the caller decides with ``Session.is_active``."""
        ...

    async def revoke_session(self, token_hash: str, at: dt.datetime) -> Session:
        """Idempotent: an already revoked session keeps its first ``revoked_at``."""
        ...

    async def revoke_user_sessions(
        self, user_id: str, at: dt.datetime, *, keep: str | None = None
    ) -> tuple[str, ...]:
        """Revoke every unrevoked session of the user but ``keep``; the hashes revoked now."""
        ...

    async def list_sessions(
        self,
        user_id: str,
        *,
        active_at: dt.datetime | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Session]:
        """Order: created_at, token_hash (descending). ``active_at``: only sessions active then."""
        ...

    async def delete_sessions_expired_before(self, before: dt.datetime) -> int: ...

    async def create_api_key(self, key: ApiKey) -> None: ...

    async def count_live_api_keys(self, user_id: str) -> int:
        """The user's keys not revoked. In a unit of work the user's row stays locked until it
        ends, so that creates checking a cap count one after another."""
        ...

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey: ...
    async def list_api_keys(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[ApiKey]:
        """Order: created_at, id (descending); revoked keys included."""
        ...

    async def revoke_api_key(self, user_id: str, key_id: str, at: dt.datetime) -> ApiKey:
        """NotFound unless the key is the user's; idempotent like ``revoke_session``."""
        ...

    async def touch_api_key(self, key_id: str, at: dt.datetime) -> None: ...

    async def set_wallet(self, link: WalletLink) -> None:
        """Link or replace the user's wallet; an address linked to another user conflicts."""
        ...

    async def get_wallet(self, user_id: str) -> WalletLink | None: ...
    async def remove_wallet(self, user_id: str) -> None: ...

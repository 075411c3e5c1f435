"""Who is calling: a bearer token resolved to the principal it stands for.

Two kinds of bearer token arrive in ``Authorization: Bearer <token>`` (and in the live socket's
first message), told apart by prefix:

- ``gs_...`` a login session (grass.domain.users.Session): full access to the user's own
  objects, revocable, expiring;
- ``gk_...`` a read-only API key (grass.domain.users.ApiKey): accepted only by routes whose
  policy names one of the key's scopes (grass.http.auth).

Only the SHA-256 of a token is ever stored or looked up. An ended session, a revoked key and an
account that is not active are refused here, for every adapter alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import attrs

from grass.domain.bearer import API_KEY_PREFIX, SESSION_PREFIX, hash_token
from grass.domain.users import ApiKey, Role, User, UserStatus
from grass.errors import StorageNotFound, Unauthenticated
from grass.services.accounts import AccountInactive
from grass.storage.users import UserStore

__all__ = ["Authenticator", "InvalidToken", "Principal", "TokenEnded"]

#: A key's ``last_used_at`` is written at most this often: reads must not become writes.
TOUCH_INTERVAL = dt.timedelta(minutes=1)


@attrs.frozen
class Principal:
    """The authenticated caller."""

    user: User
    #: Set for a session; the hash of its token (the session's key in the store).
    session_hash: str | None = None
    api_key: ApiKey | None = None

    @property
    def user_id(self) -> str:
        return self.user.id

    @property
    def is_admin(self) -> bool:
        return self.session_hash is not None and self.user.role is Role.ADMIN


class InvalidToken(Unauthenticated):
    code = "invalid_token"


class TokenEnded(InvalidToken):
    """A token that was real: an ended session, a revoked key. A stale tab or a reconnecting
    socket, not a guess: it does not spend the address's auth budget."""


class Authenticator:
    """Resolves bearer tokens through the user store (sessions and keys are both hashed)."""

    def __init__(self, users: UserStore, clock: Callable[[], dt.datetime]) -> None:
        self._users = users
        self._clock = clock

    async def resolve(self, bearer: str) -> Principal:
        digest = hash_token(bearer)
        now = self._clock()
        try:
            if bearer.startswith(SESSION_PREFIX):
                session = await self._users.get_session(digest)
                if not session.is_active(now):
                    raise TokenEnded("the session has ended; log in again")
                user = await self._users.get_user(session.user_id)
                principal = Principal(user, session_hash=digest)
            elif bearer.startswith(API_KEY_PREFIX):
                key = await self._users.get_api_key_by_hash(digest)
                if key.revoked_at is not None:
                    raise TokenEnded("the API key was revoked")
                user = await self._users.get_user(key.user_id)
                if key.last_used_at is None or now - key.last_used_at >= TOUCH_INTERVAL:
                    await self._users.touch_api_key(key.id, now)
                principal = Principal(user, api_key=key)
            else:
                raise InvalidToken("unknown token")
        except StorageNotFound:
            raise InvalidToken("unknown token") from None
        if user.status is not UserStatus.ACTIVE:
            raise AccountInactive(f"the account is {user.status.value}")
        return principal

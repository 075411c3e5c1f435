"""Who is calling: bearer tokens, the principal they resolve to, and route auth policies.

Two kinds of bearer token arrive in ``Authorization: Bearer <token>``, told apart by prefix:

- ``gs_...`` a login session (grass.domain.users.Session): full access to the user's own
  objects, revocable, expiring;
- ``gk_...`` a read-only API key (grass.domain.users.ApiKey): accepted only by routes whose
  policy names one of the key's scopes.

Only the SHA-256 of a token is ever stored or looked up. A policy is checked before the
handler runs; object-level checks (a user sees only their own objects, 404 otherwise) are the
handler's, through :func:`owned`.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable

import attrs

from grass.domain.bearer import (
    API_KEY_PREFIX,
    SESSION_PREFIX,
    hash_token,
    new_api_key,
    new_session_token,
)
from grass.domain.users import ApiKey, ApiScope, Role, User, UserStatus
from grass.errors import Forbidden, NotFound, Unauthenticated
from grass.services.admin import NotAdmin
from grass.storage.abc import StorageNotFound, UserStore

__all__ = [
    "ADMIN",
    "ANONYMOUS",
    "USER",
    "Access",
    "Authenticator",
    "Policy",
    "Principal",
    "authorize",
    "hash_token",
    "new_api_key",
    "new_session_token",
    "owned",
    "user_or_key",
]
#: A key's ``last_used_at`` is written at most this often: reads must not become writes.
TOUCH_INTERVAL = dt.timedelta(minutes=1)


class Access(enum.StrEnum):
    ANONYMOUS = "anonymous"  # anyone; a valid bearer is still resolved (logout needs it)
    USER = "user"  # a session (or an API key with a listed scope)
    ADMIN = "admin"  # a session of a user whose role is admin


@attrs.frozen
class Policy:
    """Who may call a route."""

    access: Access
    #: API keys with any of these scopes are accepted too (read routes only).
    api_scopes: frozenset[ApiScope] = frozenset()

    @property
    def needs_auth(self) -> bool:
        return self.access is not Access.ANONYMOUS

    def describe(self) -> str:
        if self.access is Access.ANONYMOUS:
            return "No authentication."
        if self.access is Access.ADMIN:
            return "A session of an admin."
        if self.api_scopes:
            scopes = ", ".join(sorted(self.api_scopes))
            return f"A session, or an API key with scope {scopes}."
        return "A session (API keys are refused)."


ANONYMOUS = Policy(Access.ANONYMOUS)
USER = Policy(Access.USER)
ADMIN = Policy(Access.ADMIN)


def user_or_key(*scopes: ApiScope) -> Policy:
    """A session, or an API key holding one of ``scopes``."""
    if not scopes:
        raise ValueError("name at least one scope")
    return Policy(Access.USER, frozenset(scopes))


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


class ApiKeyRefused(Forbidden):
    code = "api_key_not_allowed"


class ScopeMissing(Forbidden):
    code = "insufficient_scope"


class AccountInactive(Forbidden):
    code = "account_inactive"


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


def authorize(policy: Policy, principal: Principal | None) -> None:
    """Raise 401 or 403 unless ``principal`` may call a route with ``policy``."""
    if not policy.needs_auth:
        return
    if principal is None:
        raise Unauthenticated("authentication required: send Authorization: Bearer <token>")
    if principal.api_key is not None:
        if policy.access is Access.ADMIN or not policy.api_scopes:
            raise ApiKeyRefused("this route does not accept API keys; use a session")
        if not policy.api_scopes & principal.api_key.scopes:
            needed = ", ".join(sorted(policy.api_scopes))
            raise ScopeMissing(f"the API key needs one of the scopes: {needed}")
    if policy.access is Access.ADMIN and not principal.is_admin:
        raise NotAdmin("admins only")


def owned(owner_id: str, principal: Principal, what: str = "object") -> None:
    """Object-level authorization: another user's object is reported as missing (404), so ids
    of others' objects cannot even be probed."""
    if owner_id != principal.user_id:
        raise NotFound(f"no such {what}")

"""The signed-in user's own account: profile, preferences and read-only API keys."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection

import attrs

from grass.config import Config
from grass.domain.bearer import API_KEY_SHOWN, hash_token, new_api_key
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page
from grass.domain.users import ApiKey, ApiScope, Preferences, Profile, User
from grass.errors import Conflict, NotFound, StorageNotFound
from grass.ids import short_id
from grass.services.live import LiveEvents
from grass.storage.abc import Storage


class TooManyApiKeys(Conflict):
    code = "too_many_api_keys"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"


@attrs.frozen
class NewApiKey:
    key: ApiKey
    #: The key itself: shown once, never stored.
    secret: str


class AccountSettings:
    """The signed-in user's profile, preferences and API keys."""

    def __init__(
        self,
        storage: Storage,
        config: Callable[[], Config],
        clock: Callable[[], dt.datetime],
        events: LiveEvents,
    ) -> None:
        self._storage = storage
        self._config = config
        self._clock = clock
        self._events = events

    async def user(self, user_id: str) -> User:
        return await self._storage.users.get_user(user_id)

    async def set_profile(self, user_id: str, profile: Profile) -> User:
        async with self._storage.transaction() as tx:
            user = attrs.evolve(await tx.users.get_user(user_id), profile=profile)
            await tx.users.update_user(user)
        return user

    async def set_preferences(self, user_id: str, preferences: Preferences) -> User:
        async with self._storage.transaction() as tx:
            user = attrs.evolve(await tx.users.get_user(user_id), preferences=preferences)
            await tx.users.update_user(user)
        return user

    async def create_api_key(
        self, user_id: str, name: str, scopes: Collection[ApiScope]
    ) -> NewApiKey:
        most = self._config().accounts.max_api_keys
        secret = new_api_key()
        key = ApiKey(
            id=short_id(),
            user_id=user_id,
            name=name,
            key_hash=hash_token(secret),
            prefix=secret[:API_KEY_SHOWN],
            scopes=frozenset(scopes),
            created_at=self._clock(),
        )
        async with self._storage.transaction() as tx:
            live = await tx.users.count_live_api_keys(user_id)
            if live >= most:
                raise TooManyApiKeys(f"at most {most} live API keys; revoke one first")
            await tx.users.create_api_key(key)
        return NewApiKey(key, secret)

    async def api_keys(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[ApiKey]:
        return await self._storage.users.list_api_keys(user_id, cursor=cursor, limit=limit)

    async def revoke_api_key(self, user_id: str, key_id: str) -> ApiKey:
        """Revoke the key; the live sockets opened with it close."""
        try:
            key = await self._storage.users.revoke_api_key(user_id, key_id, self._clock())
        except StorageNotFound:
            raise ApiKeyNotFound("no such API key") from None
        await self._events.api_key_revoked(user_id, key_id)
        return key

"""Node keys: how a user's nodes prove whose they are (hardening #13, finding 6).

A Grass v4 node names its user in its AUTH answer (``user_id``), a v5 node in its check-in
(``userId``). A user id is no secret (it was shown to referrers, it sits in logs), so taking it
as proof let anyone connect devices under anyone. A node now sends a node key there instead: a
secret the user creates (``POST /api/v1/me/node-keys``), shown once and stored as its SHA-256
like an API key. A bare user id is accepted only while ``node.allow_legacy_auth`` is on (off by
default), for v4 clients not migrated yet.

Revoking a key disconnects the nodes that joined with it, on every instance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Protocol

import attrs

from grass.config import Config
from grass.domain.bearer import hash_token, is_node_key, new_node_key
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page
from grass.domain.users import NodeKey
from grass.errors import Conflict, NotFound, StorageNotFound, Unauthenticated
from grass.ids import is_short_id, short_id
from grass.services.unsplit import store_and_announce
from grass.storage.abc import Storage
from grass.storage.node_keys import NodeKeyStore
from grass.storage.users import UserStore

#: Characters of a node key shown in lists, so a user can tell keys apart.
NODE_KEY_SHOWN = 10


class TooManyNodeKeys(Conflict):
    code = "too_many_node_keys"


class NodeKeyNotFound(NotFound):
    code = "node_key_not_found"


class UnknownNodeKey(Unauthenticated):
    code = "unknown_node_key"
    ws_close_code = 1008


class NodeKeyRequired(Unauthenticated):
    code = "node_key_required"
    ws_close_code = 1008


class UnknownUser(Unauthenticated):
    code = "unknown_user"
    ws_close_code = 1008


class NodeStores(Protocol):
    @property
    def users(self) -> UserStore: ...
    @property
    def node_keys(self) -> NodeKeyStore: ...


class KeyDisconnect(Protocol):
    async def node_key_revoked(self, user_id: str, key_id: str) -> None:
        """Close the nodes of ``user_id`` that authenticated with the key, on every instance."""
        ...


@attrs.frozen
class NodeIdentity:
    """Who a node is: its user, and the node key it proved it with (None: a legacy user id,
    or a check-in token's claims)."""

    user_id: str
    key_id: str | None = None


async def identify_node(stores: NodeStores, credential: str, *, allow_legacy: bool) -> NodeIdentity:
    """The user a node's credential names: a live node key, or (legacy) an existing user's id.
    UnknownNodeKey, NodeKeyRequired or UnknownUser otherwise (all 401, close 1008)."""
    if is_node_key(credential):
        key = await stores.node_keys.find_node_key(hash_token(credential))
        if key is None or key.revoked_at is not None:
            raise UnknownNodeKey("unknown or revoked node key")
        return NodeIdentity(key.user_id, key.id)
    if not allow_legacy:
        raise NodeKeyRequired(
            "send a node key where the user id goes (create one: POST /api/v1/me/node-keys)"
        )
    if not is_short_id(credential):
        raise UnknownUser("unknown user")
    try:
        await stores.users.get_user(credential)
    except StorageNotFound:
        raise UnknownUser("unknown user") from None
    return NodeIdentity(credential)


@attrs.frozen
class NewNodeKey:
    key: NodeKey
    #: The key itself: shown once, never stored.
    secret: str


class NodeKeys:
    """The signed-in user's node keys."""

    def __init__(
        self,
        storage: Storage,
        config: Callable[[], Config],
        clock: Callable[[], dt.datetime],
        nodes: KeyDisconnect,
    ) -> None:
        self._storage = storage
        self._config = config
        self._clock = clock
        self._nodes = nodes

    async def create(self, user_id: str, name: str) -> NewNodeKey:
        most = self._config().accounts.max_node_keys
        secret = new_node_key()
        key = NodeKey(
            id=short_id(),
            user_id=user_id,
            name=name,
            key_hash=hash_token(secret),
            prefix=secret[:NODE_KEY_SHOWN],
            created_at=self._clock(),
        )
        async with self._storage.transaction() as tx:
            if await tx.node_keys.count_live_node_keys(user_id) >= most:
                raise TooManyNodeKeys(f"at most {most} live node keys; revoke one first")
            await tx.node_keys.create_node_key(key)
        return NewNodeKey(key, secret)

    async def list(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[NodeKey]:
        return await self._storage.node_keys.list_node_keys(user_id, cursor=cursor, limit=limit)

    async def revoke(self, user_id: str, key_id: str) -> NodeKey:
        """Revoke the key (stored first, so a reconnect is refused), then disconnect the
        nodes that joined with it; a cancellation cannot separate the two."""
        with store_and_announce():
            try:
                key = await self._storage.node_keys.revoke_node_key(user_id, key_id, self._clock())
            except StorageNotFound:
                raise NodeKeyNotFound("no such node key") from None
            await self._nodes.node_key_revoked(user_id, key_id)
        return key

"""NodeKeyStore: the keys a user's nodes authenticate with (grass.domain.users.NodeKey).

Part of :class:`grass.storage.abc.Stores` (``storage.node_keys``), so a key is created under
the cap in one unit of work. Unique: key id and key hash. Every key belongs to an existing user
(IntegrityViolation); deleting the user deletes its keys.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from grass.domain.pages import DEFAULT_PAGE_SIZE, Page
from grass.domain.users import NodeKey


class NodeKeyStore(Protocol):
    async def create_node_key(self, key: NodeKey) -> None: ...

    async def count_live_node_keys(self, user_id: str) -> int:
        """The user's keys not revoked. In a unit of work the user's row stays locked until it
        ends, so that creates checking a cap count one after another."""
        ...

    async def find_node_key(self, key_hash: str) -> NodeKey | None:
        """The key with this hash, revoked or not (the caller decides), or None."""
        ...

    async def list_node_keys(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[NodeKey]:
        """Order: created_at, id (descending); revoked keys included."""
        ...

    async def revoke_node_key(self, user_id: str, key_id: str, at: dt.datetime) -> NodeKey:
        """NotFound unless the key is the user's; an already revoked key keeps its first
        ``revoked_at``."""
        ...

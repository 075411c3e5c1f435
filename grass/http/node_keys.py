"""``/api/v1/me/node-keys``: the keys my nodes authenticate with (grass.services.node_keys).

A node sends its key where a Grass client sends the user id: the AUTH answer's ``user_id`` on
the node socket, or the check-in's ``userId``. Session only: a read-only API key manages none.
"""

from __future__ import annotations

import datetime as dt

import attrs

from grass.domain.pages import Page
from grass.domain.users import NodeKey
from grass.http import schema as s
from grass.http.api import Call, PageQuery, route
from grass.http.auth import USER
from grass.services.node_keys import NodeKeyNotFound, NodeKeys, TooManyNodeKeys

TAG = "me"


@attrs.frozen(kw_only=True)
class NewNodeKeyBody:
    """A name to tell the key apart (the machine or the place its nodes run)."""

    name: str = s.text(max_length=64, min_length=1)


@attrs.frozen(kw_only=True)
class NodeKeyView:
    id: str
    name: str
    #: The key's first characters.
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, key: NodeKey) -> NodeKeyView:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )


@attrs.frozen(kw_only=True)
class CreatedNodeKey:
    """``key`` is shown this once (only its hash is kept): put it in the node's user-id field
    (v4 AUTH ``user_id``, v5 check-in ``userId``)."""

    key: str
    node_key: NodeKeyView


@attrs.frozen(kw_only=True)
class NodeKeyPath:
    key_id: str = s.text(max_length=21, min_length=21, pattern=s.SHORT_ID_PATTERN)


class NodeKeyRoutes:
    """The keys my nodes authenticate with (grass.services.node_keys)."""

    def __init__(self, node_keys: NodeKeys) -> None:
        self._node_keys = node_keys

    @route(
        "GET",
        "/api/v1/me/node-keys",
        summary="My node keys (revoked ones too)",
        tag=TAG,
        auth=USER,
        query=PageQuery,
        page_of=NodeKeyView,
    )
    async def list_node_keys(self, call: Call) -> Page[NodeKeyView]:
        page = await self._node_keys.list(
            call.user_id, cursor=call.query.cursor, limit=call.query.limit
        )
        return page.map(NodeKeyView.of)

    @route(
        "POST",
        "/api/v1/me/node-keys",
        summary="Create a node key (shown once)",
        description="What my nodes authenticate with: a Grass v4 node sends it as the AUTH "
        "answer's user_id, a v5 node as the check-in's userId.",
        tag=TAG,
        auth=USER,
        body=NewNodeKeyBody,
        response=CreatedNodeKey,
        status=201,
        errors=(TooManyNodeKeys,),
    )
    async def create_node_key(self, call: Call) -> CreatedNodeKey:
        created = await self._node_keys.create(call.user_id, call.body.name)
        return CreatedNodeKey(key=created.secret, node_key=NodeKeyView.of(created.key))

    @route(
        "DELETE",
        "/api/v1/me/node-keys/<key_id>",
        path_fields=NodeKeyPath,
        summary="Revoke one of my node keys",
        description="The nodes connected with it are disconnected (close code 4008) and "
        "refused from then on.",
        tag=TAG,
        auth=USER,
        errors=(NodeKeyNotFound,),
    )
    async def revoke_node_key(self, call: Call) -> None:
        await self._node_keys.revoke(call.user_id, call.path["key_id"])

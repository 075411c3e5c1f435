"""Matrix cases of the routes every app has, and of POST /checkin."""

from __future__ import annotations

import uuid

from grass.domain.bearer import hash_token, new_node_key
from tests.http.matrix import Case, Request, World, static
from tests.storage.conftest import make_node_key


async def _checkin(world: World) -> Request:
    key = new_node_key()  # what a node sends where Grass clients send the user id
    await world.storage.node_keys.create_node_key(
        make_node_key(world.owner.user, key_hash=hash_token(key))
    )
    body = {
        "browserId": str(uuid.uuid4()),
        "userId": key,
        "version": "5.1.1",
        "deviceType": "extension",
    }
    return Request(path="/checkin", json=body)


CASES: dict[str, Case] = {
    "healthz": static("/healthz"),
    "readyz": static("/readyz"),
    "metrics_endpoint": static("/metrics"),
    "openapi": static("/openapi.json"),
    "docs": static("/docs"),
    "checkin": Case(prepare=_checkin),
}

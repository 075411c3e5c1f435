"""Matrix cases of the routes every app has, and of POST /checkin."""

from __future__ import annotations

import uuid

from tests.http.matrix import Case, Request, World, static


async def _checkin(world: World) -> Request:
    body = {
        "browserId": str(uuid.uuid4()),
        "userId": world.owner.id,
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

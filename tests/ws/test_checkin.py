"""POST /checkin: the v5 token, its binding, and errors in the API's shape."""

from __future__ import annotations

import uuid

import attrs
import pytest

from grass.app import LiveConfig
from grass.config import Config
from grass.http.app import create_app
from grass.http.checkin import add_checkin_routes
from grass.metrics import Metrics
from grass.storage.memory import MemoryStorage
from grass.ws import token as tokens
from grass.ws.gateway import Gateway
from tests.http.helpers import guard_for
from tests.storage.conftest import make_user

NOW = 1_700_000_000.0
FROM = {"client": ("127.0.0.1", 50000)}


async def ready() -> dict[str, str]:
    return {}


@pytest.fixture
async def client_and_user():
    base = Config()
    config = attrs.evolve(
        base,
        server=attrs.evolve(base.server, node_public_address="nodes.example:4650"),
        node=attrs.evolve(base.node, allowed_extension_ids=("goodext",)),
    )
    storage = MemoryStorage()
    user = make_user()
    await storage.users.create_user(user)
    live = LiveConfig(config)
    metrics = Metrics()
    gateway = Gateway(storage, live, metrics, lambda: NOW, token_key=b"k" * 32)
    app = create_app(metrics=metrics, readiness=ready, guard=guard_for(storage.users))
    add_checkin_routes(app, gateway, storage.users, live)
    return app.test_client(), user.id, gateway


def body(user_id: str, **overrides) -> dict:
    return {
        "browserId": str(uuid.uuid4()).upper(),
        "userId": user_id,
        "version": "5.1.1",
        "extensionId": "goodext",
        "userAgent": "Mozilla/5.0",
        "deviceType": "extension",
        "somethingNew": True,  # later clients add keys: tolerated
    } | overrides


async def test_checkin_issues_a_token_bound_to_user_device_and_ip(client_and_user):
    client, user_id, gateway = client_and_user
    sent = body(user_id)
    response = await client.post("/checkin", json=sent, scope_base=FROM)
    assert response.status_code == 201
    data = await response.get_json()
    assert data["destinations"] == ["nodes.example:4650"]
    claims = tokens.verify(gateway.token_key, data["token"], "127.0.0.1", NOW + 1)
    assert claims.user_id == user_id
    assert claims.device_id == sent["browserId"].lower()
    with pytest.raises(tokens.TokenIpMismatch):
        tokens.verify(gateway.token_key, data["token"], "10.0.0.1", NOW + 1)
    with pytest.raises(tokens.TokenExpired):
        tokens.verify(gateway.token_key, data["token"], "127.0.0.1", NOW + 301)


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"browserId": "not-a-uuid"}, 422, "validation_failed"),
        ({"deviceType": "toaster"}, 422, "validation_failed"),
        ({"version": 5}, 422, "validation_failed"),
        ({"userId": "x" * 21}, 401, "unknown_user"),
        ({"userId": "short"}, 401, "unknown_user"),
        ({"extensionId": "evil"}, 403, "extension_not_allowed"),
    ],
)
async def test_checkin_errors(client_and_user, overrides, status, code):
    client, user_id, _ = client_and_user
    response = await client.post("/checkin", json=body(user_id, **overrides), scope_base=FROM)
    assert response.status_code == status
    assert (await response.get_json())["error"]["code"] == code


async def test_checkin_rejects_a_body_that_is_not_an_object(client_and_user):
    client, _, _ = client_and_user
    response = await client.post("/checkin", data=b"[1, 2", scope_base=FROM)
    assert response.status_code == 400
    assert (await response.get_json())["error"]["code"] == "invalid_input"


async def test_checkin_without_a_client_address_is_refused(client_and_user):
    client, user_id, _ = client_and_user
    response = await client.post("/checkin", json=body(user_id))  # the test client: "<local>"
    assert response.status_code == 400

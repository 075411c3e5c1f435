"""POST /checkin: the v5 token, its binding, and errors in the API's shape."""

from __future__ import annotations

import uuid

import attrs
import pytest

from grass.config import Config
from grass.domain.bearer import hash_token, new_node_key
from grass.http.api import api_of
from grass.http.app import create_app
from grass.http.checkin import CheckinRoutes
from grass.metrics import Metrics
from grass.nodes import token as tokens
from grass.nodes.gateway import Gateway
from grass.running import RunningConfig
from grass.storage.memory import MemoryStorage
from tests.http.helpers import guard_for
from tests.storage.conftest import make_node_key, make_user

NOW = 1_700_000_000.0
FROM = {"client": ("127.0.0.1", 50000)}


async def ready() -> dict[str, str]:
    return {}


async def checkin_app(*, legacy: bool):
    """The check-in route; ``user`` is what the body's userId carries: a node key of the
    user (the default), or its id (``legacy``)."""
    base = Config()
    config = attrs.evolve(
        base,
        server=attrs.evolve(base.server, node_public_address="nodes.example:4650"),
        node=attrs.evolve(base.node, allowed_extension_ids=("goodext",), allow_legacy_auth=legacy),
    )
    storage = MemoryStorage()
    user = make_user()
    await storage.users.create_user(user)
    key = new_node_key()
    stored = make_node_key(user, key_hash=hash_token(key))
    await storage.node_keys.create_node_key(stored)
    running = RunningConfig(config)
    metrics = Metrics()
    gateway = Gateway(storage, running, metrics, lambda: NOW, token_key=b"k" * 32)
    app = create_app(metrics=metrics, readiness=ready, guard=guard_for(storage.users))
    api_of(app).add_resource(CheckinRoutes(gateway, storage, running))
    return app.test_client(), user.id, key, gateway, storage, stored


@pytest.fixture
async def client_and_user():
    client, user_id, key, gateway, _, _ = await checkin_app(legacy=False)
    return client, key, gateway, user_id


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
    client, key, gateway, user_id = client_and_user
    sent = body(key)
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
        ({"userId": "x" * 21}, 401, "node_key_required"),
        ({"userId": "short"}, 401, "node_key_required"),
        ({"userId": "gn_" + "x" * 43}, 401, "unknown_node_key"),
        ({"extensionId": "evil"}, 403, "extension_not_allowed"),
    ],
)
async def test_checkin_errors(client_and_user, overrides, status, code):
    client, key, _, _ = client_and_user
    response = await client.post("/checkin", json=body(key, **overrides), scope_base=FROM)
    assert response.status_code == status
    assert (await response.get_json())["error"]["code"] == code


async def test_checkin_rejects_a_body_that_is_not_an_object(client_and_user):
    client, _, _, _ = client_and_user
    response = await client.post("/checkin", data=b"[1, 2", scope_base=FROM)
    assert response.status_code == 400
    assert (await response.get_json())["error"]["code"] == "invalid_input"


async def test_checkin_without_a_client_address_is_refused(client_and_user):
    client, key, _, _ = client_and_user
    response = await client.post("/checkin", json=body(key))  # the test client: "<local>"
    assert response.status_code == 400


async def test_a_bare_user_id_is_proof_only_with_legacy_auth():
    """Hardening #13, finding 6: a user id was enough to check in (and connect) nodes under
    it. Without legacy auth it needs a node key; with it (an operator's choice) a user id
    works, and an unknown one is still refused."""
    client, user_id, key, gateway, storage, stored = await checkin_app(legacy=False)
    refused = await client.post("/checkin", json=body(user_id), scope_base=FROM)
    assert refused.status_code == 401
    assert (await refused.get_json())["error"]["code"] == "node_key_required"
    await storage.node_keys.revoke_node_key(user_id, stored.id, stored.created_at)
    revoked = await client.post("/checkin", json=body(key), scope_base=FROM)
    assert (await revoked.get_json())["error"]["code"] == "unknown_node_key"

    client, user_id, _, gateway, _, _ = await checkin_app(legacy=True)
    response = await client.post("/checkin", json=body(user_id), scope_base=FROM)
    assert response.status_code == 201
    token = (await response.get_json())["token"]
    assert tokens.verify(gateway.token_key, token, "127.0.0.1", NOW).user_id == user_id
    unknown = await client.post("/checkin", json=body("x" * 21), scope_base=FROM)
    assert (await unknown.get_json())["error"]["code"] == "unknown_user"

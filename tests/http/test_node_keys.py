"""``/api/v1/me/node-keys`` over the app as ``grass serve`` builds it, and the key at check-in."""

from __future__ import annotations

import uuid

from grass.domain.bearer import hash_token
from tests.http.conftest import make_actor, open_full_app, quick_config
from tests.http.helpers import bearer

FROM = {"client": ("127.0.0.1", 50000)}


def checkin_body(user_id: str) -> dict:
    return {
        "browserId": str(uuid.uuid4()),
        "userId": user_id,
        "version": "5.1.1",
        "deviceType": "extension",
    }


async def test_a_node_key_is_shown_once_checks_in_and_is_revoked():
    async with open_full_app(quick_config(accounts={"max_node_keys": 2})) as full:
        me = await make_actor(full.storage)
        other = await make_actor(full.storage)
        client = full.client()
        auth = bearer(me.session_token)
        created = await client.post("/api/v1/me/node-keys", json={"name": "attic"}, headers=auth)
        assert created.status_code == 201
        body = await created.get_json()
        key, view = body["key"], body["node_key"]
        assert key.startswith("gn_")
        assert view["prefix"] == key[:10]
        assert view["revoked_at"] is None
        stored = await full.storage.node_keys.find_node_key(hash_token(key))
        assert stored is not None  # only its hash is kept
        assert stored.user_id == me.id
        listed = await (await client.get("/api/v1/me/node-keys", headers=auth)).get_json()
        assert [k["id"] for k in listed["items"]] == [view["id"]]
        assert key not in str(listed)

        # The key checks a v5 node in; the user id alone does not (legacy auth is off).
        checked = await client.post("/checkin", json=checkin_body(key), scope_base=FROM)
        assert checked.status_code == 201
        bare = await client.post("/checkin", json=checkin_body(me.id), scope_base=FROM)
        assert bare.status_code == 401
        assert (await bare.get_json())["error"]["code"] == "node_key_required"

        second = await client.post("/api/v1/me/node-keys", json={"name": "b"}, headers=auth)
        assert second.status_code == 201
        third = await client.post("/api/v1/me/node-keys", json={"name": "c"}, headers=auth)
        assert third.status_code == 409
        assert (await third.get_json())["error"]["code"] == "too_many_node_keys"

        path = f"/api/v1/me/node-keys/{view['id']}"
        theirs = await client.delete(path, headers=bearer(other.session_token))
        assert theirs.status_code == 404
        assert (await client.delete(path, headers=auth)).status_code == 204
        refused = await client.post("/checkin", json=checkin_body(key), scope_base=FROM)
        assert (await refused.get_json())["error"]["code"] == "unknown_node_key"
        listed = await (await client.get("/api/v1/me/node-keys", headers=auth)).get_json()
        revoked = next(k for k in listed["items"] if k["id"] == view["id"])
        assert revoked["revoked_at"] is not None
        # A revoked key frees its place under the cap.
        again = await client.post("/api/v1/me/node-keys", json={"name": "c"}, headers=auth)
        assert again.status_code == 201

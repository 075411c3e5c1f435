"""The request pipeline on a small app of its own: validation, auth policies, pagination,
ETags, rate limits, CORS and the error shape."""

from __future__ import annotations

import attrs
import pytest

from grass.config import LimitsConfig
from grass.domain.pages import Page, encode_cursor
from grass.domain.users import ApiScope, Role
from grass.errors import NotFound
from grass.http import schema as s
from grass.http.api import Call, PageQuery, api_of
from grass.http.app import create_app
from grass.http.auth import ADMIN, ANONYMOUS, USER, owned, user_or_key
from grass.metrics import Metrics
from grass.storage.memory import MemoryStorage
from tests.http.conftest import make_actor
from tests.http.helpers import bearer, guard_for


@attrs.frozen(kw_only=True)
class Thing:
    name: str = s.text(max_length=8, min_length=1)
    size: int = s.integer(minimum=0, maximum=10, default=0)
    tags: frozenset[str] = frozenset()


@attrs.frozen(kw_only=True)
class ThingQuery(PageQuery):
    prefix: str | None = s.text(max_length=4, optional=True, default=None)


async def ready() -> dict[str, str]:
    return {}


@pytest.fixture
async def world():
    storage = MemoryStorage()
    owner = await make_actor(storage)
    other = await make_actor(storage)
    admin = await make_actor(storage, role=Role.ADMIN)
    limits = LimitsConfig(auth_requests_per_minute=3, api_requests_per_minute=1000)
    app = create_app(
        metrics=Metrics(),
        readiness=ready,
        guard=guard_for(storage.users, limits=limits),
        cors_origins=lambda: ("https://app.example",),
    )
    api = api_of(app)

    @api.route(
        "POST",
        "/things",
        summary="make",
        tag="t",
        auth=ANONYMOUS,
        body=Thing,
        response=Thing,
        status=201,
        rate_limit="auth",
    )
    async def make(call: Call) -> Thing:
        return call.body

    @api.route(
        "GET",
        "/things",
        summary="list",
        tag="t",
        auth=user_or_key(ApiScope.STATS_READ),
        query=ThingQuery,
        page_of=Thing,
    )
    async def things(call: Call) -> Page[Thing]:
        q = call.query
        names = [n for n in "abcdefg" if q.prefix is None or n.startswith(q.prefix)]
        start = int(q.cursor or "0")
        chunk = names[start : start + q.limit]
        more = start + q.limit < len(names)
        return Page(tuple(Thing(name=n) for n in chunk), str(start + q.limit) if more else None)

    @api.route(
        "GET",
        "/things/<owner_id>",
        summary="one",
        tag="t",
        auth=USER,
        response=Thing,
        errors=(NotFound,),
    )
    async def one(call: Call) -> Thing:
        owned(call.path["owner_id"], call.caller, "thing")
        return Thing(name="mine")

    @api.route("DELETE", "/admin/things", summary="wipe", tag="t", auth=ADMIN)
    async def wipe(call: Call) -> None:
        return None

    return app.test_client(), owner, other, admin


async def error_of(response):
    body = await response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


async def test_a_valid_body_is_structured_and_echoed(world):
    client, *_ = world
    response = await client.post("/things", json={"name": "a", "size": 3, "tags": ["x", "y"]})
    assert response.status_code == 201
    assert await response.get_json() == {"name": "a", "size": 3, "tags": ["x", "y"]}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": "a", "colour": "red"}, "colour", "unknown field"),
        ({"size": 1}, "name", "required"),
        ({"name": 5}, "name", "must be a string"),
        ({"name": "a", "size": "3"}, "size", "must be an integer"),
        ({"name": "a", "size": True}, "size", "must be an integer"),
        ({"name": "a", "size": 11}, "size", "must be from 0 to 10"),
        ({"name": "too long a name"}, "name", "must be 1 to 8 characters"),
        ({"name": "a", "tags": ["x", "x"]}, "tags", "must not repeat an item"),
        ({"name": "a", "tags": "x"}, "tags", "must be an array"),
    ],
)
async def test_bad_bodies_get_a_422_naming_the_field(world, body, field, message):
    client, *_ = world
    response = await client.post("/things", json=body)
    assert response.status_code == 422
    error = await error_of(response)
    assert error["code"] == "validation_failed"
    assert error["details"]["fields"][field] == message


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[1, 2]", b'"text"'])
async def test_malformed_bodies_are_400(world, raw):
    client, *_ = world
    response = await client.post("/things", data=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert (await error_of(response))["code"] == "invalid_input"


async def test_policies_answer_401_and_403(world):
    client, owner, _other, admin = world
    assert (await client.get("/things")).status_code == 401
    bad = await client.get("/things", headers=bearer("gs_nonsense"))
    assert bad.status_code == 401
    assert (await error_of(bad))["code"] == "invalid_token"
    assert (await client.get("/things", headers=bearer(owner.api_key))).status_code == 200
    refused = await client.get(f"/things/{owner.id}", headers=bearer(owner.api_key))
    assert refused.status_code == 403
    assert (await error_of(refused))["code"] == "api_key_not_allowed"
    not_admin = await client.delete("/admin/things", headers=bearer(owner.session_token))
    assert not_admin.status_code == 403
    assert (await error_of(not_admin))["code"] == "admin_only"
    assert (await client.delete("/admin/things", headers=bearer(admin.api_key))).status_code == 403
    assert (
        await client.delete("/admin/things", headers=bearer(admin.session_token))
    ).status_code == 204


async def test_another_users_object_is_404(world):
    client, owner, other, _ = world
    mine = await client.get(f"/things/{owner.id}", headers=bearer(owner.session_token))
    assert mine.status_code == 200
    theirs = await client.get(f"/things/{owner.id}", headers=bearer(other.session_token))
    assert theirs.status_code == 404
    assert (await error_of(theirs))["message"] == "no such thing"


async def test_pages_follow_cursors_and_queries_are_checked(world):
    client, owner, *_ = world
    auth = bearer(owner.session_token)
    seen, cursor = [], None
    while True:
        query = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        page = await (await client.get("/things", query_string=query, headers=auth)).get_json()
        seen += [t["name"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list("abcdefg")
    for query, field in [
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"what": "1"}, "what"),
    ]:
        response = await client.get("/things", query_string=query, headers=auth)
        assert response.status_code == 422
        assert field in (await error_of(response))["details"]["fields"]
    assert encode_cursor(["x"])  # the storage's cursors are opaque strings like these


async def test_gets_carry_an_etag_and_answer_304_when_it_matches(world):
    client, owner, *_ = world
    auth = bearer(owner.session_token)
    first = await client.get("/things", headers=auth)
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, no-cache"
    again = await client.get("/things", headers=auth | {"If-None-Match": etag})
    assert again.status_code == 304
    assert await again.get_data() == b""
    other_page = await client.get(
        "/things", query_string={"limit": "2"}, headers=auth | {"If-None-Match": etag}
    )
    assert other_page.status_code == 200


async def test_auth_routes_are_limited_per_ip_with_retry_after(world):
    client, *_ = world
    statuses = [(await client.post("/things", json={"name": "a"})).status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    limited = await client.post("/things", json={"name": "a"})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert (await error_of(limited))["details"]["retry_after"] > 0


async def test_cors_allows_listed_origins_only(world):
    client, owner, *_ = world
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    allowed = await client.options("/things", headers=preflight)
    assert allowed.status_code == 204
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    refused = await client.options(
        "/things", headers=preflight | {"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
    simple = await client.get(
        "/things", headers=bearer(owner.session_token) | {"Origin": "https://app.example"}
    )
    assert simple.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Origin" in simple.headers["Vary"]


async def test_unknown_routes_and_methods_use_the_error_shape(world):
    client, *_ = world
    missing = await client.get("/nowhere")
    assert missing.status_code == 404
    assert (await error_of(missing))["code"] == "not_found"
    wrong = await client.put("/things")
    assert wrong.status_code == 405
    assert "POST" in wrong.headers["Allow"]
    await error_of(wrong)

"""Bodies are parsed by grass.jsontext: nesting too deep and strings that are not UTF-8 text get
a 422 naming the field, before anything is stored (on memory and PostgreSQL).

100 000 nested ``[`` (200 KB, under the 1 MiB cap) killed the process with a segfault in the
JSON decoder once py_ecc had raised the recursion limit; a ``\\udfff`` escape in a display name
was stored on memory (then ``/me`` answered 500 for good) and was a 500 on PostgreSQL.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import attrs
import pytest

from grass.domain.pages import encode_cursor
from grass.http import schema as s
from grass.ids import new_uuid
from tests.http.conftest import PASSWORD, make_actor, open_full_app
from tests.http.helpers import bearer
from tests.storage.conftest import BACKENDS, pg_storage_schema  # noqa: F401

BACKEND_PARAMS = [
    pytest.param(name, marks=[pytest.mark.postgres] if name == "postgres" else [])
    for name in sorted(BACKENDS)
]
BODY_ROUTES = [
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/register"),
    ("POST", "/checkin"),
    ("PUT", "/api/v1/me/profile"),
]
NOT_TEXT = "must be UTF-8 text (a lone surrogate is not)"


def _json(body: Any, auth: dict[str, str]) -> dict[str, Any]:
    # json.dumps escapes a lone surrogate (ensure_ascii): the body itself is valid UTF-8.
    return {"data": json.dumps(body), "headers": {"Content-Type": "application/json", **auth}}


async def test_a_deeply_nested_body_is_refused_and_the_app_keeps_serving() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # what py_ecc set: the depth is measured before parsing
    try:
        async with open_full_app() as full:
            me = await make_actor(full.storage)
            client = full.client()
            headers = {"Content-Type": "application/json", **bearer(me.session_token)}
            for method, path in BODY_ROUTES:
                response = await client.open(path, method=method, data=deep, headers=headers)
                assert response.status_code == 422, path
                error = (await response.get_json())["error"]
                assert error["code"] == "json_too_deep"
                assert error["details"]["fields"] == {
                    "body": "must not nest more than 128 levels deep"
                }
            login = {"email": me.user.email, "password": PASSWORD}
            response = await client.post("/api/v1/auth/login", json=login)
            assert response.status_code == 200
            assert (await client.get("/healthz")).status_code == 200
    finally:
        sys.setrecursionlimit(limit)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
async def test_strings_that_are_not_text_are_refused_and_me_keeps_working(
    request: pytest.FixtureRequest, backend: str
) -> None:
    async with BACKENDS[backend](request) as storage, open_full_app(storage=storage) as full:
        me = await make_actor(storage)
        client = full.client()
        auth = bearer(me.session_token)
        checkin = {
            "browserId": new_uuid(),
            "userId": me.id,
            "version": "4\udfff",
            "deviceType": "extension",
        }
        calls = [
            ("PUT", "/api/v1/me/profile", {"display_name": "Zoë\udfff"}, "display_name"),
            ("PUT", "/api/v1/me/profile", {"display_name": "a", "\udfff": 1}, "body"),
            (
                "POST",
                "/api/v1/auth/register",
                {"email": "new@example.com", "password": "long enough\ud800"},
                "password",
            ),
            (
                "POST",
                "/api/v1/auth/login",
                {"email": me.user.email, "password": "\udfff"},
                "password",
            ),
            (
                "POST",
                "/api/v1/me/password",
                {"current_password": PASSWORD, "new_password": "brand new \udfff"},
                "new_password",
            ),
            ("POST", "/checkin", checkin, "version"),
        ]
        for method, path, body, field in calls:
            response = await client.open(path, method=method, **_json(body, auth))
            assert response.status_code == 422, (path, body)
            error = (await response.get_json())["error"]
            assert error["code"] == "invalid_text"
            assert error["details"]["fields"] == {field: NOT_TEXT}

        response = await client.get("/api/v1/me", headers=auth)
        assert response.status_code == 200
        assert (await response.get_json())["profile"]["display_name"] is None
        # The password did not change, and nobody registered.
        login = {"email": me.user.email, "password": PASSWORD}
        assert (await client.post("/api/v1/auth/login", json=login)).status_code == 200
        assert await storage.users.find_user_by_email("new@example.com") is None
        # A pair of surrogate escapes is one character: text like any other.
        response = await client.put(
            "/api/v1/me/profile", **_json({"display_name": "Zoë \U0001f600"}, auth)
        )
        assert response.status_code == 200
        assert (await response.get_json())["profile"]["display_name"] == "Zoë \U0001f600"


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
async def test_a_cursor_holding_a_lone_surrogate_is_malformed(
    request: pytest.FixtureRequest, backend: str
) -> None:
    async with BACKENDS[backend](request) as storage, open_full_app(storage=storage) as full:
        me = await make_actor(storage)
        cursor = encode_cursor([1_700_000_000_000_000, "\udfff"])
        response = await full.client().get(
            f"/api/v1/me/sessions?cursor={cursor}", headers=bearer(me.session_token)
        )
        assert response.status_code == 400
        assert (await response.get_json())["error"]["code"] == "invalid_page"


def test_text_fields_refuse_lone_surrogates() -> None:
    """The converter's own check, for text that reaches it without the JSON parser (query
    strings cannot carry one: h11 takes ASCII targets only and werkzeug leaves undecodable
    percent escapes as they are)."""

    @attrs.frozen(kw_only=True)
    class Query:
        name: str = s.text(max_length=64)
        secret: str = s.text(max_length=64, printable=False)

    assert s.structure({"name": "Zoë 😀", "secret": "x"}, Query, what="query")
    for field in ("name", "secret"):
        values = {"name": "ok", "secret": "ok"} | {field: "a\udfff"}
        with pytest.raises(s.ValidationFailed) as raised:
            s.structure(values, Query, what="query")
        assert raised.value.details["fields"] == {field: NOT_TEXT}

"""One error shape on the app ``grass serve`` builds: every 422 names its fields in
``details.fields``, path parameters are checked before a handler runs, 405 and 413 keep the
shape too."""

from __future__ import annotations

import pytest

from grass.domain._checks import InvalidModel
from grass.domain.users import Role
from grass.errors import ValidationFailed
from grass.http.schema import field_errors
from tests.http.conftest import make_actor
from tests.http.helpers import bearer


async def error_of(response) -> dict:
    body = await response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


async def fields_of(response) -> dict[str, str]:
    assert response.status_code == 422, await response.get_data()
    error = await error_of(response)
    assert error["code"] == "validation_failed"
    fields = error["details"]["fields"]
    assert fields
    assert all(isinstance(v, str) for v in fields.values())
    return fields


def test_domain_validators_are_folded_into_the_one_shape():
    folded = field_errors(InvalidModel("name", "must be a flag name"))
    assert folded.details == {"fields": {"name": "must be a flag name"}}
    plain = field_errors(ValidationFailed("no field here"))
    assert plain.details == {"fields": {}}
    kept = field_errors(ValidationFailed("x", details={"fields": {"a": "b"}}))
    assert kept.details == {"fields": {"a": "b"}}


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("PUT", "/api/v1/admin/flags/Bad Name!", "name"),
        ("DELETE", "/api/v1/admin/flags/UPPER", "name"),
        ("POST", "/api/v1/admin/bans/not-an-id/lift", "ban_id"),
        ("DELETE", "/api/v1/admin/connections/not-a-uuid", "device_id"),
    ],
)
async def test_admin_path_parameters_are_validated(full_app, method, path, field):
    admin = await make_actor(full_app.storage, role=Role.ADMIN)
    response = await full_app.client().open(
        path, method=method, json={"enabled": True}, headers=bearer(admin.session_token)
    )
    assert field in await fields_of(response)


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/api/v1/devices/NOT-A-UUID", "device_id"),
        ("POST", "/api/v1/devices/0000/pause", "device_id"),
        ("DELETE", "/api/v1/me/sessions/abc", "session_id"),
        ("DELETE", "/api/v1/me/api-keys/x", "key_id"),
    ],
)
async def test_user_path_parameters_are_validated(full_app, method, path, field):
    me = await make_actor(full_app.storage)
    response = await full_app.client().open(path, method=method, headers=bearer(me.session_token))
    assert field in await fields_of(response)


async def test_a_well_formed_unknown_id_is_still_404(full_app):
    me = await make_actor(full_app.storage)
    response = await full_app.client().get(
        "/api/v1/devices/00000000-0000-4000-8000-000000000000", headers=bearer(me.session_token)
    )
    assert response.status_code == 404


async def test_body_query_and_cross_field_problems_share_the_shape(full_app):
    me = await make_actor(full_app.storage)
    client = full_app.client()
    auth = bearer(me.session_token)
    body = await client.put("/api/v1/me/profile", json={"country": "fr"}, headers=auth)
    assert "country" in await fields_of(body)
    query = await client.get("/api/v1/devices", query_string={"limit": "0"}, headers=auth)
    assert "limit" in await fields_of(query)
    same = {"channels": [], "quiet_hours": {"start": "22:00", "end": "22:00"}}
    cross = await client.put("/api/v1/me/preferences", json=same, headers=auth)
    assert "end" in await fields_of(cross)
    extra = await client.put("/api/v1/me/profile", json={"nickname": "x"}, headers=auth)
    assert (await fields_of(extra)) == {"nickname": "unknown field"}


async def test_checkin_problems_name_their_fields(full_app):
    response = await full_app.client().post(
        "/checkin", json={"browserId": 3, "userId": "u", "version": "1", "deviceType": "x"}
    )
    assert "browserId" in await fields_of(response)


async def test_405_and_413_use_the_error_shape(full_app):
    client = full_app.client()
    wrong = await client.patch("/api/v1/auth/login", json={})
    assert wrong.status_code == 405
    assert "POST" in wrong.headers["Allow"]
    assert (await error_of(wrong))["code"] == "method_not_allowed"
    huge = await client.post(
        "/api/v1/auth/login",
        data=b"{" + b" " * (1024 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    assert (await error_of(huge))["code"] == "request_entity_too_large"

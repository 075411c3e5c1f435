"""Free text refuses control characters with a 422 naming the field, on memory and PostgreSQL.

PostgreSQL cannot store NUL in text (CharacterNotInRepertoireError) nor ``\\u0000`` in JSON
(UntranslatableCharacterError): those were 500s; the other control characters are refused too.
"""

from __future__ import annotations

import attrs
import pytest

from grass.http import schema as s
from tests.http.conftest import make_actor, open_full_app
from tests.http.helpers import bearer
from tests.storage.conftest import BACKENDS, pg_storage_schema  # noqa: F401

CONTROLS = ["a\u0000b", "k\u0000", "tab\there", "line\n", "\r", "bell\u0007", "del\u007f", "\u0085"]

BACKEND_PARAMS = [
    pytest.param(name, marks=[pytest.mark.postgres] if name == "postgres" else [])
    for name in sorted(BACKENDS)
]


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
async def test_free_text_fields_refuse_control_characters(request, backend: str):
    async with BACKENDS[backend](request) as storage, open_full_app(storage=storage) as full:
        me = await make_actor(storage)
        client = full.client()
        for value in CONTROLS:
            calls = [
                ("PUT", "/api/v1/me/profile", {"display_name": value}, "display_name"),
                ("POST", "/api/v1/me/api-keys", {"name": value, "scopes": ["stats:read"]}, "name"),
            ]
            for method, path, body, field in calls:
                response = await client.open(
                    path, method=method, json=body, headers=bearer(me.session_token)
                )
                assert response.status_code == 422, (path, value)
                error = (await response.get_json())["error"]
                assert error["code"] == "validation_failed"
                assert error["details"]["fields"] == {field: "must not contain control characters"}

        response = await client.get(
            "/api/v1/earnings/history?device_id=a%00b", headers=bearer(me.session_token)
        )
        assert response.status_code == 422
        fields = (await response.get_json())["error"]["details"]["fields"]
        assert fields == {"device_id": "must not contain control characters"}

        # Printable text outside ASCII is stored as given.
        response = await client.put(
            "/api/v1/me/profile",
            json={"display_name": "Zoë ✓ 名"},
            headers=bearer(me.session_token),
        )
        assert response.status_code == 200
        assert (await response.get_json())["profile"]["display_name"] == "Zoë ✓ 名"
        response = await client.post(
            "/api/v1/me/api-keys",
            json={"name": "clé ✓", "scopes": ["stats:read"]},
            headers=bearer(me.session_token),
        )
        assert response.status_code == 201


def test_text_refuses_control_characters_unless_told():
    @attrs.frozen(kw_only=True)
    class Body:
        name: str = s.text(max_length=64)
        secret: str = s.text(max_length=64, printable=False)
        code: str = s.text(max_length=64, pattern="^[a-z]+$")

    assert s.structure({"name": "ok ✓", "secret": "a\u0000b", "code": "abc"}, Body)
    for value in CONTROLS:
        with pytest.raises(s.ValidationFailed) as raised:
            s.structure({"name": value, "secret": "", "code": "abc"}, Body)
        assert raised.value.details["fields"] == {"name": "must not contain control characters"}
    # A field's own pattern keeps the rule (Python's "$" also matches before a final newline).
    with pytest.raises(s.ValidationFailed) as raised:
        s.structure({"name": "", "secret": "", "code": "abc\n"}, Body)
    assert raised.value.details["fields"] == {"code": "must not contain control characters"}

    schemas = s.Schemas()
    schemas.of(Body)
    properties = schemas.components["Body"]["properties"]
    assert properties["name"]["pattern"] == s.PRINTABLE
    assert "pattern" not in properties["secret"]
    assert properties["code"]["pattern"] == "^[a-z]+$"

"""One refusal for "administrators only": the pipeline's and the admin service's are the same
error (403 ``admin_only``), and the OpenAPI document lists it on the admin routes."""

from __future__ import annotations

import pytest

from grass.http.api import api_of
from grass.http.auth import ADMIN, Access, authorize
from grass.http.openapi import document
from grass.services.admin import NotAdmin
from grass.services.authentication import Principal
from tests.http.conftest import make_actor


async def test_the_pipeline_and_the_service_refuse_alike(full_app):
    me = await make_actor(full_app.storage)
    with pytest.raises(NotAdmin) as raised:
        authorize(ADMIN, Principal(me.user, session_hash=me.session_hash))
    assert (raised.value.http_status, raised.value.code) == (403, "admin_only")
    assert NotAdmin("administrators only").code == "admin_only"


async def test_admin_routes_document_admin_only(full_app):
    routes = {r.name: r for r in api_of(full_app.app).routes}
    doc = document(api_of(full_app.app))
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            forbidden = op["responses"].get("403", {}).get("description", "")
            assert "admin_required" not in forbidden
            is_admin = routes[op["operationId"]].policy.access is Access.ADMIN
            assert ("`admin_only`" in forbidden) == is_admin, (method, path)

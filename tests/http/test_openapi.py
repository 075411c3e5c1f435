"""/openapi.json describes exactly the running app, and /docs serves offline."""

from __future__ import annotations

import re

from grass.http.api import api_of
from grass.http.openapi import document

_CONVERTER = re.compile(r"<(?:[a-z_]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


def _operations_of_app(app) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.websocket:
            continue  # OpenAPI has no WebSockets: the description documents them (below)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((method.lower(), _CONVERTER.sub(r"{\1}", rule.rule)))
    return found


async def test_every_url_rule_is_documented_and_every_operation_exists(full_app):
    response = await full_app.client().get("/openapi.json")
    assert response.status_code == 200
    doc = await response.get_json()
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == _operations_of_app(full_app.app)
    sockets = [r.rule for r in full_app.app.url_map.iter_rules() if r.websocket]
    assert sockets == ["/api/v1/live"]
    assert all(path in doc["info"]["description"] for path in sockets)


async def test_every_operation_lists_its_errors_and_auth(full_app):
    doc = document(api_of(full_app.app))
    assert doc["openapi"] == "3.1.0"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            assert "503" in responses, (method, path)
            assert any(code.startswith("2") for code in responses), (method, path)
            if op["security"]:
                assert {"401", "403"} <= set(responses), (method, path)
            if "requestBody" in op:
                assert {"400", "422"} <= set(responses), (method, path)
            if "requestBody" in op:
                assert "413" in responses, (method, path)
            for status, reply in responses.items():
                if int(status) >= 400:
                    schema = reply["content"]["application/json"]["schema"]
                    name = "ValidationError" if status == "422" else "Error"
                    assert schema == {"$ref": f"#/components/schemas/{name}"}
            for param in op.get("parameters", []):
                if param["in"] == "path":
                    assert param["required"] is True
                    bounded = param["schema"].get("maxLength") or "maximum" in param["schema"]
                    assert bounded, (method, path, param)


async def test_every_schema_reference_resolves(full_app):
    doc = document(api_of(full_app.app))
    text = str(doc)
    for name in re.findall(r"#/components/schemas/([A-Za-z0-9_]+)", text):
        assert name in doc["components"]["schemas"], name


async def test_the_docs_page_needs_no_network(full_app):
    response = await full_app.client().get("/docs")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = (await response.get_data()).decode()
    assert "/openapi.json" in page
    assert not re.search(r"""(src|href)=["']https?://""", page), "no external assets"


async def test_the_description_names_the_statuses_every_operation_may_give(full_app):
    doc = document(api_of(full_app.app))
    text = doc["info"]["description"]
    for fragment in ("405", "413", "details.fields", "/api/v1/live"):
        assert fragment in text

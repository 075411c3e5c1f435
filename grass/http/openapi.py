"""``/openapi.json`` (OpenAPI 3.1) generated from the route declarations, and ``/docs``.

Nothing here is written by hand per route: paths, parameters, bodies, responses, security and
every error status come from :class:`grass.http.api.Route`. Errors a route may raise are listed
per status with their codes; the framework adds the ones its pipeline raises (400/422 for
inputs, 401/403 from the policy, 429 from the rate limiter, 503 for a backend that is down).
The docs page is a self-contained HTML file (no CDN): it works offline.
"""

from __future__ import annotations

from collections import defaultdict
from importlib import resources
from typing import Any

from quart import Response

from grass.domain.pages import InvalidPage
from grass.errors import (
    Forbidden,
    GrassError,
    InvalidInput,
    RateLimited,
    Unauthenticated,
    Unavailable,
    ValidationFailed,
)
from grass.http import schema as s
from grass.http.api import ANONYMOUS_ROUTES_TAG, Api, Call, Route, route
from grass.http.auth import ANONYMOUS, Access
from grass.http.inputs import MAX_PATH_PARAMETER
from grass.jsontext import JsonTooDeep, NotText
from grass.services.accounts import AccountInactive
from grass.services.admin import NotAdmin
from grass.services.authentication import InvalidToken

#: The largest request body (grass.http.app); a larger one is refused with 413.
MAX_BODY_BYTES = 1024 * 1024

_REASONS = {
    400: "Malformed request",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: f"The body is larger than {MAX_BODY_BYTES // 1024 // 1024} MiB",
    422: "Invalid input",
    429: "Too many requests",
    503: "A backend is unavailable",
}
VALIDATION_BODY = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {
                    "type": "object",
                    "required": ["fields"],
                    "properties": {
                        "fields": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                            "description": "What is wrong with each field, keyed by the "
                            "body field's dotted path, or the query or path parameter's name",
                        }
                    },
                },
            },
        }
    },
}
DESCRIPTION = f"""The grass dashboard API.

Errors are always `{{"error": {{"code", "message", "details"}}}}`; a 422 names every bad field
in `details.fields` (`{{field: problem}}`), whether a body field, a query parameter or a path
parameter. Every operation may also answer:

- **405** `method_not_allowed` for a method the path does not have (with `Allow`);
- **413** `request_entity_too_large` for a body over {MAX_BODY_BYTES // 1024 // 1024} MiB;
- **429** `rate_limited` with `Retry-After`, where the operation lists it.

Live events: `GET /api/v1/live` is a WebSocket (not an HTTP operation, so it is described
here and in docs/live.md): authenticate with the subprotocols `grass.live.v1` and
`bearer.<token>` (a session, or an API key with a read scope), or with a first message
`{{"type": "auth", "token": "..."}}`; never in the URL. The server sends `hello`, then the
events after `?since=<id>` (or `resync` when it cannot), then live events
`{{"id", "type", ...}}`: `device.online`, `device.offline`, `device.updated`,
`earnings.credited`, `notification`. Close codes: 4400 bad message, 4401 not authenticated,
4403 not allowed, 4410 session or key revoked or account closed, 4503 fell behind (reconnect
with `since`), 1001 server shutting down.
"""
ERROR_BODY = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}


def _errors_of(route: Route) -> list[type[GrassError]]:
    errors: list[type[GrassError]] = [Unavailable, *route.errors]
    if route.body or route.body_parser or route.query or route.path_params:
        errors += [InvalidInput, ValidationFailed]
    if route.body or route.body_parser:
        errors += [JsonTooDeep, NotText]  # grass.jsontext, parsing the body
    if route.page_of is not None:
        errors.append(InvalidPage)  # a cursor no list of this route produced
    if route.policy.needs_auth:
        errors += [Unauthenticated, InvalidToken, Forbidden, AccountInactive]
    if route.policy.access is Access.ADMIN:
        errors.append(NotAdmin)
    if route.rate_limit != "none":
        errors.append(RateLimited)
    return errors


def _error_responses(route: Route) -> dict[str, Any]:
    codes: dict[int, set[str]] = defaultdict(set)
    for error in _errors_of(route):
        codes[error.http_status].add(error.code)
    responses: dict[str, Any] = {}
    for status in sorted(codes):
        listed = ", ".join(f"`{code}`" for code in sorted(codes[status]))
        body = "ValidationError" if status == 422 else "Error"
        response: dict[str, Any] = {
            "description": f"{_REASONS.get(status, 'Error')}; error codes: {listed}",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
        if status == 429:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait",
                    "schema": {"type": "integer"},
                    "required": True,
                }
            }
        responses[str(status)] = response
    if route.body is not None or route.body_parser is not None:
        responses["413"] = {
            "description": f"{_REASONS[413]}; error codes: `request_entity_too_large`",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return dict(sorted(responses.items()))


def _success(route: Route, schemas: s.Schemas) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if route.page_of is not None:
        item = schemas.of(route.page_of)
        name = f"PageOf{route.page_of.__name__}"
        schemas.components[name] = {
            "type": "object",
            "required": ["items", "next_cursor"],
            "additionalProperties": False,
            "properties": {
                "items": {"type": "array", "items": item},
                "next_cursor": {
                    "anyOf": [{"type": "string"}, {"type": "null"}],
                    "description": "Pass it back as `cursor`; null on the last page",
                },
            },
        }
        content: dict[str, Any] | None = {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
        }
    elif route.response is None:
        content = None
    elif route.media_type != "application/json":
        content = {route.media_type: {"schema": {"type": "string"}}}
    else:
        content = {"application/json": {"schema": schemas.of(route.response)}}
    success: dict[str, Any] = {"description": route.summary}
    if content is not None and route.status != 204:
        success["content"] = content
    if route.method == "GET" and route.status == 200 and route.media_type == "application/json":
        success["headers"] = {
            "ETag": {"schema": {"type": "string"}, "required": True},
            "Cache-Control": {"schema": {"type": "string"}, "required": True},
        }
        responses["304"] = {"description": "Not modified (the If-None-Match ETag matches)"}
    responses[str(route.status)] = success
    for status, description in route.other_statuses.items():
        responses[str(status)] = {"description": description}
        if content is not None and status != 204:
            responses[str(status)]["content"] = content
    return responses


def _operation(route: Route, schemas: s.Schemas) -> dict[str, Any]:
    params: list[dict[str, Any]]
    if route.path_fields is not None:
        params = s.query_params(route.path_fields, schemas, "path")
    else:
        segment = {"type": "string", "minLength": 1, "maxLength": MAX_PATH_PARAMETER}
        params = [
            {"name": name, "in": "path", "required": True, "schema": dict(segment)}
            for name in route.path_params
        ]
    if route.query is not None:
        params += s.query_params(route.query, schemas)
    operation: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "tags": [route.tag],
        "description": (route.description + "\n\n" if route.description else "")
        + f"Auth: {route.policy.describe()}",
        "responses": {**_success(route, schemas), **_error_responses(route)},
    }
    if params:
        operation["parameters"] = params
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.of(route.body)}},
        }
    if route.policy.needs_auth:
        operation["security"] = [{"session": []}]
        if route.policy.api_scopes:
            operation["security"].append({"apiKey": []})
    else:
        operation["security"] = []
    return operation


def document(api: Api) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every declared route."""
    schemas = s.Schemas()
    paths: dict[str, dict[str, Any]] = defaultdict(dict)
    for declared in sorted(api.routes, key=lambda r: (r.openapi_path, r.method)):
        paths[declared.openapi_path][declared.method.lower()] = _operation(declared, schemas)
    components = dict(sorted(schemas.components.items()))
    components["Error"] = ERROR_BODY
    components["ValidationError"] = VALIDATION_BODY
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "grass",
            "version": "1",
            "description": DESCRIPTION,
        },
        "paths": dict(paths),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "session": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A session token (`gs_...`) from POST /api/v1/auth/login",
                },
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A read-only API key (`gk_...`) from POST /api/v1/me/api-keys",
                },
            },
        },
    }


class OpenApiRoutes:
    """``/openapi.json`` (built on first use: every resource has registered by then) and the
    offline ``/docs`` page."""

    def __init__(self, api: Api) -> None:
        self._api = api
        self._page: bytes | None = None

    @route(
        "GET",
        "/openapi.json",
        summary="This document",
        tag=ANONYMOUS_ROUTES_TAG,
        auth=ANONYMOUS,
        response=dict[str, Any],
        rate_limit="none",
        cache_control="public, max-age=60",
    )
    async def openapi(self, call: Call) -> Any:
        return document(self._api)

    @route(
        "GET",
        "/docs",
        summary="API documentation (HTML, works offline)",
        tag=ANONYMOUS_ROUTES_TAG,
        auth=ANONYMOUS,
        response=str,
        media_type="text/html",
        rate_limit="none",
    )
    async def docs(self, call: Call) -> Response:
        if self._page is None:
            self._page = (resources.files("grass.http") / "static" / "docs.html").read_bytes()
        return Response(self._page, content_type="text/html; charset=utf-8")

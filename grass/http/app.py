"""The quart-trio application: health, readiness, metrics, and the error and request plumbing.

Routes per resource are classes in their own modules, registered with
``api_of(app).add_resource`` (see docs/http-framework.md); this module owns what every route
shares: the error shape, request ids, request logs, CORS, and the meta routes (health,
readiness, metrics; OpenAPI in grass.http.openapi).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

import attrs
import structlog
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from grass import ids, logs
from grass.errors import ValidationFailed, http_error
from grass.http.api import ANONYMOUS_ROUTES_TAG, Api, Call, Guard, Reply, route
from grass.http.auth import ANONYMOUS
from grass.http.drain import DrainBody
from grass.http.openapi import MAX_BODY_BYTES, OpenApiRoutes
from grass.http.schema import field_errors
from grass.metrics import CONTENT_TYPE, Metrics

log = logs.get("grass.http")

Readiness = Callable[[], Awaitable[dict[str, str]]]


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
    body = {"error": {"code": code, "message": message, "details": {}}}
    return body, status, headers or {}


@attrs.frozen(kw_only=True)
class Liveness:
    status: str


@attrs.frozen(kw_only=True)
class Health:
    status: str
    problems: dict[str, str]


CORS_ALLOW_HEADERS = "Authorization, Content-Type, If-None-Match, X-Request-Id"
CORS_EXPOSE_HEADERS = "ETag, Retry-After, X-Request-Id"


def begin_shutdown(app: QuartTrio) -> None:
    """From now on /readyz answers 503: the load balancer sends no new requests here."""
    app.extensions["grass.shutting_down"] = True


def create_app(
    *,
    metrics: Metrics,
    readiness: Readiness,
    guard: Guard,
    cors_origins: Callable[[], Collection[str]] = tuple,
) -> QuartTrio:
    """The app; ``readiness`` returns a problem per unreachable backend (empty when ready),
    ``guard`` authenticates and rate-limits declared routes, ``cors_origins`` gives the web
    origins allowed to call the API from a browser."""
    app = QuartTrio(
        __name__, static_folder=None, template_folder=None, root_path=str(Path(__file__).parent)
    )
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.asgi_app = DrainBody(app.asgi_app)  # type: ignore[method-assign]
    app.extensions["grass.shutting_down"] = False
    api = Api(app, guard)
    app.extensions["grass.api"] = api
    _add_request_hooks(app, metrics, guard, cors_origins)
    _add_error_handlers(app)
    api.add_resource(MetaRoutes(app, metrics, readiness))
    api.add_resource(OpenApiRoutes(api))
    return app


def _add_request_hooks(
    app: QuartTrio, metrics: Metrics, guard: Guard, cors_origins: Callable[[], Collection[str]]
) -> None:
    """What every request goes through: its id, client address, CORS, metrics and log line."""

    def allowed_origin() -> str | None:
        origin = request.headers.get("Origin")
        return origin if origin and origin in cors_origins() else None

    @app.before_request
    async def _begin() -> Any:
        g.request_id = request.headers.get("X-Request-Id", "")[:64] or ids.short_id()
        g.started = time.perf_counter()
        g.client_ip = guard.client_address(
            request.remote_addr, request.headers.getlist("X-Forwarded-For")
        )
        # Every line logged while this request runs carries its id.
        structlog.contextvars.bind_contextvars(request_id=g.request_id)
        if request.content_length or "Transfer-Encoding" in request.headers:
            # Read the body even when the answer will not need it (a 405, a 404, a preflight):
            # an unread body left on a kept-alive connection stalls the client's next request.
            await request.get_data()
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return _preflight(allowed_origin() is not None)
        return None

    @app.after_request
    async def _finish(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.http_requests.labels(request.method, route, str(response.status_code)).inc()
        metrics.http_latency.labels(route).observe(elapsed)
        response.headers["X-Request-Id"] = g.get("request_id", "")
        origin = allowed_origin()
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
        response.vary.add("Origin")
        log.info(
            "request",
            method=request.method,
            path=request.path,  # never the query string: it may carry tokens
            status=response.status_code,
            ip=g.get("client_ip", ""),
            ms=round(elapsed * 1000, 2),
        )
        return response

    @app.teardown_request
    async def _unbind(_: BaseException | None) -> None:
        structlog.contextvars.unbind_contextvars("request_id")


def _preflight(origin_allowed: bool) -> Any:
    """The answer to a browser's CORS preflight, the same for every route."""
    if not origin_allowed:
        return json_error(403, "origin_not_allowed", "this origin may not call the API")
    return Response(
        b"",
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE",
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": "600",
        },
    )


def _add_error_handlers(app: QuartTrio) -> None:
    """Every error answers in the API's one JSON shape; a 5xx is logged with its traceback."""

    @app.errorhandler(HTTPException)
    async def _http_exception(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        # Keep what the exception says about itself (Allow on a 405), not its HTML type.
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return json_error(exc.code or 500, code, exc.description or exc.name or "error", headers)

    @app.errorhandler(Exception)
    async def _exception(exc: Exception) -> Any:
        if isinstance(exc, ValidationFailed):
            field_errors(exc)  # one 422 shape, whoever raised it
        reply = http_error(exc)
        if reply.status >= 500:
            log.error("unhandled error", exc_info=exc)
        return reply.body, reply.status, reply.headers


#: What every meta route declares: documented under its own tag, open, never rate-limited.
_META: dict[str, Any] = {"tag": ANONYMOUS_ROUTES_TAG, "auth": ANONYMOUS, "rate_limit": "none"}


class MetaRoutes:
    """Liveness, readiness and metrics: the routes every app has (with OpenApiRoutes)."""

    def __init__(self, app: QuartTrio, metrics: Metrics, readiness: Readiness) -> None:
        self._app = app
        self._metrics = metrics
        self._readiness = readiness

    @route(
        "GET", "/healthz", summary="Liveness", response=Liveness, cache_control="no-store", **_META
    )
    async def healthz(self, call: Call) -> Liveness:
        return Liveness(status="alive")

    @route(
        "GET",
        "/readyz",
        summary="Readiness: every backend answers",
        response=Health,
        cache_control="no-store",
        other_statuses={503: "Not ready, or shutting down; `problems` names each backend"},
        **_META,
    )
    async def readyz(self, call: Call) -> Any:
        if self._app.extensions["grass.shutting_down"]:
            return Reply(Health(status="shutting down", problems={}), status=503)
        problems = await self._readiness()
        if problems:
            return Reply(Health(status="not ready", problems=problems), status=503)
        return Health(status="ready", problems={})

    @route(
        "GET",
        "/metrics",
        summary="Prometheus metrics",
        response=str,
        media_type=CONTENT_TYPE,
        **_META,
    )
    async def metrics_endpoint(self, call: Call) -> Response:
        return Response(self._metrics.render(), content_type=CONTENT_TYPE)

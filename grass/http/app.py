"""The quart-trio application: health, readiness, metrics, and the error and request plumbing.

Routes per resource register themselves on the app from their own modules; this module owns
what every route shares: the error shape, request ids and request logs.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from grass import ids, logs
from grass.errors import http_error
from grass.metrics import CONTENT_TYPE, Metrics

log = logs.get("grass.http")

Readiness = Callable[[], Awaitable[dict[str, str]]]


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
    body = {"error": {"code": code, "message": message, "details": {}}}
    return body, status, headers or {}


def create_app(*, metrics: Metrics, readiness: Readiness) -> QuartTrio:
    """The app; ``readiness`` returns a problem per unreachable backend (empty when ready)."""
    app = QuartTrio(
        __name__, static_folder=None, template_folder=None, root_path=str(Path(__file__).parent)
    )
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.extensions["grass.shutting_down"] = False

    @app.before_request
    async def _begin() -> None:
        g.request_id = request.headers.get("X-Request-Id", "")[:64] or ids.short_id()
        g.started = time.perf_counter()
        # Every line logged while this request runs carries its id.
        structlog.contextvars.bind_contextvars(request_id=g.request_id)

    @app.after_request
    async def _finish(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.http_requests.labels(request.method, route, str(response.status_code)).inc()
        metrics.http_latency.labels(route).observe(elapsed)
        response.headers["X-Request-Id"] = g.get("request_id", "")
        log.info(
            "request",
            method=request.method,
            path=request.path,  # never the query string: it may carry tokens
            status=response.status_code,
            ms=round(elapsed * 1000, 2),
        )
        return response

    @app.teardown_request
    async def _unbind(_: BaseException | None) -> None:
        structlog.contextvars.unbind_contextvars("request_id")

    @app.errorhandler(HTTPException)
    async def _http_exception(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        return json_error(exc.code or 500, code, exc.description or exc.name or "error")

    @app.errorhandler(Exception)
    async def _exception(exc: Exception) -> Any:
        reply = http_error(exc)
        if reply.status >= 500:
            log.error("unhandled error", exc_info=exc)
        return reply.body, reply.status, reply.headers

    @app.get("/healthz")
    async def healthz() -> Any:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> Any:
        if app.extensions["grass.shutting_down"]:
            return {"status": "shutting down", "problems": {}}, 503
        problems = await readiness()
        if problems:
            return {"status": "not ready", "problems": problems}, 503
        return {"status": "ready", "problems": {}}

    @app.get("/metrics")
    async def metrics_endpoint() -> Any:
        return Response(metrics.render(), content_type=CONTENT_TYPE)

    return app

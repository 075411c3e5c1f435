"""Route declarations and the one request pipeline every declared route goes through.

A route is declared once, with everything the server and the OpenAPI document need, on a
method of its resource's class; ``api.add_resource(instance)`` registers every declared method::

    class DeviceRoutes:
        def __init__(self, devices: DeviceService) -> None:
            self._devices = devices

        @route("GET", "/api/v1/devices/<device_id>", summary="One device", tag="devices",
               auth=user_or_key(ApiScope.DEVICES_READ), response=DeviceView, errors=(NotFound,))
        async def get_device(self, call: Call) -> DeviceView:
            device = await self._devices.device(call.user_id, call.path["device_id"])
            return DeviceView.of(device)

    api_of(app).add_resource(DeviceRoutes(devices))

The pipeline, in order: bearer token (a token that resolves to nobody costs the caller's
address one hit of the auth budget, so guessing tokens is limited like guessing passwords) ->
rate limit (per IP on ``limit="auth"`` routes, per user elsewhere, per IP when anonymous) ->
the policy (401/403) -> path parameters, query parameters, body (422 with a message per field)
-> handler -> the reply (JSON through the HTTP converter, ETag and Cache-Control on GETs, 304
when ``If-None-Match`` matches). Every error leaves as ``{"error": {"code", "message",
"details"}}`` through grass.errors.http_error; every 422 names its fields in
``details.fields``. The caller's address is the one :mod:`grass.domain.addresses` derives
(trusted proxies, IPv6 counted per /64).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Literal, TypeVar

import attrs
from quart import Quart, Response, g, request

from grass.config import LimitsConfig
from grass.domain.addresses import ClientAddress, address_key
from grass.domain.pages import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from grass.errors import GrassError, RateLimited, Unauthenticated
from grass.http import schema as s
from grass.http.auth import Policy, authorize
from grass.http.inputs import check_path, parse_body, parse_query
from grass.services.authentication import Authenticator, Principal, TokenEnded
from grass.storage.shared_state import RateLimiter

T = TypeVar("T")
Handler = Callable[["Call"], Awaitable[Any]]
M = TypeVar("M", bound=Callable[..., Awaitable[Any]])
RateClass = Literal["auth", "api", "none"]
#: The tag of the routes every app has (health, metrics, this documentation).
ANONYMOUS_ROUTES_TAG = "meta"
_PATH_PARAM = re.compile(r"<(?:[a-z_]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


@attrs.frozen(kw_only=True)
class PageQuery:
    """Cursor pagination: pass ``next_cursor`` of a page back as ``cursor``."""

    cursor: str | None = s.text(max_length=512, min_length=1, optional=True, default=None)
    limit: int = s.integer(minimum=1, maximum=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE)


@attrs.frozen
class Reply(Generic[T]):
    """A handler's answer when the route's default status or headers do not fit."""

    body: T
    status: int | None = None
    headers: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Call:
    """What a handler gets: the caller, the validated inputs, and where the call came from."""

    principal: Principal | None
    path: dict[str, str]
    query: Any
    body: Any
    ip: str
    user_agent: str | None

    @property
    def caller(self) -> Principal:
        """The principal of a route whose policy requires one."""
        if self.principal is None:
            raise RuntimeError("this route's policy lets anonymous callers in")
        return self.principal

    @property
    def user_id(self) -> str:
        return self.caller.user_id


@attrs.frozen(kw_only=True)
class Route:
    method: str
    path: str
    name: str
    summary: str
    tag: str
    policy: Policy
    handler: Handler
    body: type[Any] | None = None
    #: attrs class of the path parameters (fields named as in ``path``), checked before the
    #: handler runs (422); without one, each parameter is a string of 1 to 256 characters.
    path_fields: type[Any] | None = None
    #: Replaces the converter for bodies with their own rules (POST /checkin tolerates extra
    #: keys, as Grass clients send them); ``body`` still describes the body in OpenAPI.
    body_parser: Callable[[Any], Any] | None = None
    query: type[Any] | None = None
    #: A type for the success body, or None for no body (204).
    response: Any = None
    #: Set for a paginated list: the response is ``{"items": [...], "next_cursor": ...}``.
    page_of: type[Any] | None = None
    status: int = 200
    errors: tuple[type[GrassError], ...] = ()
    rate_limit: RateClass = "api"
    #: Cache-Control of a successful GET; every successful GET also carries an ETag.
    cache_control: str = "private, no-cache"
    description: str = ""
    #: Extra 2xx/3xx replies a handler may give with Reply(status=...): status -> description.
    other_statuses: dict[int, str] = attrs.field(factory=dict)
    #: Raw responses (HTML, Prometheus text): the handler returns a quart Response.
    media_type: str = "application/json"

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)

    @property
    def openapi_path(self) -> str:
        return _PATH_PARAM.sub(r"{\1}", self.path)


@attrs.frozen(kw_only=True)
class Declaration:
    """What :func:`route` records on a method, for :meth:`Api.add_resource`."""

    method: str
    path: str
    summary: str
    tag: str
    auth: Policy
    options: dict[str, Any]


#: The attribute :func:`route` sets on the function it declares.
DECLARATION = "__grass_route__"


def route(
    method: str, path: str, *, summary: str, tag: str, auth: Policy, **options: Any
) -> Callable[[M], M]:
    """Declare a method of a resource class as a route (the arguments of :meth:`Api.route`).

    Only records the declaration on the function: nothing is registered until
    ``api.add_resource(instance)``, which registers the instance's bound method. The route's
    name is the method's, unless ``name=`` says otherwise."""

    declaration = Declaration(
        method=method, path=path, summary=summary, tag=tag, auth=auth, options=dict(options)
    )

    def declare(handler: M) -> M:
        if hasattr(handler, DECLARATION):
            raise ValueError(f"{handler.__name__}: declared as a route twice")
        setattr(handler, DECLARATION, declaration)
        return handler

    return declare


def declared_routes(resource: object) -> list[tuple[Declaration, Handler]]:
    """The methods of ``resource`` declared with :func:`route`, bound to it, in the order the
    class (then each subclass) defines them."""
    found: dict[str, Declaration] = {}
    for klass in reversed(type(resource).__mro__):
        for name, member in vars(klass).items():
            declaration = getattr(member, DECLARATION, None)
            if isinstance(declaration, Declaration):
                found[name] = declaration
            else:
                found.pop(name, None)  # overridden without a declaration
    return [(declaration, getattr(resource, name)) for name, declaration in found.items()]


@attrs.frozen(kw_only=True)
class Guard:
    """What the pipeline needs from outside: tokens, the shared limiter and the live limits."""

    authenticator: Authenticator
    limiter: RateLimiter
    limits: Callable[[], LimitsConfig]
    #: The caller's address from the socket peer and X-Forwarded-For (http.trusted_proxies).
    client_address: ClientAddress = attrs.field(factory=lambda: ClientAddress(tuple))


class Api:
    """The declared routes of one app; registers each on the app and keeps it for OpenAPI."""

    def __init__(self, app: Quart, guard: Guard) -> None:
        self.app = app
        self.guard = guard
        self.routes: list[Route] = []

    def route(
        self, method: str, path: str, *, summary: str, tag: str, auth: Policy, **options: Any
    ) -> Callable[[Handler], Handler]:
        """Declare a route; ``options`` are the other fields of :class:`Route`."""

        if options.get("response") is None and options.get("page_of") is None:
            options.setdefault("status", 204)  # no body to send

        def register(handler: Handler) -> Handler:
            route = Route(
                method=method.upper(),
                path=path,
                name=options.pop("name", handler.__name__),
                summary=summary,
                tag=tag,
                policy=auth,
                handler=handler,
                **options,
            )
            self.add(route)
            return handler

        return register

    def add_resource(self, resource: object) -> None:
        """Register every method of ``resource`` declared with :func:`route`, bound to it, in
        definition order, each as :meth:`route` would."""
        declared = declared_routes(resource)
        if not declared:
            raise ValueError(f"{type(resource).__name__} declares no routes")
        for d, handler in declared:
            self.route(d.method, d.path, summary=d.summary, tag=d.tag, auth=d.auth, **d.options)(
                handler
            )

    def add(self, route: Route) -> None:
        if any(r.name == route.name for r in self.routes):
            raise ValueError(f"two routes named {route.name!r}: give one a name=")
        if route.page_of is not None and not (
            route.query is not None and issubclass(route.query, PageQuery)
        ):
            raise ValueError(f"{route.name}: a paginated route's query must extend PageQuery")
        if route.path_fields is not None and set(attrs.fields_dict(route.path_fields)) != set(
            route.path_params
        ):
            raise ValueError(f"{route.name}: path_fields must name exactly {route.path_params}")
        self.routes.append(route)

        async def view(**path: str) -> Any:
            return await self._dispatch(route, path)

        self.app.add_url_rule(route.path, route.name, view, methods=[route.method])

    async def _dispatch(self, route: Route, path: dict[str, str]) -> Any:
        ip = client_ip()
        principal = None
        if route.policy.needs_auth:
            bearer = _bearer()
            if bearer:
                try:
                    principal = await self.guard.authenticator.resolve(bearer)
                except TokenEnded:
                    raise
                except Unauthenticated:
                    await self.count_failed_auth(ip)
                    raise
        await self._limit(route, principal, ip)
        authorize(route.policy, principal)
        check_path(route.path_fields, path)
        query = parse_query(route.query) if route.query else None
        body = (
            await parse_body(route.body, route.body_parser)
            if route.body or route.body_parser
            else None
        )
        call = Call(
            principal=principal,
            path=path,
            query=query,
            body=body,
            ip=ip,
            user_agent=request.headers.get("User-Agent"),
        )
        result = await route.handler(call)
        if isinstance(result, Response):
            return result
        return _reply(route, result)

    async def count_failed_auth(self, ip: str) -> None:
        """A bearer token that resolves to nobody: one hit of the address's auth budget (the
        one logins and registrations spend), 429 once it is spent."""
        per_minute = self.guard.limits().auth_requests_per_minute
        await self._hit(f"http:auth:ip:{address_key(ip)}", per_minute)

    async def limit_address(self, ip: str) -> None:
        """One hit of the address's API budget (what an anonymous call spends): opening a
        live socket spends it too."""
        per_minute = self.guard.limits().api_requests_per_minute
        await self._hit(f"http:api:ip:{address_key(ip)}", per_minute)

    async def _limit(self, route: Route, principal: Principal | None, ip: str) -> None:
        if route.rate_limit == "none":
            return
        limits = self.guard.limits()
        if route.rate_limit == "auth":
            per_minute, key = limits.auth_requests_per_minute, f"http:auth:ip:{address_key(ip)}"
        elif principal is not None:
            per_minute, key = limits.api_requests_per_minute, f"http:api:user:{principal.user_id}"
        else:
            per_minute, key = limits.api_requests_per_minute, f"http:api:ip:{address_key(ip)}"
        await self._hit(key, per_minute)

    async def _hit(self, key: str, per_minute: int) -> None:
        if per_minute <= 0:
            return  # 0 turns the limit off
        decision = await self.guard.limiter.hit(key, rate=per_minute / 60.0, burst=per_minute)
        if not decision.allowed:
            raise RateLimited("too many requests; retry later", retry_after=decision.retry_after)


def api_of(app: Quart) -> Api:
    api: Api = app.extensions["grass.api"]
    return api


def client_ip() -> str:
    """The caller's address, as the app's before-request hook derived it (empty if unknown)."""
    ip: str | None = g.get("client_ip")
    return request.remote_addr or "" if ip is None else ip


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _reply(route: Route, result: Any) -> Response:
    status, headers = route.status, {}
    if isinstance(result, Reply):
        status, headers, result = result.status or route.status, dict(result.headers), result.body
    if isinstance(result, Page):
        result = {"items": list(result.items), "next_cursor": result.next_cursor}
    if result is None:
        return Response(b"", status=status, headers=headers)
    body = json.dumps(s.unstructure(result), separators=(",", ":"), ensure_ascii=False).encode()
    if route.method == "GET" and status == 200:
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers.setdefault("Cache-Control", route.cache_control)
        headers["ETag"] = etag
        if etag in _if_none_match():
            return Response(b"", status=304, headers=headers)
    return Response(body, status=status, headers=headers, content_type="application/json")


def _if_none_match() -> set[str]:
    header = request.headers.get("If-None-Match", "")
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}

"""Composition root: open backends -> open services -> serve -> shut down.

``run(config)`` opens the backends (:func:`grass.backends.open_backends`, which owns them and
their background tasks), then the services container (:func:`grass.wiring.open_services`, every
service built once and its loops running), starts the node WebSocket server and the HTTP server
in one nursery, each with ``nursery.start``, reports a :class:`Server` handle once both listen,
and shuts down gracefully when asked to (docs/architecture.md §3).
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio

from grass import RECURSION_LIMIT, ids, logs, pin_recursion_limit
from grass.backends import Backends, open_backends
from grass.config import Config, MailTransport, StorageBackend
from grass.domain.addresses import ClientAddress
from grass.errors import StartupError
from grass.http.accounts import AuthRoutes
from grass.http.admin import AdminRoutes
from grass.http.api import Guard, api_of
from grass.http.app import begin_shutdown, create_app
from grass.http.checkin import CheckinRoutes
from grass.http.earnings import EarningsRoutes, ReferralRoutes
from grass.http.live import LiveHub, add_live_route
from grass.http.me import MeRoutes
from grass.http.network import NetworkRoutes
from grass.http.node_keys import NodeKeyRoutes
from grass.http.wallets import WalletRoutes
from grass.metrics import Metrics
from grass.nodes.gateway import Gateway
from grass.running import RunningConfig
from grass.services.authentication import Authenticator
from grass.websocket.server import WebSocketServer, reason
from grass.wiring import Services, open_services, utc_now

log = logs.get("grass.app")


def startup_warnings(config: Config) -> list[str]:
    """What a configuration that starts can still get dangerously wrong."""
    warnings = []
    if (
        config.mail.transport is MailTransport.LOG
        and config.storage.backend is not StorageBackend.MEMORY
    ):
        warnings.append(
            "mail.transport = log: verification and password-reset links are written to the"
            " log, where anyone who reads it can use them; configure SMTP ([mail])"
        )
    return warnings


def _check_recursion_limit() -> None:
    """Every backend is imported by now: a library that raised the recursion limit on import
    would let deeply nested input crash the process (see grass/__init__.py)."""
    found = pin_recursion_limit()
    if found is not None:
        log.warning(
            "an imported library changed the recursion limit; put back",
            found=found,
            limit=RECURSION_LIMIT,
        )


@attrs.define
class Server:
    """A running grass server, as handed to the caller of ``nursery.start(run, ...)``."""

    http_port: int
    node_port: int
    running: RunningConfig
    metrics: Metrics
    node: WebSocketServer
    gateway: Gateway
    backends: Backends
    _shutdown: trio.Event = attrs.field(factory=trio.Event)

    def addresses(self) -> dict[str, str]:
        server = self.running.current.server
        scheme = "wss" if server.tls_cert else "ws"
        return {
            "http": f"http://{server.http_host}:{self.http_port}",
            "nodes": f"{scheme}://{server.node_host}:{self.node_port}",
        }

    def shutdown(self) -> None:
        """Begin a graceful shutdown: ``run`` returns once it is done."""
        self._shutdown.set()


def _tls_context(config: Config) -> ssl.SSLContext | None:
    if not config.server.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.server.tls_cert, config.server.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cannot load the node TLS certificate: {reason(exc)}") from exc
    return context


@attrs.frozen
class HttpApp:
    """The HTTP app and the hub of its live sockets."""

    app: QuartTrio
    live_hub: LiveHub

    def begin_shutdown(self) -> None:
        """/readyz answers 503 from now on; dashboards reconnect elsewhere (1001)."""
        begin_shutdown(self.app)
        self.live_hub.close_all()


def build_http_app(
    backends: Backends, services: Services, *, clock: Callable[[], dt.datetime] = utc_now
) -> HttpApp:
    """The HTTP app with every route: each resource's class (grass/http), built over its
    services from the container, registered with ``api.add_resource`` (docs/http-framework.md).

    The authorization-matrix and OpenAPI tests build the app through this function too, so a
    route added here is covered by them without further wiring.
    """
    running = services.running
    guard = Guard(
        authenticator=Authenticator(backends.storage.users, clock),
        limiter=backends.shared.limiter,
        limits=lambda: running.current.limits,
        client_address=ClientAddress(lambda: running.current.http.trusted_proxies),
    )
    app = create_app(
        metrics=services.metrics,
        readiness=backends.readiness,
        guard=guard,
        cors_origins=lambda: running.current.http.cors_origins,
    )
    api = api_of(app)
    api.add_resource(CheckinRoutes(services.gateway, backends.storage, running))
    api.add_resource(AuthRoutes(services.accounts))
    api.add_resource(MeRoutes(services.account_settings, services.accounts))
    api.add_resource(NodeKeyRoutes(services.node_keys))
    hub = add_live_route(
        app, backends.shared.events, backends.shared.pubsub, lambda: running.current.http
    )
    api.add_resource(NetworkRoutes(services.cluster.network))
    api.add_resource(AdminRoutes(services.cluster.admin))
    api.add_resource(EarningsRoutes(services.earnings))
    api.add_resource(ReferralRoutes(services.referrals))
    api.add_resource(WalletRoutes(services.wallets))
    return HttpApp(app, hub)


async def run(
    config: Config, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED
) -> None:
    """The whole server: open the backends, then the services, serve; returns after a
    graceful shutdown (``Server.shutdown``)."""
    running = RunningConfig(config)
    metrics = Metrics()
    instance = config.server.instance_id or ids.short_id(8)
    with logs.bound(instance=instance):
        async with open_backends(config, instance_id=instance) as backends:
            for warning in startup_warnings(config):
                log.warning(warning)
            _check_recursion_limit()
            async with open_services(backends, running, metrics) as services:
                await _serve(backends, services, task_status=task_status)
        log.info("stopped")


async def _serve(
    backends: Backends, services: Services, *, task_status: trio.TaskStatus[Server]
) -> None:
    """Both servers until ``Server.shutdown``; then nodes first (their last uptime), HTTP last."""
    config = services.running.current
    http = build_http_app(backends, services)
    node = _node_server(config, services)
    async with trio.open_nursery() as nursery:
        node_port = await nursery.start(node.serve)
        http_stop, http_done = trio.Event(), trio.Event()
        http_port = await nursery.start(_run_http, http.app, config, http_stop, http_done)
        server = Server(
            http_port,
            node_port,
            services.running,
            services.metrics,
            node,
            services.gateway,
            backends,
        )
        services.collector.settle()
        task_status.started(server)
        log.info("serving", **server.addresses())
        await server._shutdown.wait()
        grace_period = services.running.current.server.grace_period
        log.info("shutting down", grace_period=grace_period)
        http.begin_shutdown()
        node.stop_accepting()
        await node.close_all()  # every session closes 1001 (going away)
        await services.stop_nodes(1001)  # the sessions' last uptime, in one final flush
        http_stop.set()
        with trio.move_on_after(grace_period + 1):
            await http_done.wait()
        nursery.cancel_scope.cancel()


def _node_server(config: Config, services: Services) -> WebSocketServer:
    running = services.running
    return WebSocketServer(
        services.gateway.handle,
        host=config.server.node_host,
        port=config.server.node_port,
        metrics=services.metrics,
        ssl_context=_tls_context(config),
        max_message_size=config.node.max_message_size,
        max_fragments=config.node.max_message_fragments,
        connect_timeout=config.node.connect_timeout,
        max_pending=config.node.max_pending_connections,
        max_pending_per_address=config.node.max_pending_per_address,
        max_connections=config.node.max_connections,
        descriptor_reserve=config.node.descriptor_reserve,
        trusted_proxies=lambda: running.current.http.trusted_proxies,
    )


async def _run_http(
    app: Any,
    config: Config,
    stop: trio.Event,
    done: trio.Event,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    hc = HypercornConfig()
    hc.bind = [f"{config.server.http_host}:{config.server.http_port}"]
    hc.graceful_timeout = config.server.grace_period
    hc.accesslog = None  # the app logs each request itself, with its id and without secrets
    hc.errorlog = logging.getLogger("hypercorn.error")  # through grass.logs, one format
    try:
        async with trio.open_nursery() as nursery:
            try:
                binds: list[str] = await nursery.start(
                    partial(hypercorn_serve, app, hc, shutdown_trigger=stop.wait)
                )
            except (OSError, ExceptionGroup) as exc:
                where = f"{config.server.http_host}:{config.server.http_port}"
                raise StartupError(f"cannot listen for HTTP on {where}: {reason(exc)}") from exc
            task_status.started(int(binds[0].rsplit(":", 1)[1]))
    finally:
        done.set()

"""Composition root: the servers over the backends.

``run(config)`` opens the backends (:func:`grass.backends.open_backends`, which owns them and
their background tasks), starts the node WebSocket server and the HTTP server in one nursery,
each with ``nursery.start``, reports a :class:`Server` handle once both listen, and shuts down
gracefully when asked to.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio

from grass import RECURSION_LIMIT, ids, logs, pin_recursion_limit
from grass.backends import Backends, open_backends
from grass.config import Config, MailTransport, StorageBackend, reload_changes
from grass.domain.addresses import ClientAddress
from grass.errors import StartupError
from grass.http.accounts import add_auth_routes
from grass.http.admin import add_admin_routes
from grass.http.api import Guard
from grass.http.app import create_app
from grass.http.auth import Authenticator
from grass.http.checkin import add_checkin_routes
from grass.http.earnings import add_earnings_routes
from grass.http.live import add_live_route
from grass.http.me import add_me_routes
from grass.http.network import add_network_routes
from grass.http.node_keys import add_node_key_routes
from grass.http.wallets import add_wallet_routes
from grass.metrics import Metrics
from grass.services.accounts import Accounts
from grass.services.closer import BucketCloser
from grass.services.earnings import EarningsService
from grass.services.epochs import EpochService
from grass.services.live import LiveEvents
from grass.services.mail import MailDelivery, transport_for
from grass.services.me import Me
from grass.services.node_keys import NodeKeys
from grass.services.passwords import Passwords
from grass.services.referrals import ReferralService
from grass.services.scores import ScoreService
from grass.services.wallets import Wallets
from grass.ws.collector import Collector
from grass.ws.gateway import Gateway
from grass.ws.network_features import NetworkFeatures
from grass.ws.server import NodeServer, reason

log = logs.get("grass.app")

Check = Callable[[], Awaitable[None]]
NETWORK_FEATURES = "grass.network"
LIVE_HUB = "grass.live"


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


class LiveConfig:
    """The running config. SIGHUP swaps in the reloadable sections; the rest needs a restart."""

    def __init__(self, config: Config) -> None:
        self.current = config
        self._listeners: list[Callable[[Config], None]] = []

    def on_reload(self, listener: Callable[[Config], None]) -> None:
        self._listeners.append(listener)

    def apply(self, new: Config) -> list[str]:
        """Apply a validated config; returns the restart-only sections that were not applied."""
        self.current, ignored = reload_changes(self.current, new)
        for listener in self._listeners:
            listener(self.current)
        return ignored


@attrs.define
class Server:
    """A running grass server, as handed to the caller of ``nursery.start(run, ...)``."""

    http_port: int
    node_port: int
    live: LiveConfig
    metrics: Metrics
    node: NodeServer
    gateway: Gateway
    backends: Backends
    _shutdown: trio.Event = attrs.field(factory=trio.Event)

    def addresses(self) -> dict[str, str]:
        server = self.live.current.server
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


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def build_http_app(
    backends: Backends,
    live: LiveConfig,
    metrics: Metrics,
    gateway: Gateway,
    *,
    clock: Callable[[], dt.datetime] = utc_now,
    on_mail: Callable[[], None] = lambda: None,
) -> QuartTrio:
    """The HTTP app with every route: each resource's service is built here from the backends
    and handed to that resource's ``add_<resource>_routes`` (docs/http-framework.md).

    The authorization-matrix and OpenAPI tests build the app through this function too, so a
    route added here is covered by them without further wiring.
    """
    guard = Guard(
        authenticator=Authenticator(backends.storage.users, clock),
        limiter=backends.shared.limiter,
        limits=lambda: live.current.limits,
        client_address=ClientAddress(lambda: live.current.http.trusted_proxies),
    )
    app = create_app(
        metrics=metrics,
        readiness=backends.readiness,
        guard=guard,
        cors_origins=lambda: live.current.http.cors_origins,
    )
    add_checkin_routes(app, gateway, backends.storage, live)
    settings = live.current.accounts
    passwords = Passwords(
        time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib
    )
    features = NetworkFeatures(gateway, backends.storage, backends.shared, clock=clock)
    app.extensions[NETWORK_FEATURES] = features  # its tasks run in run()'s nursery
    accounts = Accounts(
        backends.storage,
        features.events,
        passwords,
        lambda: live.current,
        clock,
        nodes=features.control,
        on_mail=on_mail,
    )
    app.extensions["grass.accounts"] = accounts  # run() starts its housekeeping
    add_auth_routes(app, accounts)
    me = Me(backends.storage, lambda: live.current, clock, features.events)
    add_me_routes(app, me, accounts)
    add_node_key_routes(
        app, NodeKeys(backends.storage, lambda: live.current, clock, features.control)
    )
    app.extensions[LIVE_HUB] = add_live_route(
        app, backends.shared.events, backends.shared.pubsub, lambda: live.current.http
    )
    add_network_routes(app, features.network)
    add_admin_routes(app, features.admin)
    epochs = EpochService(backends.storage, backends.ledger, lambda: live.current)
    add_earnings_routes(
        app,
        EarningsService(backends.storage, epochs, clock),
        ReferralService(backends.storage, lambda: live.current),
    )
    wallets = Wallets(
        backends.ledger,
        backends.storage.users,
        backends.shared.sessions,
        lambda: live.current,
        clock,
    )
    add_wallet_routes(app, wallets)
    return app


async def run(
    config: Config, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED
) -> None:
    """The whole server. Returns after a graceful shutdown (``Server.shutdown``)."""
    live = LiveConfig(config)
    metrics = Metrics()
    instance = config.server.instance_id or ids.short_id(8)
    with logs.bound(instance=instance):
        async with (
            open_backends(config, instance_id=instance) as backends,
            trio.open_nursery() as nursery,
        ):
            engine = _engine(backends, live, metrics)
            # Collector passes stay short with many connections (grass/ws/collector.py).
            collector = Collector()
            gateway = Gateway(
                backends.storage,
                live,
                metrics,
                score_of=engine.scores.score_of,
                on_auth=engine.scores.connected,
                collector=collector,
            )
            for warning in startup_warnings(config):
                log.warning(warning)
            _check_recursion_limit()
            mail = MailDelivery(
                backends.storage.accounts,
                transport_for(config.mail),
                lambda: live.current.mail,
                utc_now,
            )
            await nursery.start(mail.run)
            app = build_http_app(backends, live, metrics, gateway, on_mail=mail.notify)
            await nursery.start(app.extensions["grass.accounts"].run_housekeeping)
            flusher = trio.CancelScope()

            async def run_flusher(*, task_status: trio.TaskStatus[None]) -> None:
                with flusher:
                    await gateway.run(task_status=task_status)

            await nursery.start(run_flusher)
            features: NetworkFeatures = app.extensions[NETWORK_FEATURES]
            await nursery.start(features.run)
            await nursery.start(engine.scores.run)
            await nursery.start(engine.closer.run)
            node = NodeServer(
                gateway.handle,
                host=config.server.node_host,
                port=config.server.node_port,
                metrics=metrics,
                ssl_context=_tls_context(config),
                max_message_size=config.node.max_message_size,
                max_fragments=config.node.max_message_fragments,
                connect_timeout=config.node.connect_timeout,
                max_pending=config.node.max_pending_connections,
                max_pending_per_address=config.node.max_pending_per_address,
                max_connections=config.node.max_connections,
                descriptor_reserve=config.node.descriptor_reserve,
                trusted_proxies=lambda: live.current.http.trusted_proxies,
            )
            node_port = await nursery.start(node.serve)
            http_stop = trio.Event()
            http_done = trio.Event()
            http_port = await nursery.start(_run_http, app, config, http_stop, http_done)
            server = Server(http_port, node_port, live, metrics, node, gateway, backends)
            collector.settle()
            task_status.started(server)
            log.info("serving", **server.addresses())
            await server._shutdown.wait()
            log.info("shutting down", grace_period=live.current.server.grace_period)
            app.extensions["grass.shutting_down"] = True
            app.extensions[LIVE_HUB].close_all()  # dashboards reconnect elsewhere (1001)
            node.stop_accepting()
            await node.close_all()  # every session closes 1001 (going away)
            flusher.cancel()
            await gateway.shutdown(1001)  # the sessions' last uptime, in one final flush
            await features.stop()
            http_stop.set()
            with trio.move_on_after(live.current.server.grace_period + 1):
                await http_done.wait()
            nursery.cancel_scope.cancel()
        log.info("stopped")


@attrs.frozen
class Engine:
    scores: ScoreService
    epochs: EpochService
    closer: BucketCloser


def _engine(backends: Backends, live: LiveConfig, metrics: Metrics) -> Engine:
    """The earnings engine's services and jobs over the backends (DESIGN §5)."""
    storage = backends.storage

    def config() -> Config:
        return live.current

    def now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    scores = ScoreService(storage, config, now)
    epochs = EpochService(storage, backends.ledger, config)
    closer = BucketCloser(
        storage,
        backends.ledger,
        scores,
        epochs,
        backends.store.job_lock,  # one closer across every instance
        config,
        now,
        metrics=metrics,
        # What each user was credited reaches their dashboards (grass.http.live).
        events=LiveEvents(backends.shared.events, backends.shared.pubsub),
    )
    return Engine(scores, epochs, closer)


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

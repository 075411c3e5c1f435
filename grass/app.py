"""Composition root: the only module that knows the concrete backends and servers.

``open_backends(config)`` owns every backend and its background tasks. ``run(config)`` starts the
node WebSocket server and the HTTP server in one nursery, each with ``nursery.start``, reports a
:class:`Server` handle once both listen, and shuts down gracefully when asked to.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    nullcontext,
)
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio

from grass import RECURSION_LIMIT, ids, logs, pin_recursion_limit
from grass.config import Config, LedgerBackend, MailTransport, StorageBackend, reload_changes
from grass.domain.addresses import ClientAddress
from grass.errors import StartupError, StorageError
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
from grass.ledger.abc import Journal, Ledger
from grass.ledger.anchored import AnchoredLedger
from grass.ledger.memory import MemoryAnchor, MemoryJournal, open_memory_ledger
from grass.ledger.mockchain import open_mockchain_ledger
from grass.ledger.postgres import PostgresAnchor, PostgresJournal
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
from grass.storage.abc import Storage, StorageUnavailable
from grass.storage.inprocess import open_inprocess_state
from grass.storage.memory import open_memory_storage
from grass.storage.memory.payouts import MemoryJobLock
from grass.storage.payouts import JobLock
from grass.storage.postgres import Database
from grass.storage.postgres.partitions import ensure_partitions
from grass.storage.postgres.payouts import PgJobLock
from grass.storage.postgres.storage import PostgresStorage, open_postgres_storage
from grass.storage.postgres.uptime import merge_uptime
from grass.storage.redis import open_redis_state
from grass.storage.shared import SharedState
from grass.ws.collector import Collector
from grass.ws.gateway import Gateway
from grass.ws.network_features import NetworkFeatures
from grass.ws.server import NodeServer, reason

log = logs.get("grass.app")

Check = Callable[[], Awaitable[None]]
NETWORK_FEATURES = "grass.network"
LIVE_HUB = "grass.live"


@attrs.define
class Backends:
    """Every backend the services use, plus a readiness check per backend."""

    config: Config
    storage: Storage
    shared: SharedState
    ledger: Ledger
    checks: dict[str, Check] = attrs.field(factory=dict)

    async def readiness(self) -> dict[str, str]:
        problems: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                with trio.fail_after(2):
                    await check()
            except trio.TooSlowError:
                problems[name] = "no answer within 2 s"
            except Exception as exc:
                problems[name] = str(exc) or type(exc).__name__
        return problems


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


@asynccontextmanager
async def open_backends(config: Config, *, instance_id: str = "local") -> AsyncIterator[Backends]:
    """Open the configured backends; everything they own is closed on exit."""
    async with AsyncExitStack() as stack:
        checks: dict[str, Check] = {}
        if config.storage.backend is StorageBackend.MEMORY:
            log.warning("storage is in memory: nothing is persisted, everything is lost at exit")
            storage: Storage = await stack.enter_async_context(open_memory_storage())
        else:
            pg = await stack.enter_async_context(
                open_postgres_storage(
                    config.storage.postgres_dsn.reveal(),
                    replica_dsn=config.storage.postgres_replica_dsn.reveal() or None,
                    min_size=config.storage.pool_min_size,
                    max_size=config.storage.pool_max_size,
                )
            )
            checks["postgres"] = pg.db.ping
            tasks = await stack.enter_async_context(trio.open_nursery())
            tasks.start_soon(_keep_partitions_ahead, pg.db)
            tasks.start_soon(_merge_uptime_deltas, pg.db, config.node.uptime_flush_interval)
            stack.callback(tasks.cancel_scope.cancel)
            storage = pg
        if config.redis.url:
            shared = await stack.enter_async_context(
                open_redis_state(
                    config.redis.url.reveal(),
                    instance_id=instance_id,
                    event_log_size=config.http.live_replay_events,
                    event_log_ttl=config.http.live_replay_seconds,
                )
            )

            async def redis_answers() -> None:
                await shared.presence.lookup(["readyz"])

            checks["redis"] = redis_answers
        else:
            shared = await stack.enter_async_context(
                open_inprocess_state(
                    instance_id=instance_id,
                    event_log_size=config.http.live_replay_events,
                    event_log_ttl=config.http.live_replay_seconds,
                )
            )
        ledger = await stack.enter_async_context(_open_ledger(config, storage))
        log.info(
            "backends",
            storage=config.storage.backend.value,
            ledger=config.ledger.backend.value,
            redis=bool(config.redis.url),
        )
        yield Backends(config, storage, shared, ledger, checks)


PARTITION_CHECK_INTERVAL = 6 * 3600.0


async def _keep_partitions_ahead(db: Database) -> None:
    """Months roll over while a server runs: keep the next partitions created ahead of time."""
    while True:
        await trio.sleep(PARTITION_CHECK_INTERVAL)
        try:
            created = await ensure_partitions(db)
        except StorageUnavailable as exc:
            log.warning("partition check failed; retrying later", error=str(exc))
            continue
        if created:
            log.info("partitions created", partitions=created)


async def _merge_uptime_deltas(db: Database, interval: float) -> None:
    """Uptime flushes append deltas (grass.storage.postgres.uptime): fold them into buckets
    once per flush interval, so that reads, which add what is pending, stay cheap."""
    while True:
        await trio.sleep(interval)
        try:
            await merge_uptime(db)
        except StorageError as exc:  # the deltas stay pending, and reads still count them
            log.warning("uptime merge failed; retrying later", error=str(exc))


def _open_ledger(config: Config, storage: Storage) -> AbstractAsyncContextManager[Ledger]:
    return open_ledger(config, storage)


def store_journal(storage: Storage) -> Journal:
    """The journal kept in ``storage``: credits always live in the store."""
    if isinstance(storage, PostgresStorage):
        return PostgresJournal(storage.db)
    return MemoryJournal()


def open_ledger(
    config: Config,
    storage: Storage,
    *,
    backend: LedgerBackend | None = None,
    journal: Journal | None = None,
) -> AbstractAsyncContextManager[AnchoredLedger]:
    """The ledger anchored on ``backend`` (default: ``ledger.backend``). ``journal``: share one
    (``grass ledger migrate`` opens two ledgers on one store); default: the store's, except
    that a memory ledger is all in memory."""
    settings = config.ledger
    backend = backend or settings.backend
    if backend is LedgerBackend.MEMORY:
        if journal is not None:
            return nullcontext(AnchoredLedger(journal, MemoryAnchor()))
        return open_memory_ledger()
    if backend is LedgerBackend.POSTGRES:
        if not isinstance(storage, PostgresStorage):
            raise StartupError("ledger.backend: postgres needs storage.backend = postgres")
        return nullcontext(
            AnchoredLedger(journal or PostgresJournal(storage.db), PostgresAnchor(storage.db))
        )
    journal = journal or store_journal(storage)
    if backend is LedgerBackend.MOCKCHAIN:
        return open_mockchain_ledger(
            Path(settings.mockchain_path) / "chain.jsonl",
            block_time=settings.mockchain_block_time,
            confirmations=settings.confirmations,
            journal=journal,
        )
    return _open_web3_ledger(config, storage, journal)


@asynccontextmanager
async def _open_web3_ledger(
    config: Config, storage: Storage, journal: Journal
) -> AsyncIterator[AnchoredLedger]:
    # web3 takes a second to import: only a server anchoring on a chain pays for it.
    from grass.ledger.web3 import (
        DistributorClient,
        MemoryOutbox,
        Outbox,
        PostgresOutbox,
        connect,
        load_signer,
        open_web3_ledger,
    )

    settings = config.ledger
    if not (settings.rpc_url and settings.contract_address):
        raise StartupError("the web3 ledger needs ledger.rpc_url and ledger.contract_address")
    signer = load_signer(
        private_key=settings.private_key.reveal(),
        keystore_path=settings.keystore_path,
        password=settings.keystore_password.reveal(),
    )
    client = DistributorClient(
        connect(settings.rpc_url),
        settings.contract_address,
        deployed_at=settings.contract_block or None,  # 0: found once on the chain
    )
    try:
        owner = await client.owner()
    except Exception as exc:
        raise StartupError(
            f"ledger.rpc_url: no distributor answers at {settings.contract_address}: {exc}"
        ) from None
    if owner != signer.address:
        raise StartupError(
            f"ledger: the distributor is owned by {owner}, not by the configured key"
            f" {signer.address}: its setRoot would revert"
        )
    if isinstance(storage, PostgresStorage):
        outbox: Outbox = PostgresOutbox(storage.db)
    else:
        log.warning("web3 ledger on memory storage: the journal and outbox die with the process")
        outbox = MemoryOutbox()
    async with open_web3_ledger(
        client,
        signer,
        journal=journal,
        outbox=outbox,
        confirmations=settings.confirmations,
        poll_interval=settings.poll_interval,
    ) as ledger:
        yield ledger


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
    # On PostgreSQL an advisory lock keeps one closer across every instance.
    lock: JobLock = (
        PgJobLock(storage.db) if isinstance(storage, PostgresStorage) else MemoryJobLock()
    )

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
        lock,
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

"""The services container: every service built once over the backends, and their loops.

:func:`build_services` builds the container (tests build it without loops);
:func:`open_services` also runs every background loop in a nursery of its own, and at exit
takes the nodes' last uptime (:meth:`Services.stop_nodes`) before it stops them. The HTTP and
node adapters receive the container; nothing is looked up by name afterwards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from grass.backends import Backends
from grass.config import Config
from grass.metrics import Metrics
from grass.nodes.collector import Collector
from grass.nodes.gateway import Gateway
from grass.running import RunningConfig
from grass.services.account_settings import AccountSettings
from grass.services.accounts import Accounts
from grass.services.closer import BucketCloser
from grass.services.earnings import EarningsService
from grass.services.epochs import EpochService
from grass.services.live import LiveEvents
from grass.services.mail import MailDelivery, mail_sender_for
from grass.services.node_keys import NodeKeys
from grass.services.passwords import Passwords
from grass.services.referrals import ReferralService
from grass.services.scores import ScoreService
from grass.services.wallets import Wallets
from grass.wiring.cluster import ClusterServices


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@attrs.frozen
class Services:
    """Every service of one server, each built once."""

    running: RunningConfig
    metrics: Metrics
    gateway: Gateway
    #: Network and admin services, the gateway's ban checks and the cluster's command channel.
    cluster: ClusterServices
    accounts: Accounts
    account_settings: AccountSettings
    node_keys: NodeKeys
    epochs: EpochService
    earnings: EarningsService
    referrals: ReferralService
    wallets: Wallets
    scores: ScoreService
    closer: BucketCloser
    mail: MailDelivery
    #: Told of each new node session (keeps collector passes short: grass/nodes/collector.py).
    collector: Collector
    _flusher: trio.CancelScope = attrs.field(factory=trio.CancelScope)

    async def run_loops(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Every background loop, each started (ready) in turn."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.mail.run)
            await nursery.start(self.accounts.run_housekeeping)
            await nursery.start(self._run_flusher)
            await nursery.start(self.cluster.run)
            await nursery.start(self.scores.run)
            await nursery.start(self.closer.run)
            task_status.started()

    async def _run_flusher(self, *, task_status: trio.TaskStatus[None]) -> None:
        with self._flusher:
            await self.gateway.run(task_status=task_status)

    async def stop_nodes(self, code: int = 1001) -> None:
        """Once the node sessions are closed: their last uptime in one final flush, then this
        instance's presence withdrawn."""
        self._flusher.cancel()
        await self.gateway.shutdown(code)
        await self.cluster.stop()


def build_services(
    backends: Backends,
    running: RunningConfig,
    metrics: Metrics,
    *,
    clock: Callable[[], dt.datetime] = utc_now,
) -> Services:
    """The container over ``backends``, without its loops (architecture §3)."""
    storage, shared, ledger = backends.storage, backends.shared, backends.ledger

    def config() -> Config:
        return running.current

    scores = ScoreService(storage, config, clock)
    collector = Collector()
    gateway = Gateway(
        storage,
        running,
        metrics,
        score_of=scores.score_of,
        on_auth=scores.connected,
        collector=collector,
    )
    cluster = ClusterServices(gateway, storage, shared, clock=clock)
    events = cluster.events
    mail = MailDelivery(
        storage.accounts, mail_sender_for(config().mail), lambda: running.current.mail, clock
    )
    accounts = Accounts(
        storage,
        events,
        _passwords(config()),
        config,
        clock,
        nodes=cluster.control,
        on_mail=mail.notify,
    )
    epochs = EpochService(storage, ledger, config)
    closer = _closer(backends, scores, epochs, config, clock, metrics, events)
    return Services(
        running=running,
        metrics=metrics,
        gateway=gateway,
        cluster=cluster,
        accounts=accounts,
        account_settings=AccountSettings(storage, config, clock, events),
        node_keys=NodeKeys(storage, config, clock, cluster.control),
        epochs=epochs,
        earnings=EarningsService(storage, epochs, clock),
        referrals=ReferralService(storage, config),
        wallets=Wallets(ledger, storage.users, shared.tokens, config, clock),
        scores=scores,
        closer=closer,
        mail=mail,
        collector=collector,
    )


def _closer(
    backends: Backends,
    scores: ScoreService,
    epochs: EpochService,
    config: Callable[[], Config],
    clock: Callable[[], dt.datetime],
    metrics: Metrics,
    events: LiveEvents,
) -> BucketCloser:
    return BucketCloser(
        backends.storage,
        backends.ledger,
        scores,
        epochs,
        backends.store.job_lock,  # one closer across every instance
        config,
        clock,
        metrics=metrics,
        events=events,  # what each user was credited reaches their dashboards
    )


def _passwords(config: Config) -> Passwords:
    """Password hashing at the configured cost (a restart applies a new one)."""
    settings = config.accounts
    return Passwords(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib)


@asynccontextmanager
async def open_services(
    backends: Backends, running: RunningConfig, metrics: Metrics
) -> AsyncIterator[Services]:
    """The container with every background loop running; the loops stop at exit."""
    services = build_services(backends, running, metrics)
    async with trio.open_nursery() as nursery:
        await nursery.start(services.run_loops)
        yield services
        nursery.cancel_scope.cancel()

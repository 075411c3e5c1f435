"""The node gateway: what the node server runs for every upgrade request, and the uptime flusher.

``Gateway.handle`` checks the upgrade request before answering it (Origin, v5 token, the network
score of the token's device, connections per IP) and refuses with HTTP 403 and a JSON body
``{"error": {"code", "message", "details"}}``; otherwise it accepts and runs one
:class:`~grass.nodes.session.NodeSession`.
At AUTH it decides whether the node may join (its node key,
or its token's claims, or with legacy auth its bare user id; device owner, paused, score, device
cap) and registers it: those refusals need the AUTH answer, so they are a close with 1008 (4001
for a paused device) after the upgrade. The rules over configuration and storage are the
admission service's (grass.services.admission); those over the live connections, the
registry's (grass.nodes.registry).

A device id owned by another user, stored or connected here, is refused: a node never replaces
another user's node.

Every upgrade refusal is a 403, a bad token included (not a 401): a node cannot act on the
difference, and the body's ``code`` names the reason. Checks that cannot decide (storage down,
or no answer by the request's deadline: ``node.connect_timeout`` after the TCP accept) are
answered with their own status, 503: the node tries again later.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import trio

from grass import logs
from grass.domain.addresses import ClientAddress, canonical
from grass.domain.devices import DeviceType
from grass.domain.uptime import Accrual
from grass.errors import Forbidden, GrassError, Unauthenticated, Unavailable, http_error
from grass.metrics import Metrics
from grass.nodes import token as tokens
from grass.nodes.collector import Collector, paused
from grass.nodes.protocol import Authenticated, NodeConnection
from grass.nodes.registry import ClosedDuringAuth, IpLimit, Registry, ScoreOf, ScoreTooLow
from grass.nodes.session import NodeSession, NodeTransport
from grass.nodes.timers import Timers
from grass.running import RunningConfig
from grass.services.admission import NodeAdmission, StoredDevice
from grass.services.flusher import UptimeFlusher
from grass.services.node_keys import NodeIdentity, UnknownNodeKey
from grass.storage.devices import DeviceStore
from grass.storage.node_keys import NodeKeyStore
from grass.storage.uptime import UptimeStore
from grass.storage.users import UserStore
from grass.websocket.server import UpgradeRequest

log = logs.get(__name__)

#: The HTTP status of every refusal decided from the upgrade request alone (architecture §4).
UPGRADE_REFUSED = 403

#: How long shutdown waits for the sessions to end before the final flush.
CLOSE_TIMEOUT = 5.0


#: Hooks other features install: raise a Forbidden (403 at the upgrade) or a GrassError with a
#: close code (at AUTH). Upgrade checks get the peer address and the v5 token's claims, if any.
UpgradeCheck = Callable[[str, "tokens.TokenClaims | None"], Awaitable[None]]
AuthCheck = Callable[[str, str, str], Awaitable[None]]  # user_id, device_id, ip


class GatewayStores(Protocol):
    @property
    def users(self) -> UserStore: ...
    @property
    def devices(self) -> DeviceStore: ...
    @property
    def uptime(self) -> UptimeStore: ...
    @property
    def node_keys(self) -> NodeKeyStore: ...


class UpgradeTimeout(Unavailable):
    code = "upgrade_timeout"


class Gateway:
    def __init__(
        self,
        storage: GatewayStores,
        running: RunningConfig,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        *,
        score_of: ScoreOf = lambda _: None,
        on_auth: Callable[[str], None] = lambda _: None,
        token_key: bytes | None = None,
        collector: Collector | None = None,
    ) -> None:
        self.storage = storage
        self.running = running
        self.metrics = metrics
        self.clock = clock
        config = running.current
        key = token_key or config.secrets.token_key.value.encode()
        # No configured key: tokens are valid on this process only (and die with it).
        self.token_key = key if len(key) >= tokens.MIN_SECRET_LENGTH else secrets.token_bytes(32)
        self._score_of = score_of
        self.admission = NodeAdmission(storage, lambda: self.running.current, clock)
        self.upgrade_checks: list[UpgradeCheck] = []
        self.auth_checks: list[AuthCheck] = []
        #: Told each authenticated device id (the scorer scores it again: architecture §5).
        self._on_auth = on_auth
        #: Behind http.trusted_proxies (a load balancer in front of the node port), the node's
        #: address is the one they forwarded: the same rule as the HTTP API and check-in, so a
        #: v5 token bound to that address at check-in matches here.
        self._client_address = ClientAddress(lambda: self.running.current.http.trusted_proxies)
        #: Told of each new session, to keep collector passes short (the server's, not tests').
        self._collector = collector
        self.registry = Registry(
            max_devices_per_user=lambda: self.running.current.limits.max_devices_per_user,
            max_connections_per_ip=lambda: self.running.current.limits.max_connections_per_ip,
            min_network_score=lambda: self.running.current.limits.min_network_score,
            score_of=score_of,
            max_stored_devices_per_user=lambda: (
                self.running.current.limits.max_stored_devices_per_user
            ),
        )
        self._sessions = 0
        self._idle = trio.Event()
        # Bound once: every session shares them (no per-connection method objects).
        self._hooks = (self._authorize, self._closed)
        #: Every session's watchdog and round-trip pings, in one task (run by ``run``).
        self.timers = Timers()
        self.flusher = UptimeFlusher(
            storage.devices,
            storage.uptime,
            interval=lambda: self.running.current.node.uptime_flush_interval,
            metrics=metrics,
            pause=paused,
        )

    # -- tokens -----------------------------------------------------------------------------

    def issue_token(self, user_id: str, device_id: str, ip: str) -> str:
        ttl = self.running.current.node.checkin_token_ttl
        return tokens.issue(self.token_key, user_id, device_id, ip, self.clock(), ttl)

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The sessions' timers and the uptime flusher; cancel it once the sessions ended, then
        call ``shutdown`` for the final flush."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.timers.run)
            await self.flusher.run(task_status=task_status)

    async def shutdown(self, code: int = 1001) -> None:
        """Close every node session, wait for them to end (bounded), write what they accrued."""
        self.registry.close_all(code)
        with trio.CancelScope(shield=True):
            with trio.move_on_after(CLOSE_TIMEOUT):
                while self._sessions:
                    self._idle = trio.Event()
                    await self._idle.wait()
            await self.flusher.flush_now()

    # -- connections ------------------------------------------------------------------------

    def _client_ip(self, request: UpgradeRequest) -> str:
        forwarded = [v.decode("latin-1") for k, v in request.headers if k == b"x-forwarded-for"]
        peer = request.remote_address
        return self._client_address(peer, forwarded) or canonical(peer) or peer

    async def handle(self, request: UpgradeRequest) -> None:
        ip = self._client_ip(request)
        try:
            claims = self._check_upgrade(request, ip)
            with trio.move_on_at(request.deadline) as checks:
                for upgrade_check in self.upgrade_checks:
                    await upgrade_check(ip, claims)
            if checks.cancelled_caught:
                raise UpgradeTimeout("the upgrade could not be checked in time")
            self.registry.open(ip)
        except (Forbidden, Unauthenticated) as exc:
            await request.reject(UPGRADE_REFUSED, http_error(exc).body)
            return
        except GrassError as exc:  # storage down or slow: not the node's fault
            error = http_error(exc)
            log.warning("upgrade not checked", error=str(exc), status=error.status)
            await request.reject(error.status, error.body)
            return
        try:
            transport = await request.accept()
            # run_session inlined: every await level lives as long as the connection does.
            session = self._session(transport, ip, claims)
            self._sessions += 1
            try:
                await session.run()
            finally:
                self._session_ended()
        finally:
            self.registry.release(ip)

    def _check_upgrade(self, request: UpgradeRequest, ip: str) -> tokens.TokenClaims | None:
        self.admission.check_origin(request.header("origin"))
        query = parse_qs(urlsplit(request.path or "/").query)
        token = query.get("token", [""])[0]
        if not token:
            return None  # a v4 node: its AUTH answer names it (a node key, or legacy a user id)
        claims = tokens.verify(self.token_key, token, ip, self.clock())
        # The token names the device, so its score is known before the upgrade (v4 nodes are
        # only known at AUTH, where the registry checks the same minimum).
        score = self._score_of(claims.device_id)
        if score is not None and score < self.running.current.limits.min_network_score:
            raise ScoreTooLow(f"network score {score:g} is below the minimum")
        return claims

    async def run_session(
        self, transport: NodeTransport, ip: str, claims: tokens.TokenClaims | None
    ) -> None:
        """One session over any transport (tests pass a fake one)."""
        session = self._session(transport, ip, claims)
        self._sessions += 1
        try:
            await session.run()
        finally:
            self._session_ended()

    def _session(
        self, transport: NodeTransport, ip: str, claims: tokens.TokenClaims | None
    ) -> NodeSession:
        node = self.running.current.node
        authorize, on_close = self._hooks
        return NodeSession(
            transport,
            NodeConnection(max_message_size=node.max_message_size),
            ip=ip,
            authorize=authorize,
            on_close=on_close,
            clock=self.clock,
            auth_timeout=node.auth_timeout,
            heartbeat_timeout=node.heartbeat_timeout,
            send_queue_size=node.send_queue_size,
            context=claims,
            timers=self.timers,
        )

    def _session_ended(self) -> None:
        self._sessions -= 1
        if not self._sessions:
            self._idle.set()

    async def _authorize(self, session: NodeSession, event: Authenticated) -> Accrual:
        with self.registry.authorizing() as pending:
            identity, known = await self._check_auth(session, event)
            # No await from here to the registration: a revocation or ban announced while
            # the checks above awaited storage was noted on ``pending`` (grass.nodes.registry).
            if identity.key_id is not None and identity.key_id in pending.keys:
                raise UnknownNodeKey("unknown or revoked node key")
            if (closed := pending.users.get(identity.user_id)) is not None:
                raise ClosedDuringAuth(*closed)
            if (closed := pending.devices.get(event.result.browser_id)) is not None:
                raise ClosedDuringAuth(*closed)
            return self._admit(session, event, identity, known)

    async def _check_auth(
        self, session: NodeSession, event: Authenticated
    ) -> tuple[NodeIdentity, StoredDevice]:
        """Every check of an AUTH answer (they await storage); who it is, and its device as
        storage knows it."""
        claims: tokens.TokenClaims | None = session.context  # type: ignore[assignment]
        device_id = event.result.browser_id
        identity = await self.admission.identify(event.result.user_id, device_id, claims)
        user_id = identity.user_id
        for auth_check in self.auth_checks:
            await auth_check(user_id, device_id, session.ip)
        known = await self.admission.check_device(user_id, device_id)
        self.registry.check(
            user_id, device_id, recent=known.recent, active=known.active, stored=known.stored
        )
        if session.close_code is not None:  # closed while we awaited storage
            raise Unauthenticated("connection closed during AUTH")
        return identity, known

    def _admit(
        self,
        session: NodeSession,
        event: Authenticated,
        identity: NodeIdentity,
        known: StoredDevice,
    ) -> Accrual:
        """Register an authenticated session (synchronous: nothing can close it meanwhile)."""
        config = self.running.current
        result = event.result
        device_id, user_id = result.browser_id, identity.user_id
        accrual = Accrual(
            device_id=device_id,
            user_id=user_id,
            ip=session.ip,
            device_type=DeviceType(result.device_type.value),
            version=result.version or None,
            user_agent=result.user_agent or None,
            now=self.clock(),
            bucket_seconds=config.rates.bucket_seconds,
            cap=config.node.heartbeat_timeout,
            reconnect=known.device is not None,
            saved=known.device is not None,
            recent=known.active,
            key_id=identity.key_id,
        )
        session.accrual = accrual
        self.registry.add(session)
        self.flusher.add(accrual)
        self._on_auth(device_id)
        self.metrics.node_messages.labels("auth").inc()
        if self._collector is not None:
            self._collector.connected()
        return accrual

    async def _closed(self, session: NodeSession) -> None:
        if session.accrual is not None:
            self.registry.remove(session)
            self.flusher.retire(session.accrual)


__all__ = ["UPGRADE_REFUSED", "Gateway", "IpLimit"]

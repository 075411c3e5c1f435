"""``/api/v1/live``: the live dashboard socket (a WebSocket; the protocol is in docs/live.md).

One socket per open dashboard. It authenticates once (a session, or an API key with a read
scope), subscribes to its user's channel, replays what the user's event log holds after the
client's ``since``, then forwards the user's events (grass.services.live) until the client
leaves, the server shuts down (1001), or its session, key or account ends (4410).

Tokens never travel in the URL, where proxies and logs would keep them: a browser (which
cannot set headers on a WebSocket) offers the subprotocols ``grass.live.v1`` and
``bearer.<token>``, or sends ``{"type": "auth", "token": ...}`` first; other clients may send
``Authorization: Bearer``. Refusals decided before the upgrade (a token in the URL, an origin
outside the allowlist, a bad token, too many attempts) are HTTP replies in the API's error
shape; later ones are close codes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import urlsplit

import attrs
import trio
from quart import Quart, websocket

from grass import jsontext, logs
from grass.config import HttpConfig
from grass.domain.users import ApiScope
from grass.errors import Forbidden, GrassError, InvalidInput, Unauthenticated
from grass.http.api import Api, api_of
from grass.services import live as events
from grass.services.authentication import Principal, TokenEnded
from grass.storage.shared_state import (
    EventLog,
    PubSub,
    SubscriptionOverflow,
    event_order,
    unframe,
    user_channel,
)

log = logs.get(__name__)

PATH = "/api/v1/live"
SUBPROTOCOL = "grass.live.v1"
BEARER = "bearer."
#: Seconds a client that authenticates by message has to send it.
AUTH_TIMEOUT = 10.0
#: Clients send pings and the auth message: nothing bigger.
MAX_CLIENT_MESSAGE = 4096

#: A client message with a string UTF-8 cannot encode (a ``\\udfff`` escape).
NOT_TEXT = 1007
BAD_MESSAGE = 4400
UNAUTHENTICATED = 4401
FORBIDDEN = 4403
REVOKED = 4410
FELL_BEHIND = 4503
GOING_AWAY = 1001
TOO_BIG = 1009

#: The API-key scopes that may receive each kind of event; other kinds go to sessions only.
EVENT_SCOPES = {
    "device": frozenset({ApiScope.DEVICES_READ, ApiScope.STATS_READ}),
    "earnings": frozenset({ApiScope.EARNINGS_READ, ApiScope.STATS_READ}),
}


class TokenInUrl(InvalidInput):
    code = "token_in_url"


class OriginRefused(Forbidden):
    code = "origin_not_allowed"


@attrs.define(eq=False)
class _Open:
    """One open socket: how it ends is decided once, by whoever ends it first."""

    user_id: str
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    code: int | None = None
    reason: str = ""

    def end(self, code: int, reason: str) -> None:
        if self.code is None:
            self.code, self.reason = code, reason
        self.scope.cancel()


class LiveHub:
    """Serves the live sockets of this instance; ``close_all`` at shutdown."""

    def __init__(
        self,
        api: Api,
        log_: EventLog,
        pubsub: PubSub,
        settings: Callable[[], HttpConfig],
    ) -> None:
        self._api = api
        self._log = log_
        self._pubsub = pubsub
        self._settings = settings
        self._open: set[_Open] = set()

    def __len__(self) -> int:
        return len(self._open)

    def close_all(self, code: int = GOING_AWAY, reason: str = "server shutting down") -> None:
        for opened in list(self._open):
            opened.end(code, reason)

    # -- before the upgrade -------------------------------------------------------------------

    def _origins(self) -> Collection[str]:
        settings = self._settings()
        own = urlsplit(settings.public_url)
        return {*settings.cors_origins, f"{own.scheme}://{own.netloc}"}

    async def _resolve(self, token: str, ip: str) -> Principal:
        try:
            return await self._api.guard.authenticator.resolve(token)
        except TokenEnded:
            raise
        except Unauthenticated:
            await self._api.count_failed_auth(ip)
            raise

    async def serve(self) -> Any:
        ws = websocket
        if {"token", "access_token"} & set(ws.args):
            raise TokenInUrl(
                "send the token as the subprotocol bearer.<token> or in the first message,"
                " never in the URL"
            )
        origin = ws.headers.get("Origin")
        if origin is not None and origin not in self._origins():
            raise OriginRefused("this origin may not open a live socket")
        ip = self._api.guard.client_address(ws.remote_addr, ws.headers.getlist("X-Forwarded-For"))
        await self._api.limit_address(ip)
        offered = list(ws.requested_subprotocols)
        token = _header_token(ws.headers.get("Authorization", ""))
        for protocol in offered:
            if protocol.startswith(BEARER):
                token = protocol[len(BEARER) :]
        if offered and SUBPROTOCOL not in offered:
            raise InvalidInput(f"offer the subprotocol {SUBPROTOCOL}")
        principal = await self._resolve(token, ip) if token else None
        await ws.accept(subprotocol=SUBPROTOCOL if offered else None)
        socket = _Socket(ws)
        since = ws.args.get("since")
        if principal is None:
            try:
                first = await socket.first_message()
            except jsontext.NotText as exc:
                return await socket.close(NOT_TEXT, exc.message[:120])
            if first is None:
                return await socket.close(UNAUTHENTICATED, "authenticate within 10 seconds")
            if not isinstance(first.get("token"), str) or first.get("type") != "auth":
                return await socket.close(BAD_MESSAGE, 'send {"type": "auth", "token": ...}')
            token = first["token"]
            since = first.get("since") if isinstance(first.get("since"), str) else since
            try:
                principal = await self._resolve(token, ip)
            except Unauthenticated as exc:
                return await socket.close(UNAUTHENTICATED, exc.message[:120])
            except Forbidden as exc:
                return await socket.close(FORBIDDEN, exc.message[:120])
        assert token is not None  # the principal came from it
        await self._serve(socket, principal, token, since)
        return None

    # -- after it -----------------------------------------------------------------------------

    async def _serve(
        self, socket: _Socket, principal: Principal, token: str, since: str | None
    ) -> None:
        opened = _Open(principal.user_id)
        self._open.add(opened)
        log.info("live socket opened", user=principal.user_id, resumed=since is not None)
        try:
            with opened.scope:
                await self._forward(socket, opened, principal, token, since)
        except* SubscriptionOverflow:
            opened.end(FELL_BEHIND, "fell behind: reconnect with since=<last id>")
        finally:
            self._open.discard(opened)
        log.info("live socket closed", user=principal.user_id, code=opened.code)
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await socket.close(opened.code or 1000, opened.reason)

    async def _forward(
        self,
        socket: _Socket,
        opened: _Open,
        principal: Principal,
        token: str,
        since: str | None,
    ) -> None:
        channel = user_channel(principal.user_id)
        async with self._pubsub.subscribe(channel) as messages, trio.open_nursery() as nursery:
            # Subscribed first, replay second: an event in both is dropped by its id below.
            replay = await self._log.replay(channel, since)
            await socket.send(
                {
                    "type": "hello",
                    "user_id": principal.user_id,
                    "resync": since is not None and not replay.complete,
                    "last_id": replay.last_id,
                }
            )
            for event_id, message in replay.events:
                await self._send_event(socket, principal, event_id, message)
            newest = event_order(replay.last_id) if replay.last_id else None
            nursery.start_soon(self._read, socket, opened)
            nursery.start_soon(self._recheck, opened, token)
            async for raw in messages:
                live_id, payload = unframe(raw)
                if live_id is None:
                    self._control(opened, principal, payload)
                    continue
                order = event_order(live_id)
                if newest is not None and (order is None or order <= newest):
                    continue  # already in the replay
                await self._send_event(socket, principal, live_id, payload)

    async def _send_event(
        self, socket: _Socket, principal: Principal, event_id: str, message: bytes
    ) -> None:
        event = _own(message)
        if _may_see(principal, str(event.get("type", ""))):
            await socket.send({"id": event_id, **event})

    def _control(self, opened: _Open, principal: Principal, message: bytes) -> None:
        event = _own(message)
        kind = event.get("type")
        if kind == events.SESSION_REVOKED and event.get("session") == principal.session_hash:
            opened.end(REVOKED, "session revoked")
        elif kind == events.API_KEY_REVOKED and (
            principal.api_key is not None and event.get("key") == principal.api_key.id
        ):
            opened.end(REVOKED, "API key revoked")
        elif kind == events.ACCOUNT_CLOSED:
            opened.end(REVOKED, "account closed")

    async def _read(self, socket: _Socket, opened: _Open) -> None:
        while True:
            message = await socket.receive()
            if len(message) > MAX_CLIENT_MESSAGE:
                return opened.end(TOO_BIG, f"messages are at most {MAX_CLIENT_MESSAGE} bytes")
            try:
                kind = _parse(message).get("type")
            except jsontext.NotText as exc:
                return opened.end(NOT_TEXT, exc.message[:120])
            if kind != "ping":
                return opened.end(BAD_MESSAGE, 'the client sends only {"type": "ping"}')
            await socket.send({"type": "pong"})

    async def _recheck(self, opened: _Open, token: str) -> None:
        """A revocation closes the socket at once through pub/sub; this is the safety net for
        a lost message."""
        while True:
            await trio.sleep(self._settings().live_recheck_interval)
            try:
                await self._api.guard.authenticator.resolve(token)
            except (Unauthenticated, Forbidden) as exc:
                return opened.end(REVOKED, exc.message[:120])
            except GrassError as exc:  # storage down: keep serving, check again later
                log.warning("live socket recheck failed", error=str(exc))


class _Socket:
    """The accepted websocket: JSON out (one send at a time), text in."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._sending = trio.Lock()
        self._closed = False

    async def send(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, separators=(",", ":"))
        async with self._sending:
            await self._ws.send(text)

    async def receive(self) -> str:
        message = await self._ws.receive()
        return message if isinstance(message, str) else message.decode(errors="replace")

    async def first_message(self) -> dict[str, Any] | None:
        with trio.move_on_after(AUTH_TIMEOUT):
            message = await self.receive()
            return _parse(message) if len(message) <= MAX_CLIENT_MESSAGE else {}
        return None

    async def close(self, code: int, reason: str) -> None:
        if not self._closed:
            self._closed = True
            await self._ws.close(code, reason)


def _parse(text: str | bytes) -> dict[str, Any]:
    """A JSON object, or {} for anything else (what no rule accepts); a string that is not
    UTF-8 text raises NotText (a client's message closes the socket with 1007)."""
    try:
        data = jsontext.loads(text, what="message")
    except (jsontext.InvalidJson, jsontext.JsonTooDeep):
        return {}
    return data if isinstance(data, dict) else {}


def _own(message: bytes) -> dict[str, Any]:
    """An event or command another part of grass published: {} for anything unreadable."""
    try:
        return _parse(message)
    except jsontext.NotText:
        return {}


def _header_token(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _may_see(principal: Principal, kind: str) -> bool:
    if principal.api_key is None:
        return True
    scopes = EVENT_SCOPES.get(kind.partition(".")[0])
    return scopes is not None and bool(scopes & principal.api_key.scopes)


def add_live_route(
    app: Quart, log_: EventLog, pubsub: PubSub, settings: Callable[[], HttpConfig]
) -> LiveHub:
    hub = LiveHub(api_of(app), log_, pubsub, settings)

    async def live() -> Any:
        return await hub.serve()

    app.add_websocket(PATH, "live", live)
    return hub

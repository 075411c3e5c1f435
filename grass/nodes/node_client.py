"""A reference node: speaks the Grass v4 protocol (and the v5 check-in) like a real client.

``run_node`` keeps one device connected: it answers AUTH, sends a PING every
``ping_interval`` seconds (± ``jitter`` as a fraction), echoes each PONG, and reconnects after
``reconnect_delay`` when the server closes (unless told not to). ``run_nodes`` runs N devices of
one user. Both take ``task_status`` (reported once every device has authenticated... or given up)
and stop cleanly on cancel. HTTP_REQUEST jobs are answered with status 501: the reference node
does not fetch anything on anyone's behalf.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import attrs
import httpx
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection

from grass import jsontext, logs
from grass.websocket.client import insecure_client_context, open_node_socket

log = logs.get(__name__)


@attrs.define
class NodeStats:
    """Counters of one device (or, summed, of many)."""

    connections: int = 0
    authenticated: int = 0
    pings: int = 0
    pongs: int = 0
    errors: int = 0
    last_close: int | None = None


@attrs.frozen(kw_only=True)
class NodeIdentity:
    user_id: str
    device_id: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    device_type: str = "extension"
    version: str = "4.29.0"
    user_agent: str = "grass-reference-node"
    extension_id: str | None = None


async def checkin(checkin_url: str, node: NodeIdentity) -> tuple[list[str], str]:
    """POST /checkin: the destinations ("host:port") and the token."""
    body = {
        "browserId": node.device_id,
        "userId": node.user_id,
        "version": node.version,
        "extensionId": node.extension_id,
        "userAgent": node.user_agent,
        "deviceType": node.device_type,
    }
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(checkin_url, json=body)
    response.raise_for_status()
    data = response.json()
    return list(data["destinations"]), str(data["token"])


def _with_token(url: str, destination: str | None, token: str) -> str:
    parts = urlsplit(url)
    netloc = destination or parts.netloc
    return urlunsplit((parts.scheme, netloc, parts.path or "/", urlencode({"token": token}), ""))


def auth_answer(request_id: str, node: NodeIdentity, now: float) -> str:
    result: dict[str, Any] = {
        "browser_id": node.device_id,
        "user_id": node.user_id,
        "user_agent": node.user_agent,
        "timestamp": int(now),
        "device_type": node.device_type,
        "version": node.version,
    }
    if node.extension_id:
        result["extension_id"] = node.extension_id
    return json.dumps({"id": request_id, "origin_action": "AUTH", "result": result})


def ping_message() -> str:
    return json.dumps({"id": str(uuid.uuid4()), "version": "1.0.0", "action": "PING", "data": {}})


async def _session(
    ws: WebSocketConnection,
    node: NodeIdentity,
    stats: NodeStats,
    ping_interval: float,
    jitter: float,
    on_auth: Callable[[], None],
) -> None:
    """Until the server closes: answer AUTH, ping, echo PONGs, refuse jobs."""

    async def pinger() -> None:
        while True:
            await ws.send_message(ping_message())
            stats.pings += 1
            spread = ping_interval * jitter
            await trio.sleep(max(0.001, ping_interval + random.uniform(-spread, spread)))

    try:
        async with trio.open_nursery() as nursery:
            while True:
                message = jsontext.loads(await ws.get_message(), what="message")
                action = message.get("action")
                if action == "AUTH":
                    answer = auth_answer(message["id"], node, time.time())
                    await ws.send_message(answer)
                    stats.authenticated += 1
                    nursery.start_soon(pinger)
                    on_auth()
                elif action == "PONG":
                    stats.pongs += 1
                    await ws.send_message(
                        json.dumps({"id": message["id"], "origin_action": "PONG"})
                    )
                elif action == "HTTP_REQUEST":
                    await ws.send_message(_refuse_job(message))
                elif action == "ERROR":
                    stats.errors += 1
                    log.warning("node error", device_id=node.device_id, error=message.get("data"))
    except* ConnectionClosed as group:
        closed = group.exceptions[0]
        assert isinstance(closed, ConnectionClosed)
        stats.last_close = closed.reason.code if closed.reason else None


def _refuse_job(message: dict[str, Any]) -> str:
    result = {
        "url": message["data"]["url"],
        "status": 501,
        "status_text": "Not Implemented",
        "headers": {},
        "body": "",
    }
    return json.dumps({"id": message["id"], "origin_action": "HTTP_REQUEST", "result": result})


async def run_node(
    url: str,
    node: NodeIdentity,
    *,
    ping_interval: float = 60.0,
    jitter: float = 0.2,
    checkin_url: str | None = None,
    reconnect: bool = True,
    reconnect_delay: float = 5.0,
    task_status: trio.TaskStatus[NodeStats] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One device, v4 (``checkin_url`` None: AUTH by user id) or v5 (check-in, then token).

    Reports its stats once first authenticated (with ``reconnect=False``: or when it gives up).
    """
    stats = NodeStats()
    started = False

    def on_auth() -> None:
        nonlocal started
        if not started:
            started = True
            task_status.started(stats)

    ssl_context = insecure_client_context() if url.startswith("wss:") else None
    while True:
        target = url
        try:
            if checkin_url is not None:
                destinations, token = await checkin(checkin_url, node)
                target = _with_token(url, destinations[0] if destinations else None, token)
            stats.connections += 1
            async with open_node_socket(target, ssl_context=ssl_context) as ws:
                await _session(ws, node, stats, ping_interval, jitter, on_auth)
        except (HandshakeError, OSError, httpx.HTTPError) as exc:
            log.warning("node cannot connect", device_id=node.device_id, error=str(exc))
        if not reconnect:
            if not started:
                started = True
                task_status.started(stats)
            return
        await trio.sleep(reconnect_delay)


async def run_nodes(
    url: str,
    user_id: str,
    *,
    devices: int = 1,
    ping_interval: float = 60.0,
    jitter: float = 0.2,
    checkin_url: str | None = None,
    device_ids: Sequence[str] | None = None,
    reconnect: bool = True,
    task_status: trio.TaskStatus[list[NodeStats]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """N devices of ``user_id``; reports their stats once each has connected (or given up)."""
    ids = (
        list(device_ids) if device_ids is not None else [str(uuid.uuid4()) for _ in range(devices)]
    )
    async with trio.open_nursery() as nursery:
        all_stats = []
        for device_id in ids:
            node = NodeIdentity(user_id=user_id, device_id=device_id)
            runner = partial(
                run_node,
                url,
                node,
                ping_interval=ping_interval,
                jitter=jitter,
                checkin_url=checkin_url,
                reconnect=reconnect,
            )
            all_stats.append(await nursery.start(runner))
        task_status.started(all_stats)

"""Events for users' live dashboard sockets (``/api/v1/live``, grass.http.live).

Two kinds, both on the user's channel (``grass.storage.shared_state.user_channel``):

- **data events**, ``{"type": ..., ...}``, kept in the user's event log for sockets that
  reconnect (``since``) and forwarded to the client with their id:

  ========================  ===============================================================
  ``device.online``         ``device_id``: a node of the user connected (any instance)
  ``device.offline``        ``device_id``: it disconnected
  ``device.updated``        ``device_id``, ``change``: renamed, paused, resumed or removed
  ``earnings.credited``     ``amount`` (micro-points), ``epoch``: points reached the ledger
  ``notification``          a notification for the dashboard
  ========================  ===============================================================

  They are hints to refetch the REST view (``GET /api/v1/devices/{id}``, the totals): their
  order across instances is not guaranteed.
- **control events**, never kept nor forwarded: ``session_revoked`` (``session``: the token
  hash), ``api_key_revoked`` (``key``: its id) and ``account_closed`` (banned or deleted);
  the sockets they name close.

Publishing is best effort: what a service changed is stored before it announces it, so a
lost event (Redis down) costs a dashboard its freshness, never correctness; sockets also
recheck their token periodically.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from grass import logs
from grass.errors import StorageUnavailable
from grass.storage.shared_state import EventLog, PubSub, frame, user_channel

log = logs.get(__name__)

DEVICE_ONLINE = "device.online"
DEVICE_OFFLINE = "device.offline"
DEVICE_UPDATED = "device.updated"
EARNINGS_CREDITED = "earnings.credited"
NOTIFICATION = "notification"
SESSION_REVOKED = "session_revoked"
API_KEY_REVOKED = "api_key_revoked"
ACCOUNT_CLOSED = "account_closed"

Event = Mapping[str, Any]


def _encode(event: Event) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


class LiveEvents:
    def __init__(self, events: EventLog, pubsub: PubSub) -> None:
        self._events = events
        self._pubsub = pubsub

    async def publish(self, events: Sequence[tuple[str, Event]]) -> None:
        """Data events, ``(user_id, event)``, in one batch (one round trip on Redis)."""
        if not events:
            return
        try:
            await self._events.publish([(user_channel(u), _encode(e)) for u, e in events])
        except StorageUnavailable as exc:
            log.warning("cannot publish live events", events=len(events), error=str(exc))

    async def device(self, user_id: str, device_id: str, change: str) -> None:
        await self.publish(
            [(user_id, {"type": DEVICE_UPDATED, "device_id": device_id, "change": change})]
        )

    async def earnings_credited(self, epoch: int, amounts: Mapping[str, int]) -> None:
        """Points credited on the ledger for ``epoch``, per user (the bucket closer's batch)."""
        await self.publish(
            [
                (user, {"type": EARNINGS_CREDITED, "epoch": epoch, "amount": amount})
                for user, amount in amounts.items()
                if amount > 0
            ]
        )

    async def sessions_revoked(self, user_id: str, session_hashes: Iterable[str]) -> None:
        for session_hash in session_hashes:
            await self._control(user_id, {"type": SESSION_REVOKED, "session": session_hash})

    async def api_key_revoked(self, user_id: str, key_id: str) -> None:
        await self._control(user_id, {"type": API_KEY_REVOKED, "key": key_id})

    async def account_closed(self, user_id: str) -> None:
        await self._control(user_id, {"type": ACCOUNT_CLOSED})

    async def _control(self, user_id: str, event: Event) -> None:
        try:
            await self._pubsub.publish(user_channel(user_id), frame(None, _encode(event)))
        except StorageUnavailable as exc:
            # Revoked in the store either way: the sockets recheck their token periodically.
            log.warning("cannot announce", event=event["type"], user=user_id, error=str(exc))

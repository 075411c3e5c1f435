"""Live node sessions by device, user and IP, and the limits they decide when a node authenticates.

Close codes used here (a refusal is raised as an error whose ``ws_close_code`` the session
uses; a live session is closed directly; 4001 is grass.services.admission's, which also refuses
an AUTH of a paused device with it):

====  ======================================================================================
4000  replaced: the same device connected again; the OLDER connection is closed
4001  paused: the owner paused this device; it must stop (refused at AUTH, or closed live)
1008  a limit found at AUTH: too many active devices for the user, a new device of a user
      with ``limits.max_stored_devices_per_user`` devices stored, a v4 device's network
      score below ``limits.min_network_score``, a device owned by another user
====  ======================================================================================

The per-IP cap, and the score of a v5 token's device, are checked earlier by the gateway,
on the upgrade request itself: those refusals are an HTTP 403, before any WebSocket exists.

The per-IP count covers every open connection (authenticated or not), so a host cannot hold
sockets open in the AWAITING_AUTH state beyond the cap. The per-user cap counts the user's
active devices: those storage saw lately (last seen within ``limits.device_active_window``,
wherever they connected) plus those connected here that storage does not count yet, not every
device ever stored: junk devices held for a second no longer fill the cap for good. An active
device always gets back in, so reaching the cap never locks out a device the user is using.

Since the cap counts active devices only, a node key could still store a new device id every
few seconds and grow the devices table without end: a NEW device id (not stored yet) is also
refused once the user has ``limits.max_stored_devices_per_user`` devices stored (plus those
connected here not written yet). Devices already stored always get back in; the owner makes
room by removing devices.

A device connected here under another user is refused (1008), never replaced: knowing a device
id is not enough to kick its node (storage refuses a device stored under another user the same
way, at the gateway).

An AUTH in flight (its credential read from storage, its session not registered yet) is a
:class:`Pending`: a command that closes the nodes of a node key, a user or a device
(grass.nodes.control) finds no session for it, so it is noted on every pending AUTH instead, and
the gateway refuses the AUTH just before registering it. Together with storing a revocation
before announcing it, no node ends up registered with a key, a user or a device closed while it
authenticated (when the command reaches the instance where the AUTH runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from grass.errors import Forbidden
from grass.nodes.session import NodeSession
from grass.services.admission import PAUSED, DeviceOwnedElsewhere

REPLACED = 4000

ScoreOf = Callable[[str], float | None]


class DeviceLimit(Forbidden):
    code = "device_limit"
    ws_close_code = 1008


class IpLimit(Forbidden):
    code = "ip_connection_limit"
    ws_close_code = 1008


class StoredDeviceLimit(DeviceLimit):
    code = "stored_device_limit"


class ScoreTooLow(Forbidden):
    code = "score_too_low"
    ws_close_code = 1008


class ClosedDuringAuth(Forbidden):
    """The node's user was banned or deleted while it authenticated: the close code is the
    one its live sessions got."""

    code = "closed_during_auth"

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.ws_close_code = code


class Pending:
    """An AUTH in flight: what was closed while it awaited storage."""

    __slots__ = ("devices", "keys", "users")

    def __init__(self) -> None:
        #: Node keys revoked meanwhile.
        self.keys: set[str] = set()
        #: Users banned or deleted meanwhile: the close code and reason of their nodes.
        self.users: dict[str, tuple[int, str]] = {}
        #: Devices paused, removed or kicked meanwhile: the close code and reason.
        self.devices: dict[str, tuple[int, str]] = {}


class Registry:
    def __init__(
        self,
        *,
        max_devices_per_user: Callable[[], int],
        max_connections_per_ip: Callable[[], int],
        min_network_score: Callable[[], float] = lambda: 0.0,
        score_of: ScoreOf = lambda _: None,
        max_stored_devices_per_user: Callable[[], int] = lambda: 1000,
    ) -> None:
        self._max_devices = max_devices_per_user
        self._max_stored = max_stored_devices_per_user
        self._max_per_ip = max_connections_per_ip
        self._min_score = min_network_score
        self._score_of = score_of
        self._by_device: dict[str, NodeSession] = {}
        self._by_user: dict[str, set[str]] = {}
        self._by_ip: dict[str, int] = {}
        self._pending: set[Pending] = set()

    # -- connections (before AUTH) ----------------------------------------------------------

    def open(self, ip: str) -> None:
        """Count a new connection from ``ip``; IpLimit when the address has too many."""
        count = self._by_ip.get(ip, 0)
        if count >= self._max_per_ip():
            raise IpLimit(f"too many connections from {ip}")
        self._by_ip[ip] = count + 1

    def release(self, ip: str) -> None:
        count = self._by_ip.get(ip, 0) - 1
        if count > 0:
            self._by_ip[ip] = count
        else:
            self._by_ip.pop(ip, None)

    # -- devices (at AUTH) ------------------------------------------------------------------

    def check(
        self, user_id: str, device_id: str, *, recent: int, active: bool, stored: int | None = None
    ) -> None:
        """Raise the limit a new session of ``device_id`` would break; ``recent`` is the
        user's device count storage saw within the active window, ``active`` whether this
        device is one of them, ``stored`` the user's stored devices when this device is not
        stored (None when it is)."""
        self._check_owner(user_id, device_id)
        score = self._score_of(device_id)
        if score is not None and score < self._min_score():
            raise ScoreTooLow(f"network score {score:g} is below the minimum")
        live = self._by_user.get(user_id, ())
        if active or device_id in live:
            return
        accruals = [a for d in live if (a := self._by_device[d].accrual) is not None]
        if recent + sum(1 for a in accruals if not a.recent) >= self._max_devices():
            raise DeviceLimit(f"device limit reached ({self._max_devices()} active devices)")
        if stored is not None and stored + sum(1 for a in accruals if not a.saved) >= (
            cap := self._max_stored()
        ):
            raise StoredDeviceLimit(
                f"stored device limit reached ({cap} devices): remove unused devices to add one"
            )

    def _check_owner(self, user_id: str, device_id: str) -> None:
        held = self._by_device.get(device_id)
        if held is not None and held.user_id != user_id:
            raise DeviceOwnedElsewhere("this device belongs to another user")

    def add(self, session: NodeSession) -> None:
        """Register an authenticated session; an older session of the device (the same
        user's: ``check`` refused any other) is closed."""
        device_id, user_id = session.device_id, session.user_id
        if device_id is None or user_id is None:
            raise ValueError("only authenticated sessions are registered")
        self._check_owner(user_id, device_id)
        older = self._by_device.get(device_id)
        if older is not None and older is not session:
            older.close(REPLACED, "replaced by a newer connection of this device")
        self._by_device[device_id] = session
        self._by_user.setdefault(user_id, set()).add(device_id)

    def remove(self, session: NodeSession) -> None:
        """Forget a session that ended; a newer session of the same device stays."""
        device_id, user_id = session.device_id, session.user_id
        if device_id is None or self._by_device.get(device_id) is not session:
            return
        del self._by_device[device_id]
        if user_id is not None:
            devices = self._by_user.get(user_id)
            if devices is not None:
                devices.discard(device_id)
                if not devices:
                    del self._by_user[user_id]

    # -- AUTHs in flight ---------------------------------------------------------------------

    @contextmanager
    def authorizing(self) -> Iterator[Pending]:
        """Note what is closed while an AUTH awaits storage (see :meth:`key_revoked`)."""
        pending = Pending()
        self._pending.add(pending)
        try:
            yield pending
        finally:
            self._pending.discard(pending)

    def key_revoked(self, key_id: str) -> None:
        """A node key was revoked: every AUTH in flight hears of it."""
        for pending in self._pending:
            pending.keys.add(key_id)

    def user_closed(self, user_id: str, code: int, reason: str) -> None:
        """A user was banned or deleted: every AUTH in flight hears of it."""
        for pending in self._pending:
            pending.users.setdefault(user_id, (code, reason))

    def device_closed(self, device_id: str, code: int, reason: str) -> None:
        """A device was paused, removed or kicked: every AUTH in flight hears of it."""
        for pending in self._pending:
            pending.devices.setdefault(device_id, (code, reason))

    # -- lookups and sends ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_device)

    def __iter__(self) -> Iterator[NodeSession]:
        return iter(list(self._by_device.values()))

    def get(self, device_id: str) -> NodeSession | None:
        return self._by_device.get(device_id)

    def devices_of(self, user_id: str) -> frozenset[str]:
        return frozenset(self._by_user.get(user_id, ()))

    def connections_from(self, ip: str) -> int:
        return self._by_ip.get(ip, 0)

    def send(self, device_id: str, text: str) -> bool:
        """Queue ``text`` for one device; False when it is not connected (or does not read)."""
        session = self._by_device.get(device_id)
        return session is not None and session.send(text)

    def broadcast(self, text: str, *, user_id: str | None = None) -> int:
        """Queue ``text`` for every device (of ``user_id`` if given); returns how many took it."""
        if user_id is None:
            targets = list(self._by_device.values())
        else:
            targets = [self._by_device[d] for d in self._by_user.get(user_id, ())]
        return sum(1 for session in targets if session.send(text))

    def pause(self, device_id: str) -> bool:
        """The owner paused the device: close its live session with 4001."""
        session = self._by_device.get(device_id)
        if session is None:
            return False
        session.close(PAUSED, "device paused by its owner")
        return True

    def close_all(self, code: int = 1001, reason: str = "server shutting down") -> None:
        for session in list(self._by_device.values()):
            session.close(code, reason)

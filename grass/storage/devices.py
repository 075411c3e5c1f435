"""DeviceStore: the nodes' devices (grass.domain.devices).

Part of :class:`grass.storage.abc.Stores` (``storage.devices``); the conventions of
:mod:`grass.storage.abc` apply.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from grass.domain.devices import Device
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page
from grass.domain.score import NetworkScore

__all__ = ["DeviceStore"]


class DeviceStore(Protocol):
    """Devices by ``device_id``. Every device belongs to an existing user (IntegrityViolation);
    its owner never changes (StorageConflict). Removing a device keeps its uptime and earnings."""

    async def create_device(self, device: Device) -> None: ...
    async def get_device(self, device_id: str) -> Device: ...
    async def find_device(self, device_id: str) -> Device | None: ...
    async def update_device(self, device: Device) -> None: ...

    async def set_device_name(self, device_id: str, name: str | None) -> None:
        """The owner's name for the device (None: the default), and nothing else: a flush or
        a scoring pass meanwhile is not undone. StorageNotFound if there is no such device."""
        ...

    async def set_device_paused(self, device_id: str, paused: bool) -> None:
        """Whether the owner paused the device, and nothing else (as ``set_device_name``)."""
        ...

    async def upsert_devices(self, devices: Sequence[Device]) -> None:
        """The gateway's batch: insert new devices; on existing ones overwrite type, version,
        user agent, IP, country, status and last_seen, and keep first_seen, paused, name and
        score (the owner's and the scorer's). The last of several rows for one device wins."""
        ...

    async def delete_device(self, device_id: str) -> None: ...
    async def list_devices(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[Device]:
        """Order: first_seen, device_id (ascending)."""
        ...

    async def count_devices(self, user_id: str) -> int:
        """Every device the user has stored, active or not: what the cap of stored devices
        counts (PostgreSQL: an index-only scan of ``devices_user_idx``)."""
        ...

    async def count_recent_devices(self, user_id: str, *, seen_since: dt.datetime) -> int:
        """The user's devices last seen at or after ``seen_since``: what the device cap
        counts (with the live devices not written yet)."""
        ...

    async def user_ips(self, user_id: str) -> dict[str, tuple[str, ...]]:
        """The user's current IPs, each with its devices (sorted ids)."""
        ...

    async def count_devices_on_ips(
        self, ips: Collection[str], *, since: dt.datetime | None = None
    ) -> dict[str, int]:
        """Devices of any user whose latest IP is each IP (absent IPs: no device); with
        ``since``, only devices seen since then (the score's window)."""
        ...

    async def set_scores(self, scores: Mapping[str, NetworkScore]) -> int:
        """Store each device's score; unknown devices are skipped. Returns the rows updated."""
        ...

    async def mark_offline(self, *, seen_before: dt.datetime) -> int:
        """Online devices not seen since ``seen_before`` become offline (a crashed instance's)."""
        ...

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence

import attrs

from grass.domain.devices import Device, DeviceStatus
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page, micros
from grass.domain.score import NetworkScore
from grass.errors import OwnedByAnother
from grass.storage.memory._db import Db, Scope, after_row, found, paginate


def _same_owner(stored: Device, device: Device) -> None:
    if stored.user_id != device.user_id:
        raise OwnedByAnother(
            f"device {device.device_id} belongs to another user",
            details={"device_id": device.device_id},
        )


class MemoryDeviceStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def create_device(self, device: Device) -> None:
        async with self._scope.op() as db:
            db.require_user(device.user_id)
            db.devices.insert(device)

    async def get_device(self, device_id: str) -> Device:
        async with self._scope.op() as db:
            return found(db.devices.get(device_id), "device", device_id)

    async def find_device(self, device_id: str) -> Device | None:
        async with self._scope.op() as db:
            return db.devices.get(device_id)

    async def update_device(self, device: Device) -> None:
        async with self._scope.op() as db:
            _same_owner(found(db.devices.get(device.device_id), "device", device.device_id), device)
            db.devices.save(device)

    async def set_device_name(self, device_id: str, name: str | None) -> None:
        async with self._scope.op() as db:
            stored = found(db.devices.get(device_id), "device", device_id)
            db.devices.save(attrs.evolve(stored, name=name))

    async def set_device_paused(self, device_id: str, paused: bool) -> None:
        async with self._scope.op() as db:
            stored = found(db.devices.get(device_id), "device", device_id)
            db.devices.save(attrs.evolve(stored, paused=paused))

    async def upsert_devices(self, devices: Sequence[Device]) -> None:
        async with self._scope.op() as db:
            latest = {d.device_id: d for d in devices}
            for n, device in enumerate(latest.values(), 1):
                db.require_user(device.user_id)
                db.devices.save(_merge(db, device))
                await after_row(n)

    async def delete_device(self, device_id: str) -> None:
        async with self._scope.op() as db:
            found(db.devices.delete(device_id), "device", device_id)

    async def list_devices(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[Device]:
        async with self._scope.op() as db:
            return paginate(
                db.devices.group("user", user_id),
                lambda d: (micros(d.first_seen), d.device_id),
                (int, str),
                descending=False,
                cursor=cursor,
                limit=limit,
            )

    async def count_devices(self, user_id: str) -> int:
        async with self._scope.op() as db:
            return len(db.devices.group("user", user_id))

    async def count_recent_devices(self, user_id: str, *, seen_since: dt.datetime) -> int:
        async with self._scope.op() as db:
            return sum(1 for d in db.devices.group("user", user_id) if d.last_seen >= seen_since)

    async def user_ips(self, user_id: str) -> dict[str, tuple[str, ...]]:
        async with self._scope.op() as db:
            ips: dict[str, list[str]] = {}
            for d in db.devices.group("user", user_id):
                if d.ip is not None:
                    ips.setdefault(d.ip, []).append(d.device_id)
            return {ip: tuple(sorted(ids)) for ip, ids in sorted(ips.items())}

    async def count_devices_on_ips(
        self, ips: Collection[str], *, since: dt.datetime | None = None
    ) -> dict[str, int]:
        async with self._scope.op() as db:
            counts = {
                ip: sum(
                    1 for d in db.devices.group("ip", ip) if since is None or d.last_seen >= since
                )
                for ip in set(ips)
            }
            return {ip: n for ip, n in counts.items() if n}

    async def set_scores(self, scores: Mapping[str, NetworkScore]) -> int:
        async with self._scope.op() as db:
            updated = 0
            for device_id, score in scores.items():
                device = db.devices.get(device_id)
                if device is not None:
                    db.devices.save(attrs.evolve(device, score=score))
                    updated += 1
            return updated

    async def mark_offline(self, *, seen_before: dt.datetime) -> int:
        async with self._scope.op() as db:
            stale = [
                d
                for d in db.devices.rows()
                if d.status is DeviceStatus.ONLINE and d.last_seen < seen_before
            ]
            for device in stale:
                db.devices.save(attrs.evolve(device, status=DeviceStatus.OFFLINE))
            return len(stale)


def _merge(db: Db, device: Device) -> Device:
    stored = db.devices.get(device.device_id)
    if stored is None:
        return device
    _same_owner(stored, device)
    return attrs.evolve(
        device,
        first_seen=min(stored.first_seen, device.first_seen),
        paused=stored.paused,
        name=stored.name,
        score=stored.score,
    )

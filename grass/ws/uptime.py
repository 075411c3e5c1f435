"""Uptime accrual (DESIGN §5): per-session counters in memory, written by one flusher task.

A session's :class:`Accrual` adds the wall-clock seconds between consecutive heartbeats, each gap
capped at the heartbeat timeout (so more pings never earn more), into the bucket the seconds fall
in; a gap crossing a bucket boundary is split. A heartbeat costs a few float operations: only a
bucket boundary (once an hour) allocates.

The :class:`UptimeFlusher` owns every accrual. Each interval it takes what they hold (taking
zeroes them), writes device rows in ONE ``upsert_devices`` call, then all deltas in ONE
``add_uptime`` call (rows first: uptime of a device without a row would be skipped). A failed
flush keeps the taken deltas in ``_carry`` for the next one, so nothing is lost and nothing is
written twice; a crash loses at most one interval.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs
import trio

from grass import logs
from grass.domain.devices import Device, DeviceStatus, DeviceType
from grass.domain.uptime import UptimeDelta, UptimeFlushResult, UptimeStats
from grass.storage.abc import IntegrityViolation, StorageConflict
from grass.ws import collector

log = logs.get(__name__)

Key = tuple[str, dt.datetime, str]

#: Sessions whose accruals are taken between two checkpoints of a flush.
COLLECT_SLICE = 256


class DeviceRows(Protocol):
    async def upsert_devices(self, devices: Sequence[Device]) -> None: ...


class UptimeRows(Protocol):
    async def add_uptime(self, deltas: Sequence[UptimeDelta]) -> UptimeFlushResult: ...


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


class Accrual:
    """One authenticated session's uptime and device row, until the flusher takes them."""

    __slots__ = (
        "_bucket",
        "_cap",
        "_done",
        "_length",
        "_reconnects",
        "_rtt_count",
        "_rtt_max",
        "_rtt_sum",
        "_seconds",
        "closed",
        "device_id",
        "device_type",
        "dirty",
        "ip",
        "key_id",
        "last_beat",
        "recent",
        "saved",
        "started",
        "user_agent",
        "user_id",
        "version",
    )

    def __init__(
        self,
        *,
        device_id: str,
        user_id: str,
        ip: str,
        device_type: DeviceType,
        version: str | None,
        user_agent: str | None,
        now: float,
        bucket_seconds: int,
        cap: float,
        reconnect: bool = False,
        saved: bool = False,
        recent: bool = False,
        key_id: str | None = None,
    ) -> None:
        self.device_id = device_id
        self.user_id = user_id
        #: The node key the session authenticated with (revoking it closes the session).
        self.key_id = key_id
        self.ip = ip
        self.device_type = device_type
        self.version = version
        self.user_agent = user_agent
        self.started = now
        self.last_beat = now
        self.closed = False
        self.dirty = True  # the device row needs writing
        #: The device row exists in storage.
        self.saved = saved
        #: Storage counts the device as recently seen (its row's last_seen is within the
        #: device cap's window: it was, at AUTH, or the flusher wrote it since); the registry
        #: counts the live devices that are not.
        self.recent = recent
        self._length = bucket_seconds
        self._cap = cap
        self._bucket = int(now // bucket_seconds)
        self._seconds = 0.0
        self._rtt_count = 0
        self._rtt_sum = 0
        self._rtt_max = 0
        self._reconnects = 1 if reconnect else 0
        self._done: list[tuple[int, UptimeStats]] | None = None

    def heartbeat(self, now: float) -> None:
        if self.closed:
            return
        start = self.last_beat
        end = min(now, start + self._cap)
        self.last_beat = now
        self.dirty = True
        if end <= start:
            return
        while end > (boundary := (self._bucket + 1) * self._length):
            if start < boundary:
                self._seconds += boundary - start
                start = boundary
            self._next_bucket(int(start // self._length))
        self._seconds += end - start

    def rtt(self, milliseconds: float) -> None:
        ms = max(0, round(milliseconds))
        self._rtt_count += 1
        self._rtt_sum += ms
        if ms > self._rtt_max:
            self._rtt_max = ms

    def close(self) -> None:
        """No more accrual: uptime counts up to the last heartbeat, never to the close."""
        self.closed = True
        self.dirty = True

    def _next_bucket(self, bucket: int) -> None:
        stats = self._stats(round(self._seconds))
        if stats is not None:
            if self._done is None:
                self._done = []
            self._done.append((self._bucket, stats))
        self._bucket = max(bucket, self._bucket + 1)
        self._seconds = 0.0
        self._rtt_count = self._rtt_sum = self._rtt_max = self._reconnects = 0

    def _stats(self, seconds: int) -> UptimeStats | None:
        if not (seconds or self._rtt_count or self._reconnects):
            return None
        return UptimeStats(
            seconds=seconds,
            rtt_count=self._rtt_count,
            rtt_sum_ms=self._rtt_sum,
            rtt_max_ms=self._rtt_max,
            reconnects=self._reconnects,
        )

    def take(self) -> list[UptimeDelta]:
        """What accrued since the last take; whole seconds, the fraction stays for later."""
        done, self._done = self._done or [], None
        seconds = math.floor(self._seconds) if not self.closed else round(self._seconds)
        current = self._stats(seconds)
        if current is not None:
            done.append((self._bucket, current))
            self._seconds -= seconds
            self._rtt_count = self._rtt_sum = self._rtt_max = self._reconnects = 0
        return [
            UptimeDelta(
                device_id=self.device_id,
                user_id=self.user_id,
                ip=self.ip,
                bucket_start=_utc(bucket * self._length),
                stats=stats,
            )
            for bucket, stats in done
        ]

    def device_row(self) -> Device:
        seen = _utc(max(self.last_beat, self.started))
        return Device(
            device_id=self.device_id,
            user_id=self.user_id,
            type=self.device_type,
            version=self.version,
            user_agent=self.user_agent,
            ip=self.ip,
            status=DeviceStatus.OFFLINE if self.closed else DeviceStatus.ONLINE,
            first_seen=_utc(self.started),
            last_seen=seen,
        )


class UptimeFlusher:
    def __init__(
        self,
        devices: DeviceRows,
        uptime: UptimeRows,
        *,
        interval: Callable[[], float],
    ) -> None:
        self._devices = devices
        self._uptime = uptime
        self._interval = interval
        self._live: set[Accrual] = set()
        self._retired: list[Accrual] = []
        self._carry: dict[Key, UptimeDelta] = {}
        self._rows: dict[str, Device] = {}
        self._forgotten: set[str] = set()
        self._lock = trio.Lock()
        self.flushes = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        """Deltas kept from failed flushes."""
        return len(self._carry)

    def add(self, accrual: Accrual) -> None:
        self._live.add(accrual)

    def retire(self, accrual: Accrual) -> None:
        """The session ended: its last seconds and its offline row go out with the next flush."""
        accrual.close()
        if accrual in self._live:
            self._live.discard(accrual)
            self._retired.append(accrual)

    def forget(self, device_id: str) -> None:
        """The device was removed by its owner: its sessions' rows and uptime not written yet
        are dropped (writing the row would bring the device back)."""
        self._forgotten.add(device_id)
        self._rows.pop(device_id, None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self._interval())
            await self.flush_now()

    async def flush_now(self) -> UptimeFlushResult | None:
        """Write everything pending; on failure keep it for the next call. Never raises on a
        storage error (it is logged): the next interval retries."""
        # The rows and deltas of every device are short-lived and acyclic: no collector pass
        # while they exist (grass.ws.collector). The pause spans the storage awaits: CPython
        # counts allocations while the collector is off, so turning it on before the rows and
        # deltas are freed would start a young pass over all of them at once.
        async with self._lock:
            with collector.paused():
                return await self._flush()

    async def _flush(self) -> UptimeFlushResult | None:
        await self._collect()
        if not self._rows and not self._carry:
            return None
        try:
            # Shielded: a write cancelled after it committed would be repeated next time.
            with trio.CancelScope(shield=True):
                if self._rows:
                    await self._write_rows(list(self._rows.values()))
                    self._mark_saved()
                    self._rows.clear()
                result = await self._uptime.add_uptime(list(self._carry.values()))
        except Exception as exc:  # storage down: everything stays for the next try
            self.failures += 1
            log.warning("uptime flush failed", error=str(exc), pending=len(self._carry))
            return None
        self._carry.clear()
        self.flushes += 1
        return result

    async def _collect(self) -> None:
        retired, self._retired = self._retired, []
        if self._forgotten:
            self._drop_forgotten(retired)
        n = 0
        try:
            # Retired first: a device's newer session, if any, has the last word on its row.
            for n, accrual in enumerate((*retired, *self._live), 1):
                if not n % COLLECT_SLICE:
                    # Tens of thousands of sessions take a while: the nodes' PINGs go on
                    # meanwhile (what a session does then is taken next time: take() zeroes
                    # what it took).
                    await trio.lowlevel.checkpoint()
                if accrual.device_id in self._forgotten:
                    accrual.take()
                    continue
                for delta in accrual.take():
                    old = self._carry.get(delta.key)
                    if old is not None:
                        delta = attrs.evolve(delta, stats=old.stats + delta.stats)
                    self._carry[delta.key] = delta
                if accrual.dirty or (not accrual.closed and accrual.device_id in self._rows):
                    accrual.dirty = False
                    self._rows[accrual.device_id] = accrual.device_row()
        except BaseException:
            # Cancelled at a checkpoint (a shutdown): the retired sessions not taken yet go
            # back, ahead of those retired since; what was taken stays in _carry and _rows.
            self._retired[:0] = retired[max(n - 1, 0) :]
            raise

    def _drop_forgotten(self, retired: list[Accrual]) -> None:
        forgotten = self._forgotten
        self._carry = {k: d for k, d in self._carry.items() if d.device_id not in forgotten}
        # A mark lasts while a session of the device still runs (it is closing).
        self._forgotten = {a.device_id for a in self._live if a.device_id in forgotten}
        for accrual in retired:
            if accrual.device_id in forgotten:
                accrual.take()
        retired[:] = [a for a in retired if a.device_id not in forgotten]

    async def _write_rows(self, rows: list[Device]) -> None:
        try:
            await self._devices.upsert_devices(rows)
        except (IntegrityViolation, StorageConflict):
            # One row of a deleted user, or of a device another user's node wrote first (two
            # instances let it in before either wrote it), must not block every other device:
            # write them one by one and drop those refused, with their uptime.
            for row in rows:
                try:
                    await self._devices.upsert_devices([row])
                except (IntegrityViolation, StorageConflict):
                    log.warning("device row refused", device_id=row.device_id)
                    self._carry = {
                        k: d
                        for k, d in self._carry.items()
                        if (d.device_id, d.user_id) != (row.device_id, row.user_id)
                    }

    def _mark_saved(self) -> None:
        for accrual in self._live:
            if accrual.device_id in self._rows:
                accrual.saved = accrual.recent = True

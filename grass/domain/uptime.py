"""Uptime accrual (architecture §5): one session's counter, the deltas it yields, the buckets
they are added into.

A session's :class:`Accrual` adds the wall-clock seconds between consecutive heartbeats, each gap
capped at the heartbeat timeout (so more pings never earn more), into the bucket the seconds fall
in; a gap crossing a bucket boundary is split. A heartbeat costs a few float operations: only a
bucket boundary (once an hour) allocates. The caller gives the time (``now``): nothing here reads
a clock. What accrued is taken as :class:`UptimeDelta` rows, which the uptime flusher
(grass.services.flusher) writes.

A bucket is keyed by (device, bucket start, IP): a device that changes network mid-bucket has one
row per IP, so each IP's points can be shared among the devices that were really on it. The
bucket length is configuration (an hour by default), hence ``bucket_start`` rather than an hour.
"""

from __future__ import annotations

import datetime as dt
import math

import attrs

from grass.domain import _checks as check
from grass.domain.devices import Device, DeviceStatus, DeviceType


@attrs.frozen(kw_only=True)
class UptimeStats:
    """Summable uptime figures; round trips in whole milliseconds."""

    seconds: int = attrs.field(default=0, validator=check.non_negative)
    rtt_count: int = attrs.field(default=0, validator=check.non_negative)
    rtt_sum_ms: int = attrs.field(default=0, validator=check.non_negative)
    rtt_max_ms: int = attrs.field(default=0, validator=check.non_negative)
    reconnects: int = attrs.field(default=0, validator=check.non_negative)

    def __add__(self, other: UptimeStats) -> UptimeStats:
        return UptimeStats(
            seconds=self.seconds + other.seconds,
            rtt_count=self.rtt_count + other.rtt_count,
            rtt_sum_ms=self.rtt_sum_ms + other.rtt_sum_ms,
            rtt_max_ms=max(self.rtt_max_ms, other.rtt_max_ms),
            reconnects=self.reconnects + other.reconnects,
        )

    @property
    def rtt_mean_ms(self) -> float | None:
        return self.rtt_sum_ms / self.rtt_count if self.rtt_count else None


@attrs.frozen(kw_only=True)
class UptimeDelta:
    """What one flush adds to one bucket."""

    device_id: str = attrs.field(validator=check.uuid)
    user_id: str = attrs.field(validator=check.short_id)
    ip: str = attrs.field(validator=check.ip)
    bucket_start: dt.datetime = attrs.field(validator=check.utc)
    stats: UptimeStats = attrs.field(validator=attrs.validators.instance_of(UptimeStats))

    @property
    def key(self) -> tuple[str, dt.datetime, str]:
        return (self.device_id, self.bucket_start, self.ip)


@attrs.frozen(kw_only=True)
class UptimeBucket:
    """The accumulated row; ``user_id`` is the owner named by the latest delta."""

    device_id: str = attrs.field(validator=check.uuid)
    user_id: str = attrs.field(validator=check.short_id)
    ip: str = attrs.field(validator=check.ip)
    bucket_start: dt.datetime = attrs.field(validator=check.utc)
    stats: UptimeStats = attrs.field(validator=attrs.validators.instance_of(UptimeStats))

    @property
    def key(self) -> tuple[str, dt.datetime, str]:
        return (self.device_id, self.bucket_start, self.ip)


@attrs.frozen(kw_only=True)
class UptimeFlushResult:
    applied: int
    #: Deltas whose device row does not exist (removed meanwhile): skipped, never an error,
    #: so that one vanished device cannot block every other node's flush.
    unknown_devices: frozenset[str] = frozenset()
    #: Deltas naming a user who does not own the device row: skipped, so that no delta ever
    #: credits (or moves) uptime on another user's device.
    foreign_devices: frozenset[str] = frozenset()

    def __add__(self, other: UptimeFlushResult) -> UptimeFlushResult:
        return UptimeFlushResult(
            applied=self.applied + other.applied,
            unknown_devices=self.unknown_devices | other.unknown_devices,
            foreign_devices=self.foreign_devices | other.foreign_devices,
        )


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

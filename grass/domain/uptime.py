"""Uptime accrual: per-session deltas and the buckets they are added into.

A bucket is keyed by (device, bucket start, IP): a device that changes network mid-bucket has one
row per IP, so each IP's points can be shared among the devices that were really on it. The
bucket length is configuration (an hour by default), hence ``bucket_start`` rather than an hour.
"""

from __future__ import annotations

import datetime as dt

import attrs

from grass.domain import _checks as check


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

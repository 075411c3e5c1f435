"""What one closed bucket pays (architecture §5), as pure integer arithmetic.

For each IP in the bucket::

    raw(device)  = seconds / 3600 * score / 100 * multiplier(device type) * base_rate
    pool(IP)     = floor(sum of raw over the IP's devices)          (exact rationals, one floor)
    share(device) = pool * seconds(device) / seconds(IP)             (largest remainder)

so devices on one IP are paid by uptime out of one pool, and every micro-point of the pool is
paid: the shares sum to the pool exactly. Ties in the largest-remainder step go to the lower
(device id, ip), so the split is deterministic.

A correction (late uptime: a new revision of the bucket) pays each IP its new pool minus what
the IP was paid already, never more, and takes nothing back (:func:`top_up`): a device paid
more than its new share keeps it, and the others of the IP share what is left.

A referrer at level L earns ``floor(uptime points of the referee in the bucket * rate_L)``, the
points the referee is paid (:func:`uptime_points`).
The milestone pays the referee and its level-1 referrer once, when the referee's all-time uptime
reaches the configured hours (the idempotency key makes "once" hold across runs).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Protocol

import attrs

from grass.domain.devices import DeviceType
from grass.domain.earnings import EarningSource

SECONDS_PER_HOUR = 3600


def exact(value: float) -> Fraction:
    """A configured rate as the decimal the operator wrote (1.25 -> 5/4, 0.1 -> 1/10)."""
    return Fraction(repr(value))


@attrs.frozen(kw_only=True)
class Rates:
    """The rates of ``grass.config.RatesConfig`` as exact fractions."""

    base_rate: int
    multipliers: Mapping[DeviceType, Fraction]
    referral: tuple[Fraction, Fraction, Fraction]
    milestone_seconds: int
    milestone_referee_bonus: int
    milestone_referrer_bonus: int


class RateSettings(Protocol):
    """The ``rates`` section of the configuration, as far as the payouts read it."""

    @property
    def base_rate(self) -> int: ...
    @property
    def multiplier_extension(self) -> float: ...
    @property
    def multiplier_community(self) -> float: ...
    @property
    def multiplier_desktop(self) -> float: ...
    @property
    def multiplier_android(self) -> float: ...
    @property
    def referral_level1(self) -> float: ...
    @property
    def referral_level2(self) -> float: ...
    @property
    def referral_level3(self) -> float: ...
    @property
    def milestone_hours(self) -> int: ...
    @property
    def milestone_referee_bonus(self) -> int: ...
    @property
    def milestone_referrer_bonus(self) -> int: ...


def rates_of(r: RateSettings) -> Rates:
    return Rates(
        base_rate=r.base_rate,
        multipliers={
            DeviceType.EXTENSION: exact(r.multiplier_extension),
            DeviceType.COMMUNITY: exact(r.multiplier_community),
            DeviceType.DESKTOP: exact(r.multiplier_desktop),
            DeviceType.ANDROID: exact(r.multiplier_android),
        },
        referral=(exact(r.referral_level1), exact(r.referral_level2), exact(r.referral_level3)),
        milestone_seconds=r.milestone_hours * SECONDS_PER_HOUR,
        milestone_referee_bonus=r.milestone_referee_bonus,
        milestone_referrer_bonus=r.milestone_referrer_bonus,
    )


@attrs.frozen(kw_only=True, slots=True)
class UptimeLine:
    """One (device, IP) uptime row of the bucket, with the device's type and score."""

    device_id: str
    user_id: str
    ip: str
    seconds: int
    device_type: DeviceType
    score: int


@attrs.frozen(kw_only=True, slots=True)
class Payout:
    """An amount owed for a bucket to one recipient ``slot`` (see :func:`slot`)."""

    user_id: str
    source: EarningSource
    amount: int
    device_id: str | None = None
    ip: str | None = None
    referee_id: str | None = None
    referral_level: int | None = None

    @property
    def slot(self) -> str:
        return slot(self.source, self.user_id, self.device_id, self.ip, self.referee_id)


def slot(
    source: EarningSource,
    user_id: str,
    device_id: str | None,
    ip: str | None,
    referee_id: str | None,
) -> str:
    """Who is paid for what in one bucket: the unit the correction pass tops up."""
    if source is EarningSource.UPTIME:
        return f"u:{device_id}:{ip}"
    if source is EarningSource.REFERRAL:
        return f"r:{user_id}:{referee_id}"
    return f"{source.value}:{user_id}"


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` (>= 0) by ``weights`` (>= 0, not all zero unless total is 0): each part is
    the floor of its exact share, and the leftover units go one each to the largest remainders
    (ties: the earlier weight)."""
    whole = sum(weights)
    if whole == 0:
        if total:
            raise ValueError("cannot split a positive total over zero weights")
        return [0] * len(weights)
    parts = [total * w // whole for w in weights]
    left = total - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[:left]:
        parts[i] += 1
    return parts


def uptime_payouts(lines: Iterable[UptimeLine], rates: Rates) -> list[Payout]:
    """Per (device, IP): its share of the IP's pool. Lines with no seconds earn nothing."""
    # Integers only (a bucket may hold 100 000 rows): each multiplier as a numerator over the
    # multipliers' common denominator, so the pool is one exact floor division.
    common = math.lcm(*(m.denominator for m in rates.multipliers.values()))
    numerator = {t: m.numerator * (common // m.denominator) for t, m in rates.multipliers.items()}
    divisor = SECONDS_PER_HOUR * 100 * common
    base = rates.base_rate
    by_ip: dict[str, list[UptimeLine]] = {}
    for line in lines:
        if line.seconds > 0:
            group = by_ip.get(line.ip)
            if group is None:
                by_ip[line.ip] = [line]
            else:
                group.append(line)
    payouts: list[Payout] = []
    add = payouts.append
    uptime = EarningSource.UPTIME
    for ip in sorted(by_ip):
        group = by_ip[ip]
        if len(group) == 1:  # most IPs: one device, its pool is its share
            line = group[0]
            pool = line.seconds * line.score * numerator[line.device_type] * base // divisor
            shares = [pool]
        else:
            group.sort(key=_device_of)
            raw = 0
            for line in group:
                raw += line.seconds * line.score * numerator[line.device_type]
            shares = largest_remainder(raw * base // divisor, [line.seconds for line in group])
        for line, share in zip(group, shares, strict=True):
            add(
                Payout(
                    user_id=line.user_id,
                    source=uptime,
                    amount=share,
                    device_id=line.device_id,
                    ip=line.ip,
                )
            )
    return payouts


def _device_of(line: UptimeLine) -> str:
    return line.device_id


def points_by_user(payouts: Iterable[Payout]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for payout in payouts:
        if payout.source is EarningSource.UPTIME:
            totals[payout.user_id] = totals.get(payout.user_id, 0) + payout.amount
    return totals


def referral_payouts(
    uptime_points: Mapping[str, int],
    chains: Mapping[str, Sequence[tuple[int, str]]],
    rates: Rates,
) -> list[Payout]:
    """``chains``: each referee's (level, referrer) pairs. One payout per (referrer, referee)."""
    payouts: list[Payout] = []
    for referee in sorted(uptime_points):
        points = uptime_points[referee]
        for level, referrer in sorted(chains.get(referee, ())):
            amount = int(points * rates.referral[level - 1])
            payouts.append(
                Payout(
                    user_id=referrer,
                    source=EarningSource.REFERRAL,
                    amount=amount,
                    referee_id=referee,
                    referral_level=level,
                )
            )
    return payouts


def milestone_key(user_id: str, role: str) -> str:
    """The one key a milestone bonus may ever be paid under (``role``: referee or referrer)."""
    return f"milestone:{role}:{user_id}"


def milestone_payouts(
    reached: Iterable[str], level1_referrer: Mapping[str, str], rates: Rates
) -> list[tuple[str, Payout]]:
    """(key, payout) for each referee in ``reached`` and its level-1 referrer."""
    out: list[tuple[str, Payout]] = []
    for referee in sorted(reached):
        referrer = level1_referrer.get(referee)
        if referrer is None:
            continue
        out.append(
            (
                milestone_key(referee, "referee"),
                Payout(
                    user_id=referee,
                    source=EarningSource.MILESTONE,
                    amount=rates.milestone_referee_bonus,
                ),
            )
        )
        out.append(
            (
                milestone_key(referee, "referrer"),
                Payout(
                    user_id=referrer,
                    source=EarningSource.MILESTONE,
                    amount=rates.milestone_referrer_bonus,
                    referee_id=referee,
                ),
            )
        )
    return out


def top_up(targets: Iterable[Payout], paid: Mapping[str, int]) -> list[Payout]:
    """What is still owed, given what the bucket's entries ``paid`` per slot so far.

    Uptime, per IP: the IP's pool (the sum of its targets) minus what its slots were paid,
    where positive, split by largest remainder over what each slot still lacks of its target
    (ties: the lower device id). A slot paid above its target (late uptime on its IP moved
    part of the pool to another device) keeps it, since credits handed to the ledger are never
    taken back; the other slots of the IP then get less than their targets, so the IP is paid
    its pool exactly, never more (or, when it was overpaid before, nothing more). No slot is
    paid beyond its target. Every slot paid before has a target: uptime never shrinks.

    Other slots (referrals, milestones): the target minus what was paid, where positive.
    """
    if not paid:  # a first close: everything (the common case, 100 000 slots a bucket)
        return [target for target in targets if target.amount > 0]
    owed = []
    by_ip: dict[str, list[Payout]] = {}
    for target in targets:
        if target.source is EarningSource.UPTIME and target.ip is not None:
            by_ip.setdefault(target.ip, []).append(target)
            continue
        before = paid.get(target.slot, 0)
        if target.amount > before:
            owed.append(attrs.evolve(target, amount=target.amount - before) if before else target)
    for ip in sorted(by_ip):
        group = sorted(by_ip[ip], key=_slot_of)
        was = [paid.get(target.slot, 0) for target in group]
        left = sum(target.amount for target in group) - sum(was)
        if left <= 0:
            continue
        lacking = [max(0, t.amount - w) for t, w in zip(group, was, strict=True)]
        # left <= sum(lacking), so no part exceeds what its slot lacks.
        for target, part in zip(group, largest_remainder(left, lacking), strict=True):
            if part > 0:
                owed.append(target if part == target.amount else attrs.evolve(target, amount=part))
    return owed


def uptime_points(
    targets: Iterable[Payout], paid: Mapping[str, int], owed: Iterable[Payout]
) -> dict[str, int]:
    """Each user's uptime points in the bucket once ``owed`` is paid too: what its uptime
    slots were paid plus what they are owed (every user with an uptime target, 0 included).
    Referrals are computed from these, the points the referee is actually paid."""
    more: dict[str, int] = {}
    for payout in owed:
        if payout.source is EarningSource.UPTIME:
            more[payout.slot] = more.get(payout.slot, 0) + payout.amount
    totals: dict[str, int] = {}
    for target in targets:
        if target.source is EarningSource.UPTIME:
            key = target.slot
            amount = paid.get(key, 0) + more.get(key, 0)
            totals[target.user_id] = totals.get(target.user_id, 0) + amount
    return totals


def _slot_of(payout: Payout) -> str:
    return payout.slot


def bucket_key(bucket_start: dt.datetime, revision: int, payout_slot: str) -> str:
    return bucket_key_prefix(bucket_start, revision) + payout_slot


def bucket_key_prefix(bucket_start: dt.datetime, revision: int) -> str:
    return f"bucket:{bucket_start:%Y%m%dT%H%M%S}:{revision}:"

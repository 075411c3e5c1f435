"""The network score formula (architecture §5), pure and deterministic (docs/score.md).

Every component is an integer 0-100 and every step is integer arithmetic, so two backends,
two processes or a re-run always agree on a score (``p`` are the :class:`ScoreParams`, from the
``score`` section of the configuration)::

    availability = min(100, round(100 * seconds / (expected * p.full_availability)))
    stability    = max(0, 100 - p.reconnect_penalty * max(0, reconnects - p.free_reconnects))
    latency      = 100 at a mean RTT <= p.good_rtt_ms, 0 at >= p.bad_rtt_ms, linear between
    ip_quality   = 0 on a datacenter/proxy range, else max(0, 100 - p.crowd_penalty * (devices - 1))
    value        = (wa * availability + ws * stability + wl * latency) * ip_quality
                   // (100 * (wa + ws + wl))                        (w: the weights, 40/30/30)

IP quality multiplies rather than adds: a datacenter address earns nothing however well the
device behaves. The score is monotone: improving any component never lowers the value.

:func:`admission` is the value the gateway compares with ``limits.min_network_score``: the same
formula with availability and IP quality held at 100, because a refused device can never raise
its availability, and the gate does not see the address the device connects from now.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Protocol

import attrs

from grass.domain import addresses
from grass.domain.score import NetworkScore, ScoreComponents
from grass.domain.uptime import UptimeStats

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class InvalidCidr(ValueError):
    pass


class InvalidScoreParams(ValueError):
    pass


@attrs.frozen(kw_only=True)
class ScoreParams:
    """The formula's parameters; the defaults are the documented ones (docs/score.md)."""

    #: The trailing window availability, stability and latency look at.
    window_seconds: int = 24 * 3600
    #: Online this share of the expected time (per mille) or more is full availability: a
    #: restart or a short outage costs nothing.
    full_availability_permille: int = 950
    #: Reconnects per window that cost nothing (a daily restart); each further one costs this.
    free_reconnects: int = 1
    reconnect_penalty: int = 10
    good_rtt_ms: int = 150
    bad_rtt_ms: int = 1000
    #: Each further device on the same IP (any user's) lowers the IP's quality by this much.
    crowd_penalty: int = 10
    weight_availability: int = 40
    weight_stability: int = 30
    weight_latency: int = 30

    def __attrs_post_init__(self) -> None:
        if self.window_seconds <= 0:
            raise InvalidScoreParams("the window must be positive")
        if not 0 < self.full_availability_permille <= 1000:
            raise InvalidScoreParams("full availability must be above 0 and at most 1")
        for name in ("free_reconnects", "reconnect_penalty", "good_rtt_ms", "crowd_penalty"):
            if getattr(self, name) < 0:
                raise InvalidScoreParams(f"{name} must not be negative")
        if self.bad_rtt_ms <= self.good_rtt_ms:
            raise InvalidScoreParams("bad_rtt_ms must be above good_rtt_ms")
        weights = (self.weight_availability, self.weight_stability, self.weight_latency)
        if min(weights) < 0 or sum(weights) == 0:
            raise InvalidScoreParams("the weights must not be negative, nor all zero")

    @property
    def window(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.window_seconds)


DEFAULT = ScoreParams()


class ScoreSettings(Protocol):
    """The ``score`` section of the configuration, as far as the formula reads it."""

    @property
    def window(self) -> float: ...
    @property
    def full_availability(self) -> float: ...
    @property
    def free_reconnects(self) -> int: ...
    @property
    def reconnect_penalty(self) -> int: ...
    @property
    def good_rtt_ms(self) -> int: ...
    @property
    def bad_rtt_ms(self) -> int: ...
    @property
    def crowd_penalty(self) -> int: ...
    @property
    def weight_availability(self) -> int: ...
    @property
    def weight_stability(self) -> int: ...
    @property
    def weight_latency(self) -> int: ...


def score_params(settings: ScoreSettings) -> ScoreParams:
    """The parameters of a ``score`` configuration section; InvalidScoreParams says why not."""
    return ScoreParams(
        window_seconds=int(settings.window),
        full_availability_permille=round(settings.full_availability * 1000),
        free_reconnects=settings.free_reconnects,
        reconnect_penalty=settings.reconnect_penalty,
        good_rtt_ms=settings.good_rtt_ms,
        bad_rtt_ms=settings.bad_rtt_ms,
        crowd_penalty=settings.crowd_penalty,
        weight_availability=settings.weight_availability,
        weight_stability=settings.weight_stability,
        weight_latency=settings.weight_latency,
    )


def parse_cidrs(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """The datacenter/proxy list; a bad entry raises InvalidCidr naming it."""
    try:
        return addresses.parse_networks(cidrs)
    except ValueError as exc:
        raise InvalidCidr(str(exc)) from None


def is_datacenter(ip: str, networks: Sequence[Network]) -> bool:
    return addresses.in_networks(ip, networks)


@attrs.frozen(kw_only=True)
class ScoreInput:
    """What one device's score is computed from.

    ``seconds``/``reconnects``/RTT figures are the device's uptime stats over the trailing
    window; ``expected_seconds`` is how long it could have been online in that window (the
    window, or less for a device first seen within it, minus the seconds not yet written).
    """

    stats: UptimeStats
    expected_seconds: int
    datacenter: bool
    devices_on_ip: int


def availability(seconds: int, expected: int, params: ScoreParams = DEFAULT) -> int:
    if expected <= 0:
        return 100  # nothing could have been online yet: a new device starts in full
    full = params.full_availability_permille
    # round(100 * seconds / (expected * full / 1000)), half up, in integers.
    return min(100, (200_000 * seconds + expected * full) // (2 * expected * full))


def stability(reconnects: int, params: ScoreParams = DEFAULT) -> int:
    extra = max(0, reconnects - params.free_reconnects)
    return max(0, 100 - params.reconnect_penalty * extra)


def latency(rtt_count: int, rtt_sum_ms: int, params: ScoreParams = DEFAULT) -> int:
    if rtt_count == 0:
        return 100  # not measured yet: no penalty
    # mean <= GOOD: 100; mean >= BAD: 0; linear between, rounded down, in integers
    # (mean = sum / count).
    over = rtt_sum_ms - params.good_rtt_ms * rtt_count
    if over <= 0:
        return 100
    span = (params.bad_rtt_ms - params.good_rtt_ms) * rtt_count
    return max(0, 100 - (100 * over + span - 1) // span)


def ip_quality(datacenter: bool, devices_on_ip: int, params: ScoreParams = DEFAULT) -> int:
    if datacenter:
        return 0
    return max(0, 100 - params.crowd_penalty * max(0, devices_on_ip - 1))


def combine(components: ScoreComponents, params: ScoreParams = DEFAULT) -> int:
    wa, ws, wl = params.weight_availability, params.weight_stability, params.weight_latency
    behaviour = wa * components.availability + ws * components.stability
    behaviour += wl * components.latency
    return behaviour * components.ip_quality // (100 * (wa + ws + wl))


def admission(components: ScoreComponents, params: ScoreParams = DEFAULT) -> int:
    """The value the connection gate compares with the minimum (see the module docstring):
    stability and latency recover on their own as the window slides; availability and IP
    quality do not gate."""
    return combine(attrs.evolve(components, availability=100, ip_quality=100), params)


def score(data: ScoreInput, at: dt.datetime, params: ScoreParams = DEFAULT) -> NetworkScore:
    stats = data.stats
    components = ScoreComponents(
        availability=availability(stats.seconds, data.expected_seconds, params),
        stability=stability(stats.reconnects, params),
        latency=latency(stats.rtt_count, stats.rtt_sum_ms, params),
        ip_quality=ip_quality(data.datacenter, data.devices_on_ip, params),
    )
    return NetworkScore(value=combine(components, params), components=components, computed_at=at)


def expected_seconds(
    first_seen: dt.datetime,
    at: dt.datetime,
    *,
    unwritten_seconds: int,
    params: ScoreParams = DEFAULT,
) -> int:
    """Seconds of the trailing window the device could have been online and written."""
    since = max(first_seen, at - params.window)
    return max(0, int((at - since).total_seconds()) - unwritten_seconds)


def ip_score(device_scores: Sequence[tuple[NetworkScore, int]], at: dt.datetime) -> NetworkScore:
    """An IP's score: its devices' scores (and components) weighted by their uptime seconds in
    the window, rounded down; devices without uptime count once each."""
    if not device_scores:
        raise ValueError("an IP score needs at least one device score")
    weights = [max(1, seconds) for _, seconds in device_scores]
    total = sum(weights)

    def mean(values: Iterable[int]) -> int:
        return sum(v * w for v, w in zip(values, weights, strict=True)) // total

    parts = [s.components for s, _ in device_scores]
    components = ScoreComponents(
        availability=mean(p.availability for p in parts),
        stability=mean(p.stability for p in parts),
        latency=mean(p.latency for p in parts),
        ip_quality=mean(p.ip_quality for p in parts),
    )
    value = mean(s.value for s, _ in device_scores)
    return NetworkScore(value=value, components=components, computed_at=at)

"""The network score formula (DESIGN §5), pure and deterministic; ``docs/score.md`` explains it.

Every component is an integer 0-100 and every step is integer arithmetic, so two backends,
two processes or a re-run always agree on a score::

    availability = min(100, round(100 * seconds / (expected * FULL_AVAILABILITY)))
    stability    = max(0, 100 - RECONNECT_PENALTY * max(0, reconnects - FREE_RECONNECTS))
    latency      = 100 at a mean RTT <= GOOD_RTT_MS, 0 at >= BAD_RTT_MS, linear between
    ip_quality   = 0 on a datacenter/proxy range, else max(0, 100 - CROWD_PENALTY * (devices - 1))
    value        = (40 * availability + 30 * stability + 30 * latency) * ip_quality // 10_000

IP quality multiplies rather than adds: a datacenter address earns nothing however well the
device behaves. The score is monotone: improving any component never lowers the value.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence

import attrs

from grass.domain.score import NetworkScore, ScoreComponents
from grass.domain.uptime import UptimeStats

#: The trailing window availability, stability and latency look at.
WINDOW = dt.timedelta(hours=24)
#: Online this fraction of the expected time (or more) is full availability: a restart or a
#: short outage costs nothing.
FULL_AVAILABILITY_PERMILLE = 950
#: Reconnects per window that cost nothing (a daily restart); each further one costs this much.
FREE_RECONNECTS = 1
RECONNECT_PENALTY = 10
GOOD_RTT_MS = 150
BAD_RTT_MS = 1000
#: Each further device on the same IP (any user's) lowers the IP's quality by this much.
CROWD_PENALTY = 10
WEIGHTS = (40, 30, 30)  # availability, stability, latency; they sum to 100

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class InvalidCidr(ValueError):
    pass


def parse_cidrs(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """The datacenter/proxy list; a bad entry raises InvalidCidr naming it."""
    networks = []
    for text in cidrs:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise InvalidCidr(f"not an IP range: {text!r}") from None
    return tuple(networks)


def is_datacenter(ip: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address.version == n.version and address in n for n in networks)


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


def availability(seconds: int, expected: int) -> int:
    if expected <= 0:
        return 100  # nothing could have been online yet: a new device starts in full
    return min(
        100,
        (200_000 * seconds + expected * FULL_AVAILABILITY_PERMILLE)
        // (2 * expected * FULL_AVAILABILITY_PERMILLE),
    )


def stability(reconnects: int) -> int:
    return max(0, 100 - RECONNECT_PENALTY * max(0, reconnects - FREE_RECONNECTS))


def latency(rtt_count: int, rtt_sum_ms: int) -> int:
    if rtt_count == 0:
        return 100  # not measured yet: no penalty
    # mean <= GOOD: 100; mean >= BAD: 0; linear between, in integers (mean = sum / count).
    over = rtt_sum_ms - GOOD_RTT_MS * rtt_count
    if over <= 0:
        return 100
    span = (BAD_RTT_MS - GOOD_RTT_MS) * rtt_count
    return max(0, 100 - (100 * over + span - 1) // span)


def ip_quality(datacenter: bool, devices_on_ip: int) -> int:
    if datacenter:
        return 0
    return max(0, 100 - CROWD_PENALTY * max(0, devices_on_ip - 1))


def combine(components: ScoreComponents) -> int:
    wa, ws, wl = WEIGHTS
    behaviour = wa * components.availability + ws * components.stability
    behaviour += wl * components.latency
    return behaviour * components.ip_quality // 10_000


def score(data: ScoreInput, at: dt.datetime) -> NetworkScore:
    stats = data.stats
    components = ScoreComponents(
        availability=availability(stats.seconds, data.expected_seconds),
        stability=stability(stats.reconnects),
        latency=latency(stats.rtt_count, stats.rtt_sum_ms),
        ip_quality=ip_quality(data.datacenter, data.devices_on_ip),
    )
    return NetworkScore(value=combine(components), components=components, computed_at=at)


def expected_seconds(first_seen: dt.datetime, at: dt.datetime, *, unwritten_seconds: int) -> int:
    """Seconds of the trailing window the device could have been online and written."""
    since = max(first_seen, at - WINDOW)
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

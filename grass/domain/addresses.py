"""Who is calling, by address: the socket peer, or behind trusted proxies the address they saw.

``X-Forwarded-For`` is a list every proxy appends to, so anything left of the last hop our own
proxies wrote may be made up by the client. It is read only when the peer is one of
``http.trusted_proxies``, from the right, skipping the hops that are trusted proxies too: the
first other address is the client. A malformed hop ends the walk (the trusted hop to its right
stands), so a client cannot smuggle text into the limiter or the logs.

The one IP parser of the code is here (:func:`parse_address`, :func:`canonical`, and
:func:`standard_spelling` for the domain's validators): addresses are
canonical everywhere (an IPv4-mapped IPv6 peer is its IPv4 address). Counting keys (rate limits,
lockouts) group IPv6 by /64: one customer gets a whole /64, and a per-address key would give
them 2**64 fresh budgets.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "ClientAddress",
    "address_key",
    "canonical",
    "in_networks",
    "parse_networks",
    "standard_spelling",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Address ranges (trusted proxies, datacenters); ValueError names the first one that is
    not an address or CIDR range."""
    networks: list[Network] = []
    for text in cidrs:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or CIDR range") from None
    return tuple(networks)


def parse_address(text: str) -> Address | None:
    """The address ``text`` spells (IPv4-mapped IPv6 as IPv4), or None: the one IP parser."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def canonical(text: str) -> str | None:
    """The canonical text of an address, or None when ``text`` is not one."""
    ip = parse_address(text)
    return None if ip is None else str(ip)


@functools.lru_cache(maxsize=1 << 17)
def standard_spelling(text: str) -> str | None:
    """How :mod:`ipaddress` spells the address ``text`` is, or None: what the domain's
    validators require of a stored address. Unlike :func:`canonical` it takes no surrounding
    spaces and keeps an IPv4-mapped IPv6 address as it is: a model holds exactly what was
    written, and a row written before every writer used :func:`canonical` may hold one.

    Cached: every uptime flush builds a device row and a delta per device that pinged, each
    checking the same address again (a third of the flush's cost before the cache)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


IPV6_COUNTED_PREFIX = 64


def address_key(ip: str) -> str:
    """The key an address is counted under by rate limits and lockouts: the address itself for
    IPv4, its /64 for IPv6 (one host holds a whole /64, so per-address keys are free to
    multiply). Text that is not an address is its own key."""
    address = parse_address(ip)
    if address is None:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/{IPV6_COUNTED_PREFIX}", strict=False))
    return str(address)


def _within(ip: Address, networks: Sequence[Network]) -> bool:
    return any(ip.version == n.version and ip in n for n in networks)


def in_networks(text: str, networks: Sequence[Network]) -> bool:
    """Whether ``text`` is an address (IPv4-mapped IPv6 as IPv4) within one of ``networks``."""
    ip = parse_address(text)
    return ip is not None and _within(ip, networks)


class ClientAddress:
    """The client's address of a request, under the current ``http.trusted_proxies``."""

    def __init__(self, trusted: Callable[[], Sequence[str]]) -> None:
        self._trusted = trusted
        self._parsed: tuple[tuple[str, ...], tuple[Network, ...]] = ((), ())

    def _networks(self) -> tuple[Network, ...]:
        cidrs = tuple(self._trusted())
        if cidrs != self._parsed[0]:
            self._parsed = (cidrs, parse_networks(cidrs))
        return self._parsed[1]

    def trusted(self, peer: str) -> bool:
        """Whether ``peer`` (a socket's address) is one of the trusted proxies."""
        networks = self._networks()
        if not networks:
            return False
        ip = parse_address(peer)
        return ip is not None and _within(ip, networks)

    def __call__(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """``peer``: the socket's address; ``forwarded_for``: every X-Forwarded-For header.
        Empty when the peer is not an address (a test client's placeholder)."""
        ip = parse_address(peer or "")
        if ip is None:
            return ""
        networks = self._networks()
        if not networks or not _within(ip, networks):
            return str(ip)
        hops = [hop for header in forwarded_for for hop in header.split(",")]
        for hop in reversed(hops):
            found = parse_address(hop)
            if found is None:
                break  # made up: the trusted hop to its right is the best we know
            ip = found
            if not _within(ip, networks):
                break
        return str(ip)

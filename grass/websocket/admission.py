"""Which accepted node sockets the server keeps: decided at the TCP accept, before a byte is read.

Three bounds, so that no client and no flood of half-open connections can take the descriptors
the rest of the process needs (architecture §12: a process holds at most about 20 000):

- every node socket of the process, upgraded or not: ``max_connections`` (the node server
  derives it from the descriptor limit, RLIMIT_NOFILE, less a reserve for HTTP, PostgreSQL,
  Redis and files: :func:`connection_cap`);
- sockets whose upgrade is not answered yet (pending): ``max_pending`` in all, and
  ``max_pending_per_address`` per source address (IPv6 per /64, as the rate limits count). A
  peer that is one of ``http.trusted_proxies`` is not counted per address: behind a proxy every
  node has the proxy's address, and the gateway counts the address the proxy forwarded once the
  request is read (``limits.max_connections_per_ip``, upgraded connections).

Past the per-address cap the new socket is refused. Past the pending cap, or the process cap,
the oldest pending socket is shed to make room (its upgrade deadline would end it anyway; a new
handshake is more likely to complete than one that has waited longest), or the new one is
refused when none is pending. When accept() itself finds no descriptor left (EMFILE), the
server sheds the oldest pending sockets through :meth:`SocketAdmission.shed_oldest`.

Shedding closes the socket at once (its descriptor is free when ``shed_oldest`` returns): a
task reading the upgrade wakes and ends, and an upgrade the gateway answers after that finds the
socket shed (``upgraded``). No cancel scope is kept per connection for this: it would outlive the
upgrade, and cost memory for the connection's whole life.
"""

from __future__ import annotations

import itertools
import resource
from typing import Final, Protocol

from grass.domain.addresses import address_key
from grass.metrics import Metrics


class Closable(Protocol):
    def abort(self) -> None: ...


#: The descriptor limit taken when there is none (RLIM_INFINITY).
_UNLIMITED: Final = 1 << 20


def connection_cap(reserve: int, limit: int | None = None) -> int:
    """Node sockets a process may hold: its descriptor limit (RLIMIT_NOFILE, soft) less
    ``reserve``; half the limit when the reserve would take more (a small ``ulimit -n``)."""
    if limit is None:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit == resource.RLIM_INFINITY:
        limit = _UNLIMITED
    return max(limit - reserve, limit // 2)


def source_key(host: str) -> str:
    """What a source address is counted under: itself for IPv4, its /64 for IPv6."""
    return address_key(host)


class SocketAdmission:
    __slots__ = (
        "_by_key",
        "_max_connections",
        "_max_pending",
        "_max_per_address",
        "_metrics",
        "_pending",
        "_upgraded",
    )

    def __init__(
        self,
        *,
        max_connections: int,
        max_pending: int,
        max_pending_per_address: int,
        metrics: Metrics,
    ) -> None:
        self._max_connections = max_connections
        self._max_pending = max_pending
        self._max_per_address = max_pending_per_address
        self._metrics = metrics
        #: Sockets not upgraded yet, oldest first, and their source's key.
        self._pending: dict[Closable, str | None] = {}
        self._by_key: dict[str, int] = {}
        self._upgraded = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def open(self) -> int:
        """Node sockets held: pending and upgraded."""
        return len(self._pending) + self._upgraded

    def admit(self, node: Closable, key: str | None) -> bool:
        """Keep ``node`` (from source ``key``; None: not counted per address), shedding older
        pending sockets if need be; False: refused, the caller closes it."""
        if key is not None and self._by_key.get(key, 0) >= self._max_per_address:
            self._metrics.node_dropped.labels("address").inc()
            return False
        if self.open >= self._max_connections and not self.shed_oldest(1, "capacity"):
            self._metrics.node_dropped.labels("capacity").inc()
            return False
        if len(self._pending) >= self._max_pending:
            self.shed_oldest(len(self._pending) - self._max_pending + 1, "pending")
        self._pending[node] = key
        if key is not None:
            self._by_key[key] = self._by_key.get(key, 0) + 1
        self._metrics.node_pending.set(len(self._pending))
        return True

    def upgraded(self, node: Closable) -> bool:
        """``node``'s upgrade is answered; False when it was shed (it must not be)."""
        if not self._release(node):
            return False
        self._upgraded += 1
        return True

    def closed(self, node: Closable, *, upgraded: bool) -> None:
        """``node``'s connection ended (a shed one is released already)."""
        if upgraded:
            self._upgraded -= 1
        else:
            self._release(node)

    def shed_oldest(self, count: int, reason: str) -> int:
        """Close the ``count`` oldest pending sockets now; how many there were."""
        oldest = list(itertools.islice(self._pending, count))
        for node in oldest:
            self._release(node)
            node.abort()  # the descriptor is free from here
        if oldest:
            self._metrics.node_dropped.labels(reason).inc(len(oldest))
        return len(oldest)

    def _release(self, node: Closable) -> bool:
        """Forget a pending socket; False when it is not one (shed, or upgraded)."""
        if node not in self._pending:
            return False
        key = self._pending.pop(node)
        if key is not None:
            left = self._by_key[key] - 1
            if left:
                self._by_key[key] = left
            else:
                del self._by_key[key]
        self._metrics.node_pending.set(len(self._pending))
        return True

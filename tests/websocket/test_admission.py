"""Which accepted node sockets are kept (grass.websocket.admission), without sockets."""

from __future__ import annotations

import resource

import pytest

from grass.metrics import Metrics
from grass.websocket.admission import SocketAdmission, connection_cap, source_key


class Node:
    def __init__(self, name: str) -> None:
        self.name = name
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


def admission(**caps: int) -> tuple[SocketAdmission, Metrics]:
    metrics = Metrics()
    limits = {"max_connections": 1000, "max_pending": 1000, "max_pending_per_address": 1000}
    return SocketAdmission(**(limits | caps), metrics=metrics), metrics


def dropped(metrics: Metrics, reason: str) -> float:
    return metrics.node_dropped.labels(reason)._value.get()


def admit(gate: SocketAdmission, key: str | None, name: str = "n") -> tuple[Node, bool]:
    node = Node(name)
    return node, gate.admit(node, key)


def test_past_the_cap_per_address_new_sockets_are_refused_and_others_are_not():
    gate, metrics = admission(max_pending_per_address=2)
    first = [admit(gate, "192.0.2.1") for _ in range(2)]
    assert all(ok for _, ok in first)
    assert not admit(gate, "192.0.2.1")[1]
    assert admit(gate, "192.0.2.2")[1]  # another address has its own budget
    assert admit(gate, None)[1]  # a trusted proxy: not counted per address
    assert not any(node.aborted for node, _ in first)  # refused, not shed
    assert dropped(metrics, "address") == 1
    # An upgrade answered or a socket gone gives its place back.
    assert gate.upgraded(first[0][0])
    gate.closed(first[1][0], upgraded=False)
    assert admit(gate, "192.0.2.1")[1]
    assert admit(gate, "192.0.2.1")[1]
    assert gate.pending == 4


def test_ipv6_sources_are_counted_per_64():
    assert source_key("2001:db8::1") == source_key("2001:db8::ffff:2") == "2001:db8::/64"
    assert source_key("2001:db8:0:1::1") != source_key("2001:db8::1")
    assert source_key("::ffff:192.0.2.1") == "192.0.2.1"
    gate, _ = admission(max_pending_per_address=1)
    assert admit(gate, source_key("2001:db8::1"))[1]
    assert not admit(gate, source_key("2001:db8::2"))[1]


def test_past_the_pending_cap_the_oldest_pending_is_shed():
    gate, metrics = admission(max_pending=3)
    nodes = [admit(gate, f"192.0.2.{i}", str(i)) for i in range(3)]
    assert admit(gate, "192.0.2.9")[1]
    oldest, _ = nodes[0]
    assert oldest.aborted  # its descriptor is free (and a task reading from it wakes)
    assert not any(node.aborted for node, _ in nodes[1:])
    assert gate.pending == 3
    assert dropped(metrics, "pending") == 1
    assert not gate.upgraded(oldest)  # an upgrade answered late finds it shed
    gate.closed(oldest, upgraded=False)  # its task's end changes nothing more
    assert gate.pending == 3
    assert admit(gate, "192.0.2.0")[1]  # its address's place was given back when shed


def test_at_the_process_cap_the_oldest_pending_is_shed_or_the_new_one_refused():
    gate, metrics = admission(max_connections=3)
    upgraded = [admit(gate, "192.0.2.1")[0] for _ in range(2)]
    for node in upgraded:
        assert gate.upgraded(node)
    pending = admit(gate, "192.0.2.2")[0]
    assert gate.open == 3
    newer, ok = admit(gate, "192.0.2.3")
    assert ok  # room made by shedding the pending one
    assert pending.aborted
    assert admit(gate, "192.0.2.4")[1]  # and again: the newer one is the oldest pending now
    assert newer.aborted
    assert gate.open == 3
    assert dropped(metrics, "capacity") == 2
    assert not any(node.aborted for node in upgraded)  # an upgraded one is never shed

    gate, metrics = admission(max_connections=2)
    both = [admit(gate, "192.0.2.1")[0] for _ in range(2)]
    for node in both:
        gate.upgraded(node)
    assert not admit(gate, "192.0.2.1")[1]  # nothing pending to shed: refused
    assert dropped(metrics, "capacity") == 1
    gate.closed(both[0], upgraded=True)
    assert gate.open == 1
    assert admit(gate, "192.0.2.1")[1]


def test_shed_oldest_frees_in_order_of_arrival():
    gate, metrics = admission()
    nodes = [admit(gate, "192.0.2.1", str(i))[0] for i in range(5)]
    assert gate.upgraded(nodes[1])
    assert gate.shed_oldest(2, "descriptors") == 2
    assert [n.aborted for n in nodes] == [True, False, True, False, False]
    assert gate.shed_oldest(10, "descriptors") == 2
    assert gate.shed_oldest(10, "descriptors") == 0
    assert (gate.pending, gate.open) == (0, 1)
    assert dropped(metrics, "descriptors") == 4
    assert metrics.node_pending._value.get() == 0


@pytest.mark.parametrize(
    ("reserve", "limit", "cap"),
    [(1024, 20_000, 18_976), (1024, 1024, 512), (100, 150, 75), (0, 64, 64)],
)
def test_the_process_cap_leaves_a_reserve_of_descriptors(reserve, limit, cap):
    assert connection_cap(reserve, limit) == cap


def test_the_process_cap_follows_rlimit_nofile():
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert connection_cap(100) == connection_cap(100, soft)
    assert connection_cap(100, resource.RLIM_INFINITY) == (1 << 20) - 100

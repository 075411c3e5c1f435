"""Prometheus metrics, one registry per running server (tests run several in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Every metric of one server, on its own registry (``render`` is what /metrics serves)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._add_node_metrics(self.registry)
        self._add_service_metrics(self.registry)

    def _add_node_metrics(self, r: CollectorRegistry) -> None:
        """The node port: connections open, accepted, pending, dropped and closed; messages."""
        self.node_connections = Gauge(
            "grass_node_connections_open", "Open node WebSocket connections", registry=r
        )
        self.node_connections_total = Counter(
            "grass_node_connections_accepted", "Node connections accepted", registry=r
        )
        self.node_messages = Counter(
            "grass_node_messages_total", "Node messages received", ["kind"], registry=r
        )
        self.node_closes = Counter(
            "grass_node_closes_total",
            "Node connections closed, by close code",
            ["code"],
            registry=r,
        )
        self.node_pending = Gauge(
            "grass_node_connections_pending",
            "Node sockets accepted whose upgrade is not answered yet",
            registry=r,
        )
        self.node_dropped = Counter(
            "grass_node_connections_dropped",
            "Node sockets dropped before their upgrade, by reason (address: over the cap per"
            " source address; pending, capacity, descriptors: the oldest pending shed, or a new"
            " socket refused, for the cap on pending sockets, the process's cap, or accept()"
            " finding no descriptor)",
            ["reason"],
            registry=r,
        )
        self.node_accept_errors = Counter(
            "grass_node_accept_errors",
            "Node port accept() failures for want of resources, by errno (EMFILE, ENFILE...)",
            ["error"],
            registry=r,
        )

    def _add_service_metrics(self, r: CollectorRegistry) -> None:
        """HTTP requests, config reloads, the bucket closer, and rows the stores refused."""
        self.http_requests = Counter(
            "grass_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "grass_http_request_seconds", "HTTP request latency", ["route"], registry=r
        )
        self.config_reloads = Counter(
            "grass_config_reloads_total", "SIGHUP reloads, by result", ["result"], registry=r
        )
        self.closer_revisions = Counter(
            "grass_closer_revisions_total",
            "Bucket close revisions written (first: a first close; correction: late uptime)",
            ["kind"],
            registry=r,
        )
        self.closer_late_unpaid = Counter(
            "grass_closer_late_uptime_unpaid_seconds_total",
            "Uptime seconds found in buckets past closer.correction_window, not paid",
            registry=r,
        )
        self.rows_refused = Counter(
            "grass_storage_rows_refused_total",
            "Rows a batch write dropped because the store refused their content (each logged"
            " once; the other rows of the batch were written), by batch",
            ["batch"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

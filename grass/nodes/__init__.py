"""The Grass node protocol over grass.websocket: messages and the sans-I/O protocol state machine,
the session of one node (which feeds its uptime accrual, grass.domain.uptime), the gateway that
admits and registers nodes and runs the uptime flusher (grass.services.flusher), the cluster's
command channel, and the reference node client (``grass node``)."""

"""The Grass node protocol over grass.websocket: messages and the sans-I/O protocol state machine,
the session of one node, the gateway that admits and registers nodes, the cluster's command
channel, uptime accrual and its flusher, and the reference node client (``grass node``)."""

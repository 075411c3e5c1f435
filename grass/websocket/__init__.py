"""WebSocket over TCP, for any endpoint: the RFC 6455 frame codec (sans-I/O), the upgrade, the
connection's wire and transport, the epoll poller, admission before the upgrade and the
listening server. Nothing here knows the Grass node protocol (grass.nodes uses this)."""

"""Node gateway under many idle authenticated connections, beside a ``websockets`` baseline.

    .venv/bin/python scripts/bench/nodes.py [--connections 5000] [--clients 2] [--rate 2000]
                                            [--duration 20] [--only grass|baseline]
                                            [--flush-interval SECONDS] [--half-open N]

For each server in turn (grass, then ``_ws_baseline.py``, a minimal ping/pong server on the
``websockets`` library; same workload, same run) it:

1. starts the server in its own process (grass: ``grass.app.run`` with memory storage on
   127.0.0.1, port 0, one user per 100 devices (the default cap), the per-IP caps raised since
   every node comes from 127.0.0.x, 64 descriptors reserved beside the node sockets; logging
   at WARNING), which prints its node port and the user ids;
2. opens N authenticated connections from ``--clients`` client processes (each raises
   RLIMIT_NOFILE to its hard limit; client *i* connects from 127.0.0.(i+1) against grass and
   from 127.0.0.(clients+i+1) against the baseline, so no source address carries more than
   ~20 000 sockets and the two runs never share 4-tuples);
3. drives PINGs (each answered PONG is echoed, as Grass clients do) at ``--rate`` per second in
   aggregate for ``--duration`` seconds, then waits at most 3 s for the last PONGs;
4. with ``--half-open N``, a further client process (its own source address) opens N TCP
   connections at the start of the ping phase that never finish the opening handshake (half
   send part of a request line, half nothing) and reports how many the server closed, and
   when the last one was (both servers drop them after 10 s: grass's ``node.connect_timeout``,
   websockets' ``open_timeout``; grass holds at most ``node.max_pending_connections`` of them
   and drops the oldest past that, at once); the authenticated nodes' PINGs must all be
   answered meanwhile;
5. stops the server (SIGTERM; it prints its worst GC pause) and the clients; every process is
   killed on exit, even on error.

The clients are deliberately lean so that they are not the bottleneck: raw asyncio
``Protocol`` objects with a hand-written RFC 6455 client framing (masked text frames, answers
protocol pings, no extensions), no task per connection.

A connection counts as authenticated when the PONG to a PING sent right after its AUTH answer
arrives (v4 has no AUTH acknowledgement; this proves the server took the answer), with at most
256 handshakes in flight per client process.

Figures: connection rate (N / wall time from the first connect to the last first PONG),
server RSS per idle authenticated connection (VmRSS after connecting minus before, over N),
PINGs per second per server core (PONGs received / server utime+stime over the ping phase),
p50/p99 PING->PONG round trip seen by the clients, and the server's worst cyclic-GC pause over
the set-up and over the ping phase (``gc.callbacks`` from the moment the server is ready, split
by SIGUSR1). The ratio column is grass / baseline. Client CPU shares and any failed connections
or close codes go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import datetime as dt
import functools
import json
import os
import queue
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HOST = "127.0.0.1"
IP_BIND_ADDRESS_NO_PORT = 24  # Linux: pick the source port at connect(), per 4-tuple
CONNECT_CONCURRENCY = 256  # handshakes in flight per client process (listen backlog is 4096)
DEVICES_PER_USER = 100  # limits.max_devices_per_user's default: users as they can be


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- grass server process ------------------------------------------------------------------


def serve_grass(flush_interval: float | None = None, users: int = 1) -> None:
    import attrs
    import trio
    from _ws_baseline import GcTimer

    from grass import logs
    from grass.app import Server, run
    from grass.config import Count, LogLevel, Port, Seconds, load_config
    from grass.domain.bearer import hash_token, new_node_key
    from grass.domain.users import Credentials, NodeKey, User
    from grass.ids import short_id

    timer = GcTimer()
    config, _ = load_config(environ={})
    config = attrs.evolve(
        config,
        server=attrs.evolve(
            config.server,
            http_host=HOST,
            http_port=Port(0),
            node_host=HOST,
            node_port=Port(0),
            grace_period=Seconds(1.0),
        ),
        # Idle means idle: a set-up of minutes must not trip the watchdog of nodes that pinged
        # once (real nodes ping every 20-120 s; the baseline has no watchdog at all).
        node=attrs.evolve(
            config.node,
            heartbeat_timeout=Seconds(3600.0),
            uptime_flush_interval=Seconds(flush_interval or config.node.uptime_flush_interval),
            # Every node comes from one of two addresses, up to 256 handshakes in flight each;
            # and this process has no PostgreSQL, Redis or HTTP client to keep descriptors for
            # (19 800 nodes fit a limit of 20 000).
            max_pending_per_address=Count(1_000_000),
            descriptor_reserve=Count(64),
        ),
        limits=attrs.evolve(
            config.limits,
            max_devices_per_user=Count(1_000_000),
            max_connections_per_ip=Count(1_000_000),
        ),
        logging=attrs.evolve(config.logging, level=LogLevel.WARNING),
    )
    logs.configure(config.logging)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1) as signals:
            async with trio.open_nursery() as nursery:
                server: Server = await nursery.start(run, config)
                now = dt.datetime.now(dt.UTC)
                ids = []
                for i in range(users):
                    user = User(
                        id=short_id(),
                        email=f"bench{i}@example.com",
                        referral_code=short_id(),
                        credentials=Credentials(password_hash="$argon2id$bench", changed_at=now),
                        created_at=now,
                    )
                    await server.backends.storage.users.create_user(user)
                    key = new_node_key()  # what the nodes send as their user_id
                    await server.backends.storage.node_keys.create_node_key(
                        NodeKey(
                            id=short_id(),
                            user_id=user.id,
                            name="bench",
                            key_hash=hash_token(key),
                            prefix=key[:10],
                            created_at=now,
                        )
                    )
                    ids.append(key)
                timer.reset()
                print(f"READY {server.node_port} {','.join(ids)}", flush=True)
                async for signum in signals:
                    if signum != signal.SIGUSR1:
                        break
                    timer.mark()
                with contextlib.suppress(OSError):  # the orchestrator may be gone
                    print(timer.report(), flush=True)
                os._exit(0)  # a graceful close of thousands of sockets is not what is measured

    trio.run(main)


# -- client process ------------------------------------------------------------------------


class Node(asyncio.Protocol):
    """One node connection: handshake, AUTH answer, PINGs, PONG echoes; no task of its own."""

    __slots__ = ("authed", "buffer", "client", "identity", "sent_at", "transport", "upgraded")

    def __init__(self, client: Client, identity: Any) -> None:
        self.client = client
        self.identity = identity
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.authed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent_at: collections.deque[float] = collections.deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET / HTTP/1.1\r\nHost: {self.client.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nUser-Agent: grass-bench\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.client.lost += 1
        if not self.authed.done():
            self.authed.set_exception(ConnectionError(f"closed before AUTH: {exc}"))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self._fail(f"upgrade refused: {bytes(buf[:60])!r}")
                return
            self.upgraded = True
            del buf[: end + 4]
        while len(buf) >= 2:
            opcode = buf[0] & 0x0F
            length = buf[1] & 0x7F
            start = 2
            if length == 126:
                if len(buf) < 4:
                    return
                length = int.from_bytes(buf[2:4], "big")
                start = 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length = int.from_bytes(buf[2:10], "big")
                start = 10
            if buf[1] & 0x80:  # servers never mask; tolerate it anyway
                start += 4
            if len(buf) < start + length:
                return
            payload = bytes(buf[start : start + length])
            del buf[: start + length]
            if opcode == 0x1:
                self._on_text(payload)
            elif opcode == 0x9:
                self.send_frame(0xA, payload)
            elif opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if payload else 1005
                self.client.closes[f"{code} {payload[2:].decode(errors='replace')}"] += 1
                if self.transport is not None:
                    self.transport.close()
                return

    def _on_text(self, payload: bytes) -> None:
        message = json.loads(payload)
        action = message.get("action")
        if action == "PONG":
            self.client.record(time.perf_counter() - self.sent_at.popleft())
            self.send_frame(0x1, b'{"id":"%s","origin_action":"PONG"}' % message["id"].encode())
            if not self.authed.done():
                self.authed.set_result(None)
        elif action == "AUTH":
            answer = self.client.auth_answer(message["id"], self.identity, time.time())
            self.send_frame(0x1, answer.encode())
            # v4 has no AUTH acknowledgement: the first PONG proves the server took the answer.
            self.ping()
        elif action == "ERROR":
            self.client.errors += 1

    def ping(self) -> None:
        if self.transport is None:
            return
        self.sent_at.append(time.perf_counter())
        self.send_frame(0x1, self.client.ping_message().encode())
        if self.client.recording:
            self.client.sent += 1

    def send_frame(self, opcode: int, payload: bytes) -> None:
        if self.transport is None:
            return
        n = len(payload)
        if n < 126:
            header = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        stream = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
        self.transport.write(header + mask + masked)

    def _fail(self, why: str) -> None:
        if not self.authed.done():
            self.authed.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.close()


class Client:
    def __init__(self, port: int, user_ids: str, source: str) -> None:
        from grass.nodes.node_client import NodeIdentity, auth_answer, ping_message

        self.port = port
        self.netloc = f"{HOST}:{port}"
        self.user_ids = user_ids.split(",")
        self.source = source
        self.identity = NodeIdentity
        self.auth_answer = auth_answer
        self.ping_message = ping_message
        self.nodes: list[Node] = []
        self.failures: collections.Counter[str] = collections.Counter()
        self.closes: collections.Counter[str] = collections.Counter()
        self.rtts: list[float] = []
        self.recording = False
        self.expected = sys.maxsize  # the last PING's number, once all are sent
        self.drained = asyncio.Event()
        self.sent = self.answered = self.errors = self.lost = 0

    def record(self, rtt: float) -> None:
        if self.recording:
            self.answered += 1
            self.rtts.append(rtt)
            if self.answered >= self.expected:
                self.drained.set()

    async def connect(self, count: int, limit: float) -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        todo = iter(range(count))

        async def worker() -> None:
            for n in todo:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                    sock.bind((self.source, 0))
                    await loop.sock_connect(sock, (HOST, self.port))
                    identity = self.identity(user_id=self.user_ids[n % len(self.user_ids)])
                    transport, node = await loop.create_connection(
                        functools.partial(Node, self, identity), sock=sock
                    )
                    try:
                        await asyncio.wait_for(node.authed, 120)
                    except BaseException:
                        transport.close()
                        raise
                    self.nodes.append(node)
                except (OSError, ConnectionError, TimeoutError) as exc:
                    sock.close()
                    self.failures[type(exc).__name__ + ": " + str(exc)[:80]] += 1

        t0 = time.time()
        workers = [asyncio.ensure_future(worker()) for _ in range(CONNECT_CONCURRENCY)]
        try:
            await asyncio.wait_for(asyncio.gather(*workers), limit)
        except TimeoutError:
            self.failures["connect phase timed out"] += count - len(self.nodes)
        return t0, time.time()

    async def drive(self, rate: float, duration: float) -> float:
        nodes = self.nodes
        if not nodes or rate <= 0:
            return 0.0
        self.recording = True
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = index = 0
        while (elapsed := loop.time() - start) < duration:
            for _ in range(int(elapsed * rate) - sent):
                nodes[index].ping()
                index = (index + 1) % len(nodes)
                sent += 1
            await asyncio.sleep(0.005)
        self.expected = self.sent
        if self.answered < self.expected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), 3)
        return loop.time() - start


async def client_main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    client = Client(args.port, args.user_id, args.source)
    loop = asyncio.get_running_loop()

    async def command() -> str:
        line: str = await loop.run_in_executor(None, sys.stdin.readline)
        return line.strip()

    def say(kind: str, body: dict[str, Any]) -> None:
        sys.stdout.write(f"{kind} {json.dumps(body)}\n")
        sys.stdout.flush()

    say("LOADED", {})
    if await command() != "CONNECT":
        return
    cpu = time.process_time()
    t0, t1 = await client.connect(args.count, args.connect_timeout)
    cpu = time.process_time() - cpu
    say(
        "CONNECTED",
        {"t0": t0, "t1": t1, "ok": len(client.nodes), "failures": client.failures, "cpu": cpu},
    )
    if await command() != "GO":
        return
    cpu = time.process_time()
    wall = await client.drive(args.rate, args.duration)
    cpu = time.process_time() - cpu
    say(
        "RESULT",
        {
            "sent": client.sent,
            "answered": client.answered,
            "wall": wall,
            "cpu": cpu,
            "rtts": [round(r, 6) for r in client.rtts],
            "errors": client.errors,
            "lost": client.lost,
            "closes": client.closes,
        },
    )
    await command()  # EXIT (or EOF): the sockets die with the process


async def half_open_main(args: argparse.Namespace) -> None:
    """Open ``--count`` TCP connections that never finish the opening handshake (half send the
    start of a request line, half nothing), at the ping phase's start, and report how many the
    server closed and when the last one was closed (seconds after they were all open)."""
    raise_fd_limit()
    loop = asyncio.get_running_loop()
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1"
    print("LOADED {}", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() != "GO":
        return
    socks: list[socket.socket] = []
    failures: collections.Counter[str] = collections.Counter()
    for i in range(args.count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((args.source, 0))
            await loop.sock_connect(sock, (HOST, args.port))
            if i % 2:
                await loop.sock_sendall(sock, request)
        except OSError as exc:
            failures[type(exc).__name__] += 1
            sock.close()
            continue
        socks.append(sock)
    opened = time.monotonic()
    closed_at: list[float] = []

    async def until_closed(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while await loop.sock_recv(sock, 4096):
                pass
        closed_at.append(time.monotonic() - opened)

    waits = [asyncio.ensure_future(until_closed(sock)) for sock in socks]
    await asyncio.wait(waits, timeout=args.duration + 2)
    print(
        "HALFOPEN "
        + json.dumps(
            {
                "open": len(socks),
                "closed": len(closed_at),
                "last": max(closed_at, default=float("nan")),
                "failures": failures,
            }
        ),
        flush=True,
    )
    await loop.run_in_executor(None, sys.stdin.readline)
    os._exit(0)  # what was not closed dies with the process


# -- orchestrator --------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_line(proc: Child, kind: str, timeout: float) -> str:
    """The next stdout line of ``proc`` that starts with ``kind`` (bounded in time)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = proc.lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            raise RuntimeError(f"process {proc.popen.args!r} exited before {kind}")
        if line.startswith(kind + " "):
            return line[len(kind) + 1 :].strip()
    raise RuntimeError(f"no {kind} from {proc.popen.args!r} within {timeout} s")


class Child:
    """A child process whose stdout lines a thread queues (``None`` at EOF): reads can time out."""

    def __init__(self, args: list[str]) -> None:
        env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{HERE}")
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            cwd=ROOT,
        )
        self.pid = self.popen.pid
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send_signal(self, signum: int) -> None:
        self.popen.send_signal(signum)


spawn = Child


def tell(procs: list[Child], command: str) -> None:
    for proc in procs:
        assert proc.popen.stdin is not None
        proc.popen.stdin.write(command + "\n")
        proc.popen.stdin.flush()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def measure(kind: str, args: argparse.Namespace, procs: list[Child]) -> dict[str, Any]:
    if kind == "grass":
        users = -(-args.connections // DEVICES_PER_USER)
        server = spawn(
            [
                str(Path(__file__).resolve()),
                "_grass-server",
                str(args.flush_interval or ""),
                str(users),
            ]
        )
    else:
        server = spawn([str(HERE / "_ws_baseline.py")])
    procs.append(server)
    port, user_id = read_line(server, "READY", 60).split()
    time.sleep(0.5)
    rss_before = rss_kib(server.pid)
    counts = [
        args.connections // args.clients + (i < args.connections % args.clients)
        for i in range(args.clients)
    ]
    clients = []
    for i, count in enumerate(counts):
        clients.append(
            spawn(
                [
                    str(Path(__file__).resolve()),
                    "_client",
                    "--port", port,
                    f"--user-id={user_id}",  # ids may start with "-"
                    "--source", f"127.0.0.{i + 1 + (args.clients if kind != 'grass' else 0)}",
                    "--count", str(count),
                    "--rate", str(args.rate / args.clients),
                    "--duration", str(args.duration),
                    "--connect-timeout", str(args.connect_timeout),
                ]
            )
        )  # fmt: skip
        procs.append(clients[-1])
    helper = None
    if args.half_open:
        source = f"127.0.0.{2 * args.clients + 1 + (kind != 'grass')}"
        helper = spawn(
            [str(Path(__file__).resolve()), "_half-open", "--port", port, "--user-id=-",
             "--source", source, "--count", str(args.half_open),
             "--duration", str(args.duration)]
        )  # fmt: skip
        procs.append(helper)
        read_line(helper, "LOADED", 60)
    for proc in clients:
        read_line(proc, "LOADED", 60)
    tell(clients, "CONNECT")
    connected = [json.loads(read_line(p, "CONNECTED", args.connect_timeout + 30)) for p in clients]
    ok = sum(c["ok"] for c in connected)
    failures: collections.Counter[str] = collections.Counter()
    for c in connected:
        failures.update(c["failures"])
    connect_wall = max(c["t1"] for c in connected) - min(c["t0"] for c in connected)
    time.sleep(1.0)
    rss_after = rss_kib(server.pid)
    server.send_signal(signal.SIGUSR1)  # the GC timer starts over for the ping phase
    time.sleep(0.2)
    cpu0 = cpu_seconds(server.pid)
    tell(clients, "GO")
    if helper is not None:
        tell([helper], "GO")
    results = [json.loads(read_line(p, "RESULT", args.duration + 30)) for p in clients]
    half_open = {"open": 0, "closed": 0, "last": float("nan")}
    if helper is not None:
        half_open = json.loads(read_line(helper, "HALFOPEN", args.duration + 60))
    cpu = cpu_seconds(server.pid) - cpu0
    server.send_signal(signal.SIGTERM)
    gc_setup, gc_worst, gc_count = read_line(server, "GC", 30).split()
    tell(clients, "EXIT")
    rtts = sorted(r for result in results for r in result["rtts"])
    answered = sum(r["answered"] for r in results)
    closes: collections.Counter[str] = collections.Counter()
    for r in results:
        closes.update(r["closes"])
    return {
        "connected": ok,
        "failures": dict(failures),
        "connect_rate": ok / connect_wall if connect_wall > 0 else float("nan"),
        "rss_per_conn_kib": (rss_after - rss_before) / ok if ok else float("nan"),
        "rss_before_mib": rss_before / 1024,
        "rss_after_mib": rss_after / 1024,
        "sent": sum(r["sent"] for r in results),
        "answered": answered,
        "pings_per_s": answered / max(r["wall"] for r in results),
        "cpu_s": cpu,
        "pings_per_core": answered / cpu if cpu > 0 else float("nan"),
        "p50_ms": percentile(rtts, 0.50) * 1000,
        "p99_ms": percentile(rtts, 0.99) * 1000,
        "gc_setup_ms": float(gc_setup) * 1000,
        "gc_worst_ms": float(gc_worst) * 1000,
        "gc_count": int(gc_count),
        "half_open": half_open["open"],
        "half_open_closed": half_open["closed"],
        "half_open_last_s": half_open["last"],
        "lost": sum(r["lost"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "closes": dict(closes),
        # Busy clients would make the server look slow: their CPU share per phase, to check.
        "client_cpu_connect": [round(c["cpu"] / connect_wall, 2) for c in connected],
        "client_cpu_ping": [round(r["cpu"] / r["wall"], 2) for r in results],
    }


ROWS = [
    ("connections authenticated", "connected", "{:.0f}", "-"),
    ("connection rate (conn/s)", "connect_rate", "{:.0f}", "higher"),
    ("server RSS per idle connection (KiB)", "rss_per_conn_kib", "{:.1f}", "lower"),
    ("PINGs answered per s (wall, with drain)", "pings_per_s", "{:.0f}", "-"),
    ("server CPU over the ping phase (s)", "cpu_s", "{:.2f}", "lower"),
    ("PINGs per s per server core", "pings_per_core", "{:.0f}", "higher"),
    ("round trip p50 (ms)", "p50_ms", "{:.2f}", "lower"),
    ("round trip p99 (ms)", "p99_ms", "{:.2f}", "lower"),
    ("worst GC pause, set-up (ms)", "gc_setup_ms", "{:.2f}", "lower"),
    ("worst GC pause, ping phase (ms)", "gc_worst_ms", "{:.2f}", "lower"),
    ("GC passes", "gc_count", "{:.0f}", "-"),
]
HALF_OPEN_ROWS = [
    ("half-open handshakes opened (ping phase)", "half_open", "{:.0f}", "-"),
    ("... closed by the server", "half_open_closed", "{:.0f}", "-"),
    ("... the last one closed after (s)", "half_open_last_s", "{:.1f}", "-"),
]


def table(figures: dict[str, dict[str, Any]], rows: list[tuple[str, str, str, str]]) -> str:
    kinds = list(figures)
    header = ["figure", *("grass" if k == "grass" else "websockets" for k in kinds)]
    if len(kinds) == 2:
        header += ["grass / websockets", "better when"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, key, fmt, better in rows:
        cells = [label, *(fmt.format(figures[k][key]) for k in kinds)]
        if len(kinds) == 2:
            a, b = figures["grass"][key], figures["baseline"][key]
            cells += [f"{a / b:.2f}" if b else "-", better]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def orchestrate(args: argparse.Namespace) -> int:
    raise_fd_limit()
    # A plain SIGTERM would skip the ``finally`` below and leave the children running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    kinds = ["grass", "baseline"] if args.only is None else [args.only]
    figures: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        procs: list[Child] = []
        try:
            figures[kind] = measure(kind, args, procs)
        finally:
            for proc in procs:
                if proc.popen.poll() is None:
                    proc.popen.kill()
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=10)
        keys = ("failures", "lost", "errors", "closes", "sent", "answered", "half_open_closed")
        extra = {k: figures[kind][k] for k in (*keys, "client_cpu_connect", "client_cpu_ping")}
        print(f"{kind}: {json.dumps(extra)}", file=sys.stderr, flush=True)
    flush = (
        f", grass flushing uptime every {args.flush_interval:g} s" if args.flush_interval else ""
    )
    print(
        f"\n{args.connections} connections from {args.clients} client processes, "
        f"{args.rate:g} PINGs/s for {args.duration:g} s{flush}\n"
    )
    print(table(figures, ROWS + (HALF_OPEN_ROWS if args.half_open else [])))
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_grass-server":
        raise_fd_limit()
        serve_grass(float(sys.argv[2]) if sys.argv[2] else None, int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rate", type=float, default=2000.0, help="PINGs per second, in all")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of PINGs")
    parser.add_argument("--connect-timeout", type=float, default=300.0)
    parser.add_argument("--only", choices=["grass", "baseline"])
    parser.add_argument(
        "--half-open",
        type=int,
        default=0,
        help="also open N TCP connections that never finish the handshake, in the ping phase",
    )
    parser.add_argument(
        "--flush-interval",
        type=float,
        help="grass's node.uptime_flush_interval (default: its default, 5 s); longer than the "
        "ping phase leaves the message path alone in the figures",
    )
    if len(sys.argv) > 1 and sys.argv[1] == "_client":
        parser.add_argument("mode")
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--user-id", required=True)
        parser.add_argument("--source", required=True)
        parser.add_argument("--count", type=int, required=True)
        asyncio.run(client_main(parser.parse_args()))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_half-open":
        parser.add_argument("mode")
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--user-id", required=True)
        parser.add_argument("--source", required=True)
        parser.add_argument("--count", type=int, required=True)
        asyncio.run(half_open_main(parser.parse_args()))
        return 0
    args = parser.parse_args()
    if args.connections / args.clients > 19_900:
        parser.error("at most ~19 900 connections per client process (file descriptors)")
    if args.connections + args.half_open > 19_900:
        parser.error("the server holds at most ~19 900 sockets (file descriptors)")
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())

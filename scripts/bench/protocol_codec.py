"""Cost of one PING/PONG round in grass.nodes.protocol beside plain json in the same run.

A round is what the server does per heartbeat: decode the client's PING, encode the PONG (with
a fresh id), decode the client's echo. The baseline does the same with ``json.loads`` and
``json.dumps`` (and, separately, with ``uuid.uuid4`` for the fresh id). The cattrs row forces the
general path (no PING fast path) to show what the fast path saves.

    .venv/bin/python scripts/bench/protocol_codec.py [--rounds N] [--repeat R]

Prints rounds per second per row (best of R repeats, one core) and each row's ratio to the
plain-json baseline; a ratio above 1 means grass is faster.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import uuid
from collections.abc import Callable

from grass.nodes import protocol
from grass.nodes.protocol import NodeConnection

PING = '{"id":"5f3c2a1e-1b2c-4d5e-8f90-123456789abc","version":"1.0.0","action":"PING","data":{}}'
ECHO = '{"id":"9a8b7c6d-1b2c-4d5e-8f90-123456789abc","origin_action":"PONG"}'
FIXED_ID = "0b6f1d52-1b2c-4d5e-8f90-123456789abc"


def _authenticated() -> NodeConnection:
    conn = NodeConnection()
    request = json.loads(conn.auth_request())
    result = {
        "browser_id": str(uuid.uuid4()),
        "user_id": "bench-user",
        "user_agent": "Mozilla/5.0",
        "timestamp": 1_700_000_000,
        "device_type": "extension",
        "version": "4.26.2",
    }
    conn.receive_text(json.dumps({"id": request["id"], "origin_action": "AUTH", "result": result}))
    return conn


def baseline_json(rounds: int) -> None:
    loads, dumps = json.loads, json.dumps
    for _ in range(rounds):
        loads(PING)
        dumps({"id": FIXED_ID, "action": "PONG", "data": {}})
        loads(ECHO)


def baseline_json_uuid4(rounds: int) -> None:
    loads, dumps, uuid4 = json.loads, json.dumps, uuid.uuid4
    for _ in range(rounds):
        loads(PING)
        dumps({"id": str(uuid4()), "action": "PONG", "data": {}})
        loads(ECHO)


def grass_fast(rounds: int) -> None:
    conn = _authenticated()
    receive, pong = conn.receive_text, conn.pong
    for _ in range(rounds):
        receive(PING)
        pong()
        receive(ECHO)


def grass_cattrs(rounds: int) -> None:
    conn = _authenticated()
    receive, pong = conn.receive_text, conn.pong
    fast = protocol._fast_event
    protocol._fast_event = lambda obj: None  # type: ignore[assignment]
    try:
        for _ in range(rounds):
            receive(PING)
            pong()
            receive(ECHO)
    finally:
        protocol._fast_event = fast


def rate(run: Callable[[int], None], rounds: int) -> float:
    gc.collect()
    start = time.perf_counter()
    run(rounds)
    return rounds / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = [
        ("plain json (baseline)", baseline_json),
        ("plain json + uuid4", baseline_json_uuid4),
        ("grass fast path", grass_fast),
        ("grass via cattrs", grass_cattrs),
    ]
    # Interleave repeats of every row so machine noise hits all rows alike.
    rates = {name: 0.0 for name, _ in rows}
    for _ in range(args.repeat):
        for name, run in rows:
            rates[name] = max(rates[name], rate(run, args.rounds))
    base = rates["plain json (baseline)"]
    print(f"{'PING/PONG round':<24}{'rounds/s':>12}{'us/round':>10}{'vs baseline':>13}")
    for name, _ in rows:
        best = rates[name]
        print(f"{name:<24}{best:>12,.0f}{1e6 / best:>10.2f}{best / base:>12.2f}x")


if __name__ == "__main__":
    main()

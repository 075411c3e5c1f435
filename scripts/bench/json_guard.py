"""What grass.jsontext's guards (depth measured before parsing, strings checked as text) cost
beside the bare parse, in the same run.

Node messages: the bare parse is the gateway's old path (the decoder's ``scan_once``, what
grass.jsontext still calls); the guarded one is ``jsontext.loads``. Bodies: the depth check
alone on documents with more brackets than the limit, beside ``json.loads`` of the same text.

    .venv/bin/python scripts/bench/json_guard.py [--repeat R]

Prints nanoseconds per message (best of R, alternating the two so that a noisy machine hits
both alike), and milliseconds per body (*: json.loads stops at the recursion limit, 1000).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import timeit
from collections.abc import Callable
from typing import Any

from grass import jsontext

PING = '{"id":"5f3c2a1e-1b2c-4d5e-8f90-123456789abc","version":"1.0.0","action":"PING","data":{}}'
ECHO = '{"id":"9a8b7c6d-1b2c-4d5e-8f90-123456789abc","origin_action":"PONG"}'
AUTH = json.dumps(
    {
        "id": "5f3c2a1e-1b2c-4d5e-8f90-123456789abc",
        "origin_action": "AUTH",
        "result": {
            "browser_id": "0b6f1d52-1b2c-4d5e-8f90-123456789abc",
            "user_id": "2oNpOoz9bB3sTSNqfw8JgQbWZ1x",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0",
            "timestamp": 1_717_000_000,
            "device_type": "extension",
            "version": "4.26.2",
        },
    }
)
BODIES = {
    "100 000 nested [ (200 KB)*": "[" * 100_000 + "]" * 100_000,
    "1 000 objects (80 KB)": json.dumps([{"a": i, "b": "x\\" * 20} for i in range(1000)]),
    "1 MiB of [] pairs": "[" + "[]," * 349_000 + "[]]",
}


def bare(text: str) -> Any:
    value, end = jsontext._scan_once(text, 0)
    return value if end == len(text) else json.loads(text)


def best_pair(
    a: Callable[[], Any], b: Callable[[], Any], number: int, repeat: int
) -> tuple[float, float]:
    best_a = best_b = float("inf")
    for _ in range(repeat):
        best_a = min(best_a, timeit.timeit(a, number=number) / number)
        best_b = min(best_b, timeit.timeit(b, number=number) / number)
    return best_a, best_b


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(f"{'message':8} {'bare ns':>8} {'guarded ns':>11} {'cost ns':>8}")
    for name, text in (("PING", PING), ("ECHO", ECHO), ("AUTH", AUTH)):
        plain, guarded = best_pair(
            lambda t=text: bare(t), lambda t=text: jsontext.loads(t), 50_000, args.repeat
        )
        print(f"{name:8} {plain * 1e9:8.0f} {guarded * 1e9:11.0f} {(guarded - plain) * 1e9:8.0f}")
    print(f"\n{'body':28} {'depth check ms':>15} {'json.loads ms':>14}")
    for name, text in BODIES.items():

        def check(t: str = text) -> None:
            with contextlib.suppress(jsontext.JsonTooDeep):
                jsontext._check_depth(t, jsontext.MAX_DEPTH, "body")

        def parse(t: str = text) -> None:
            with contextlib.suppress(RecursionError):
                json.loads(t)

        depth, parsed = best_pair(check, parse, 3, 3)
        print(f"{name:28} {depth * 1e3:15.2f} {parsed * 1e3:14.2f}")


if __name__ == "__main__":
    main()

"""Instructions per WebSocket frame: grass's frame parser beside wsproto's, counted by callgrind.

`.venv/bin/python scripts/bench/frame_instructions.py [--frames 10000]` — one masked 86-byte text
frame (a node's PING) fed and read at a time, as the node server's transport does:
``FrameReader.feed`` + ``next`` (grass.websocket.frames) against wsproto's server-side
``Connection.receive_data`` + ``events`` (the baseline: the reference the frame tests check grass
against). Each parser runs under ``valgrind --tool=callgrind`` twice, with a few frames and with
``--frames`` more, so interpreter start-up and imports cancel out: the difference divided by
``--frames`` is the cost of one frame. Instructions are not seconds, but they do not move with the
machine's load (this machine is shared and its timings drift by tens of percent between runs):
two trees compared with this script differ only by what their code does (hash seed fixed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_WARM_UP = 200  # frames in the short run: the interpreter, imports and first calls
_PAYLOAD = json.dumps(
    {"id": "5d3e6f1a-8a1b-4c2d-9e0f-1a2b3c4d5e6f", "version": "1.0.0", "action": "PING", "data": {}}
).encode()


def client_frame(payload: bytes) -> bytes:
    """A masked, final text frame (payload under 126 bytes), as a node sends it."""
    key = b"\x37\xfa\x21\x3d"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + key + masked


def run_grass(count: int) -> None:
    from grass.websocket.frames import FrameReader

    data = client_frame(_PAYLOAD)
    reader = FrameReader(1 << 20)
    for _ in range(count):
        reader.feed(data)
        while reader.next() is not None:
            pass


def run_wsproto(count: int) -> None:
    from wsproto import ConnectionType
    from wsproto.connection import Connection

    data = client_frame(_PAYLOAD)
    conn = Connection(ConnectionType.SERVER)
    for _ in range(count):
        conn.receive_data(data)
        for _event in conn.events():
            pass


def instructions(parser: str, count: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
             __file__, "--run", parser, "--frames", str(count)],
            capture_output=True, text=True, check=True, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"},
        )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind reported no count:\n{done.stderr[-2000:]}")
    return int(found[1])


def per_frame(parser: str, frames: int) -> float:
    return (instructions(parser, _WARM_UP + frames) - instructions(parser, _WARM_UP)) / frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--run", choices=["grass", "wsproto"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        (run_grass if args.run == "grass" else run_wsproto)(args.frames)
        return
    if shutil.which("valgrind") is None:
        sys.exit("frame_instructions: valgrind is missing (apt-get install valgrind)")
    base = per_frame("wsproto", args.frames)
    grass = per_frame("grass", args.frames)
    print(f"instructions per masked {len(_PAYLOAD)}-byte text frame, over {args.frames} frames")
    print(f"  {'wsproto (baseline)':24s} {base:10,.0f}   1.000 x baseline")
    print(f"  {'grass FrameReader':24s} {grass:10,.0f}   {grass / base:5.3f} x baseline")


if __name__ == "__main__":
    main()

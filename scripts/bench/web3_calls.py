"""JSON-RPC calls from Trio: web3's sync API in worker threads (what grass does) against
trio-asyncio + ``AsyncWeb3``, on a real node (anvil, started here on a free port).

    .venv/bin/python scripts/bench/web3_calls.py [--calls 2000] [--concurrency 8]

Baseline from the same run: the sync API called directly, no Trio at all (the node's and
the HTTP client's own cost). Each line is ``eth_blockNumber`` round trips per second.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
import trio_asyncio
from web3 import AsyncHTTPProvider, AsyncWeb3, Web3
from web3.providers.rpc import HTTPProvider

REPO = Path(__file__).resolve().parents[2]


def start_anvil() -> tuple[subprocess.Popen[str], str]:
    binary = subprocess.run(
        [str(REPO / "scripts/install-anvil.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    process = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"Listening on ([0-9.]+:\d+)", line)
        if match:
            # anvil logs every request: keep reading, or a full pipe stalls the node.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, f"http://{match[1]}"
    raise RuntimeError("anvil did not start")


async def _spread(calls: int, concurrency: int, one: Callable[[], Awaitable[object]]) -> float:
    remaining = [calls]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await one()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return calls / (time.perf_counter() - start)


async def threads(url: str, calls: int, concurrency: int) -> float:
    w3 = Web3(HTTPProvider(url))
    limiter = trio.CapacityLimiter(concurrency)

    async def one() -> None:
        await trio.to_thread.run_sync(lambda: w3.eth.block_number, limiter=limiter)

    return await _spread(calls, concurrency, one)


async def trio_asyncio_async_web3(url: str, calls: int, concurrency: int) -> float:
    async with trio_asyncio.open_loop():
        w3 = AsyncWeb3(AsyncHTTPProvider(url))

        async def block_number() -> int:
            return await w3.eth.block_number

        async def one() -> None:
            await trio_asyncio.aio_as_trio(block_number)()

        try:
            return await _spread(calls, concurrency, one)
        finally:
            await trio_asyncio.aio_as_trio(w3.provider.disconnect)()


def direct(url: str, calls: int) -> float:
    w3 = Web3(HTTPProvider(url))
    start = time.perf_counter()
    for _ in range(calls):
        w3.eth.block_number  # noqa: B018 - the call is the point
    return calls / (time.perf_counter() - start)


def _root_cause(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}")
        tb = tb.tb_next
    return f"{type(exc).__name__} {exc} at {' <- '.join(reversed(frames[-2:]))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    process, url = start_anvil()
    try:
        base = direct(url, args.calls)
        print(f"baseline sync, no Trio, c=1        {base:8,.0f} calls/s   1.00x")
        for c in (1, args.concurrency):
            rate = trio.run(threads, url, args.calls, c)
            print(
                f"sync web3 in threads (grass), c={c:<3} {rate:8,.0f} calls/s  {rate / base:5.2f}x"
            )
            try:
                rate = trio.run(trio_asyncio_async_web3, url, args.calls, c)
            except BaseException as exc:  # report why it cannot run at all
                print(f"trio-asyncio + AsyncWeb3,    c={c:<3} does not run: {_root_cause(exc)}")
            else:
                print(
                    f"trio-asyncio + AsyncWeb3,    c={c:<3} {rate:8,.0f} calls/s"
                    f"  {rate / base:5.2f}x"
                )
    finally:
        process.terminate()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


if __name__ == "__main__":
    main()

"""How to drive redis-py from Trio: the same workload through each adapter, beside a baseline.

Adapters measured, all in one run (this machine is noisy, so only same-run ratios mean much):

* ``asyncio``        redis-py's asyncio client under plain ``asyncio.run`` (the baseline: no Trio);
* ``trio-asyncio``   the same client under ``trio_asyncio.open_loop()``, every call wrapped with
  ``trio_asyncio.aio_as_trio`` (what triopg does for asyncpg);
* ``trio-threads``   redis-py's sync client in worker threads (``trio.to_thread.run_sync``), with a
  ``CapacityLimiter`` as wide as the ``BlockingConnectionPool``.

Workload per adapter and concurrency (1 and 50 Trio tasks / asyncio tasks):
``--ops`` single commands (alternating SET and GET) and ``--batches`` pipelines of ``--batch-size``
SETs (non-transactional).  Keys live under ``grass:bench:`` and are deleted afterwards.

Run: ``.venv/bin/python scripts/bench/redis_adapters.py [--url redis://127.0.0.1:6379/0]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aredis
import trio
import trio_asyncio

PREFIX = "grass:bench:"

Op = Callable[[int], Awaitable[None]]


def _split(total: int, workers: int) -> list[range]:
    per = total // workers
    return [range(w * per, (w + 1) * per) for w in range(workers)]


# -- asyncio baseline ------------------------------------------------------------------------


async def _asyncio_run(op: Op, total: int, concurrency: int) -> float:
    async def worker(indices: range) -> None:
        for i in indices:
            await op(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker(r) for r in _split(total, concurrency)))
    return time.perf_counter() - started


def _asyncio_ops(client: aredis.Redis, batch_size: int) -> tuple[Op, Op]:
    async def single(i: int) -> None:
        key = f"{PREFIX}k{i % 1000}"
        if i % 2:
            await client.get(key)
        else:
            await client.set(key, b"x" * 32)

    async def batch(i: int) -> None:
        pipe = client.pipeline(transaction=False)
        for j in range(batch_size):
            pipe.set(f"{PREFIX}b{(i * batch_size + j) % 5000}", b"y" * 32)
        await pipe.execute()

    return single, batch


async def bench_asyncio(url: str, args: argparse.Namespace) -> dict[tuple[str, int], float]:
    results: dict[tuple[str, int], float] = {}
    for concurrency in (1, 50):
        client = aredis.Redis.from_url(url, max_connections=concurrency)
        single, batch = _asyncio_ops(client, args.batch_size)
        await client.ping()
        elapsed = await _asyncio_run(single, args.ops, concurrency)
        results[("get/set", concurrency)] = args.ops / elapsed
        elapsed = await _asyncio_run(batch, args.batches, concurrency)
        results[("pipeline", concurrency)] = args.batches * args.batch_size / elapsed
        await client.aclose()
    return results


# -- Trio drivers ----------------------------------------------------------------------------


async def _trio_run(op: Op, total: int, concurrency: int) -> float:
    async def worker(indices: range) -> None:
        for i in indices:
            await op(i)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for r in _split(total, concurrency):
            nursery.start_soon(worker, r)
    return time.perf_counter() - started


async def bench_trio_asyncio(url: str, args: argparse.Namespace) -> dict[tuple[str, int], float]:
    results: dict[tuple[str, int], float] = {}
    async with trio_asyncio.open_loop():
        for concurrency in (1, 50):
            client = aredis.Redis.from_url(url, max_connections=concurrency)
            a_single, a_batch = _asyncio_ops(client, args.batch_size)
            single = trio_asyncio.aio_as_trio(a_single)
            batch = trio_asyncio.aio_as_trio(a_batch)
            await trio_asyncio.aio_as_trio(client.ping)()
            elapsed = await _trio_run(single, args.ops, concurrency)
            results[("get/set", concurrency)] = args.ops / elapsed
            elapsed = await _trio_run(batch, args.batches, concurrency)
            results[("pipeline", concurrency)] = args.batches * args.batch_size / elapsed
            await trio_asyncio.aio_as_trio(client.aclose)()
    return results


def _thread_ops(
    client: redis.Redis, limiter: trio.CapacityLimiter, batch_size: int
) -> tuple[Op, Op]:
    def sync_single(i: int) -> None:
        key = f"{PREFIX}k{i % 1000}"
        if i % 2:
            client.get(key)
        else:
            client.set(key, b"x" * 32)

    def sync_batch(i: int) -> None:
        pipe = client.pipeline(transaction=False)
        for j in range(batch_size):
            pipe.set(f"{PREFIX}b{(i * batch_size + j) % 5000}", b"y" * 32)
        pipe.execute()

    async def single(i: int) -> None:
        await trio.to_thread.run_sync(sync_single, i, limiter=limiter)

    async def batch(i: int) -> None:
        await trio.to_thread.run_sync(sync_batch, i, limiter=limiter)

    return single, batch


async def bench_trio_threads(url: str, args: argparse.Namespace) -> dict[tuple[str, int], float]:
    results: dict[tuple[str, int], float] = {}
    for concurrency in (1, 50):
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=concurrency, timeout=5)
        client = redis.Redis(connection_pool=pool)
        single, batch = _thread_ops(client, trio.CapacityLimiter(concurrency), args.batch_size)
        client.ping()
        elapsed = await _trio_run(single, args.ops, concurrency)
        results[("get/set", concurrency)] = args.ops / elapsed
        elapsed = await _trio_run(batch, args.batches, concurrency)
        results[("pipeline", concurrency)] = args.batches * args.batch_size / elapsed
        client.close()
    return results


def _cleanup(url: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{PREFIX}*", count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--batches", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()

    table: dict[str, dict[tuple[str, int], float]] = {}
    try:
        table["asyncio (baseline)"] = asyncio.run(bench_asyncio(args.url, args))
        table["trio-asyncio"] = trio.run(bench_trio_asyncio, args.url, args)
        table["trio-threads"] = trio.run(bench_trio_threads, args.url, args)
    finally:
        _cleanup(args.url)

    baseline = table["asyncio (baseline)"]
    columns: list[tuple[str, int]] = [(w, c) for w in ("get/set", "pipeline") for c in (1, 50)]
    header = f"{'adapter':<20}" + "".join(f"{f'{w} c={c}':>26}" for w, c in columns)
    print(
        f"redis at {args.url}: {args.ops} single ops, {args.batches} x {args.batch_size} pipelined"
    )
    print("figures: commands/s (ratio to the asyncio baseline)")
    print(header)
    for name, row in table.items():
        cells: list[Any] = []
        for col in columns:
            cells.append(f"{row[col]:>15,.0f} ({row[col] / baseline[col]:.2f}x)")
        print(f"{name:<20}" + "".join(f"{c:>26}" for c in cells))


if __name__ == "__main__":
    main()

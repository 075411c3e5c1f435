"""Memory ledger: record a million credits, settle an epoch of a million users.

    .venv/bin/python scripts/bench/ledger.py [--users 1000000] [--batch 10000]

Baselines from the same run: for recording, a plain dict insert of the same keys plus a running
sum per user; for settling, building ``{account: cumulative}`` from a plain dict and the bare
Merkle tree over it. The ratios say what the ledger adds. Budget (DESIGN §12): settle <= 10 s.
"""

from __future__ import annotations

import argparse
import gc
import time

import trio

from grass.ledger.abc import Credit, derived_account
from grass.ledger.memory import open_memory_ledger
from grass.ledger.merkle import KECCAK_BACKEND, MerkleTree


def _credits(users: int) -> list[Credit]:
    return [
        Credit(key=f"c{i}", user_id=f"user-{i}", amount=1 + i % 977, epoch=1) for i in range(users)
    ]


def _baseline_record(credits: list[Credit]) -> float:
    start = time.perf_counter()
    by_key: dict[str, Credit] = {}
    totals: dict[str, int] = {}
    for c in credits:
        if c.key not in by_key:
            by_key[c.key] = c
            totals[c.user_id] = totals.get(c.user_id, 0) + c.amount
    return time.perf_counter() - start


def _baseline_settle(credits: list[Credit]) -> float:
    accounts = {c.user_id: derived_account(c.user_id) for c in credits}
    totals = {c.user_id: c.amount for c in credits}
    start = time.perf_counter()
    balances = {accounts[u]: a for u, a in totals.items()}
    MerkleTree.build(balances)
    return time.perf_counter() - start


async def _ledger_run(credits: list[Credit], batch: int) -> tuple[float, float, int]:
    async with open_memory_ledger() as ledger:
        start = time.perf_counter()
        for i in range(0, len(credits), batch):
            await ledger.record(credits[i : i + batch])
        recorded = time.perf_counter() - start
        gc.collect()
        start = time.perf_counter()
        settlement = await ledger.settle(1)
        settled = time.perf_counter() - start
        return recorded, settled, settlement.user_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    print(f"keccak backend: {KECCAK_BACKEND}; {args.users} users, batches of {args.batch}")
    credits = _credits(args.users)
    gc.collect()
    base_record = _baseline_record(credits)
    base_settle = _baseline_settle(credits)
    gc.collect()
    # Like the server does after start-up: the credits are long-lived, keep the GC off them.
    gc.freeze()
    recorded, settled, users = trio.run(_ledger_run, credits, args.batch)
    print(
        f"record:  {recorded:6.2f} s  ({args.users / recorded:,.0f} credits/s)  "
        f"baseline dict {base_record:5.2f} s  ratio {recorded / base_record:5.1f}x"
    )
    print(
        f"settle:  {settled:6.2f} s  ({users:,} users)  "
        f"baseline dict+tree {base_settle:5.2f} s  ratio {settled / base_settle:5.1f}x  "
        f"budget 10 s: {'ok' if settled <= 10 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()

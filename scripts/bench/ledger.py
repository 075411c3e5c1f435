"""Ledger on memory and on PostgreSQL: record a million credits, settle an epoch of a million users.

    .venv/bin/python scripts/bench/ledger.py [--users 1000000] [--batch 10000]
        [--backend memory|postgres|all] [--dsn postgresql://...]

Baselines from the same run. Memory: for recording, a plain dict insert of the same keys plus
a running sum per user; for settling, building ``{account: cumulative}`` from a plain dict and
the bare Merkle tree over it. PostgreSQL (a throwaway schema): for recording, the same batches
INSERTed with unnest into a plain table with no key, index or balance upkeep; for settling, one
``GROUP BY`` over that table fetched whole plus the bare Merkle tree. Both settlements run after
a ``VACUUM ANALYZE`` of the tables they read, as autovacuum leaves them during an epoch. The
ratios say what the ledger adds (idempotency, balances, accounts, the settlement record and the
anchor).
Each settlement is also split by its progress reports: reading the leaves, hashing the tree,
and the rest (closing the epoch, the records, the anchor). The load average is printed before
and after: these machines are shared.
Budget (architecture §12): settle <= 10 s.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from decimal import Decimal

import trio
from _pg import DEFAULT_DSN, throwaway_database

from grass.ledger.abc import Credit, derived_account
from grass.ledger.anchored import AnchoredLedger
from grass.ledger.keccak import KECCAK_BACKEND
from grass.ledger.memory import open_memory_ledger
from grass.ledger.merkle import MerkleTree
from grass.ledger.postgres import PostgresAnchor, PostgresJournal
from grass.postgres.connection import Connection
from grass.postgres.pool import Database


def _credits(users: int) -> list[Credit]:
    return [
        Credit(key=f"c{i}", user_id=f"user-{i}", amount=1 + i % 977, epoch=1) for i in range(users)
    ]


class Phases:
    """Seconds from the first to the last progress report of each phase of a settlement."""

    def __init__(self) -> None:
        self.spans: dict[str, list[float]] = {}

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        now = time.perf_counter()
        self.spans.setdefault(phase, [now, now])[1] = now

    def split(self, started: float, ended: float) -> str:
        read = self.spans.get("read", [started, started])
        tree = self.spans.get("tree", [read[1], read[1]])
        # Reading starts when settle() does (after the "close" step); its reports end it.
        reading = read[1] - self.spans.get("settle close", [started])[0]
        hashing = tree[1] - read[1]
        return (
            f"read {reading:.2f} s, tree {hashing:.2f} s,"
            f" rest {ended - started - reading - hashing:.2f} s"
        )


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


async def _ledger_run(credits: list[Credit], batch: int) -> tuple[float, float, int, str]:
    async with open_memory_ledger() as ledger:
        start = time.perf_counter()
        for i in range(0, len(credits), batch):
            await ledger.record(credits[i : i + batch])
        recorded = time.perf_counter() - start
        gc.collect()
        phases = Phases()
        start = time.perf_counter()
        settlement = await ledger.settle(1, progress=phases)
        end = time.perf_counter()
        return recorded, end - start, settlement.user_count, phases.split(start, end)


_PLAIN = "CREATE TABLE bench_plain (key text, account bytea, amount numeric, epoch bigint)"
_PLAIN_INSERT = """
INSERT INTO bench_plain SELECT * FROM unnest($1::text[], $2::bytea[], $3::numeric[], $4::bigint[])
"""
_PLAIN_SUMS = "SELECT account, sum(amount) AS total FROM bench_plain GROUP BY account"


async def _vacuum(db: Database, tables: str) -> None:
    # What autovacuum does over an epoch's week: statistics, hint bits and the visibility map
    # set, so the timed read is not the first one after a million fresh inserts.
    async with db.connection() as conn:
        await conn.execute(f"VACUUM ANALYZE {tables}")


async def _pg_run(
    dsn: str, credits: list[Credit], batch: int
) -> tuple[float, float, float, float, str]:
    import datetime as dt

    accounts = {c.user_id: derived_account(c.user_id) for c in credits}
    async with throwaway_database(dsn, dt.datetime.now(dt.UTC)) as db:
        await db.run(lambda c: c.execute(_PLAIN))

        async def plain(conn: Connection, chunk: list[Credit]) -> None:
            await conn.execute(
                _PLAIN_INSERT,
                [c.key for c in chunk],
                [accounts[c.user_id] for c in chunk],
                [Decimal(c.amount) for c in chunk],
                [c.epoch for c in chunk],
            )

        start = time.perf_counter()
        for i in range(0, len(credits), batch):
            chunk = credits[i : i + batch]
            await db.run(lambda conn, chunk=chunk: plain(conn, chunk))
        base_record = time.perf_counter() - start

        await _vacuum(db, "bench_plain")
        start = time.perf_counter()
        rows = await db.run(lambda c: c.fetch(_PLAIN_SUMS))
        MerkleTree.build({bytes(r["account"]): int(r["total"]) for r in rows})
        base_settle = time.perf_counter() - start
        del rows

        ledger = AnchoredLedger(PostgresJournal(db), PostgresAnchor(db))
        start = time.perf_counter()
        for i in range(0, len(credits), batch):
            await ledger.record(credits[i : i + batch])
        recorded = time.perf_counter() - start
        await _vacuum(db, "ledger_balances, ledger_accounts, ledger_credits")
        gc.collect()
        phases = Phases()
        start = time.perf_counter()
        settlement = await ledger.settle(1, progress=phases)
        end = time.perf_counter()
        assert settlement.user_count == len(accounts)
        return recorded, base_record, end - start, base_settle, phases.split(start, end)


def _report(
    name: str,
    n: int,
    recorded: float,
    base_record: float,
    settled: float,
    base_settle: float,
    record_base: str,
    settle_base: str,
    split: str,
) -> None:
    print(
        f"{name:<8} record:  {recorded:6.2f} s  ({n / recorded:,.0f} credits/s)  "
        f"baseline {record_base} {base_record:5.2f} s  ratio {recorded / base_record:5.1f}x"
    )
    print(
        f"{name:<8} settle:  {settled:6.2f} s  ({n:,} users)  "
        f"baseline {settle_base} {base_settle:5.2f} s  ratio {settled / base_settle:5.1f}x  "
        f"budget 10 s: {'ok' if settled <= 10 else 'MISSED'}"
    )
    print(f"{name:<8} settle split: {split}")


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--backend", choices=["memory", "postgres", "all"], default="all")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    args = parser.parse_args()
    print(f"keccak backend: {KECCAK_BACKEND}; {args.users} users, batches of {args.batch}")
    print(f"start: {_load()}")
    credits = _credits(args.users)
    gc.collect()
    # Like the server does after start-up: the credits are long-lived, keep the GC off them.
    gc.freeze()
    if args.backend in ("memory", "all"):
        base_record = _baseline_record(credits)
        base_settle = _baseline_settle(credits)
        gc.collect()
        recorded, settled, users, split = trio.run(_ledger_run, credits, args.batch)
        assert users == args.users
        _report(
            "memory",
            args.users,
            recorded,
            base_record,
            settled,
            base_settle,
            "dict",
            "dict+tree",
            split,
        )
    if args.backend in ("postgres", "all"):
        recorded, base_record, settled, base_settle, split = trio.run(
            _pg_run, args.dsn, credits, args.batch
        )
        _report(
            "postgres",
            args.users,
            recorded,
            base_record,
            settled,
            base_settle,
            "plain INSERT",
            "GROUP BY+tree",
            split,
        )
    print(f"end: {_load()}")


if __name__ == "__main__":
    main()

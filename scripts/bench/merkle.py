"""Merkle tree build and proof throughput, beside a bare-keccak baseline from the same run.

    .venv/bin/python scripts/bench/merkle.py [--sizes 100000 1000000] [--proofs 100000]

A tree of n leaves hashes n leaves and n - 1 nodes, so the floor is about 2n keccak calls; the
baseline times exactly that many bare calls over 64-byte inputs and the ratio says how much the
tree adds (validation, sorting, concatenation). The settlement budget (architecture §12) is 10 s for
1 000 000 users, tree included.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import time

from grass.ledger.keccak import KECCAK_BACKEND, keccak256
from grass.ledger.merkle import MerkleTree, verify


def _baseline(calls: int) -> float:
    inputs = [os.urandom(64) for _ in range(min(calls, 100_000))]
    start = time.perf_counter()
    done = 0
    while done < calls:
        batch = inputs[: calls - done]
        for data in batch:
            keccak256(data)
        done += len(batch)
    return time.perf_counter() - start


def _balances(n: int, rng: random.Random) -> dict[bytes, int]:
    return {rng.randbytes(20): rng.randrange(1, 10**24) for _ in range(n)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--proofs", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(7)
    print(f"keccak backend: {KECCAK_BACKEND}")
    for n in args.sizes:
        balances = _balances(n, rng)
        presorted = dict(sorted(balances.items()))
        base = _baseline(2 * n - 1)
        gc.collect()
        start = time.perf_counter()
        tree = MerkleTree.build(balances)
        built = time.perf_counter() - start
        start = time.perf_counter()
        MerkleTree.build(presorted)
        built_sorted = time.perf_counter() - start

        accounts = rng.sample(list(balances), min(args.proofs, n))
        start = time.perf_counter()
        proofs = [tree.proof(a) for a in accounts]
        proving = time.perf_counter() - start
        start = time.perf_counter()
        root = tree.root
        ok = all(verify(root, a, balances[a], p) for a, p in zip(accounts, proofs, strict=True))
        verifying = time.perf_counter() - start
        assert ok, "a proof failed to verify"

        print(
            f"n={n:>9,}  build {built:6.2f} s ({built / base:4.2f}x baseline {base:5.2f} s"
            f" of {2 * n - 1:,} bare keccak)  presorted input {built_sorted:6.2f} s"
            f" ({built_sorted / base:4.2f}x)"
        )
        print(
            f"{'':13}proofs {len(accounts) / proving:10,.0f}/s"
            f"  verify {len(accounts) / verifying:10,.0f}/s  depth {len(proofs[0])}"
        )
        del tree, proofs, balances, presorted


if __name__ == "__main__":
    main()

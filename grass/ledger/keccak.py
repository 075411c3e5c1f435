"""Keccak-256, the hash of Ethereum (not NIST's SHA3-256: its padding differs), from the fastest
implementation installed."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol


class _Hasher(Protocol):
    def digest(self) -> bytes: ...


def _pick_keccak() -> tuple[str, Callable[[bytes], _Hasher]]:
    # safe-pysha3's C extension is about 6x faster per call than pycryptodome (which eth-hash
    # uses): on 53- and 65-byte inputs the per-call overhead is the whole cost.
    try:
        new: Callable[[bytes], _Hasher] = importlib.import_module("_pysha3").keccak_256
    except ImportError:
        from Crypto.Hash import keccak as _cryptodome_keccak

        def new(data: bytes) -> _Hasher:
            return _cryptodome_keccak.new(data=data, digest_bits=256)

        return "pycryptodome", new
    return "pysha3", new


#: Which keccak implementation is in use ("pysha3" or "pycryptodome"); benchmarks print it.
#: ``new_keccak(data).digest()`` is the hash: the constructor itself, for loops that call it a
#: million times (grass.ledger.merkle).
KECCAK_BACKEND, new_keccak = _pick_keccak()


def keccak256(data: bytes) -> bytes:
    return new_keccak(data).digest()

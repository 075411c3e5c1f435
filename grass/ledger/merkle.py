"""The Merkle tree of an epoch's cumulative balances, hashed exactly as the contract hashes it.

Hashing (mirrored by ``contracts/CumulativeMerkleDistributor.sol``)::

    leaf = keccak256(0x00 ‖ account (20 bytes) ‖ cumulative amount (uint256, 32 bytes big-endian))
    node = keccak256(0x01 ‖ min(a, b) ‖ max(a, b))

The one-byte prefixes keep a leaf (53 bytes hashed) from ever being passed off as a node (65
bytes hashed) or the reverse. Children are sorted before hashing, so a proof is just the list of
siblings, bottom up, with no direction bits; this is what OpenZeppelin's ``MerkleProof`` does too.

Leaves are ordered by account bytes; at a level with an odd count the last node is promoted
unchanged (its proof gets no sibling at that level). An empty tree has the root
:data:`EMPTY_ROOT` (keccak256 of no bytes), which no leaf or node can hash to, so no proof
verifies against it, and it is never the zero word that a contract reads for "no root".

A tree of a million leaves is two million keccak calls, so the levels are flat lists of
``bytes``, leaves are hashed by ``map`` over C callables and nodes by a list comprehension.
:class:`TreeBuild` does it in steps, for a Trio task that must checkpoint between them and for
progress reports; journals hand in the leaves' hashed bytes directly (PostgreSQL builds them in
its query), which spares a Python int and two bytes objects per user.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from operator import itemgetter, methodcaller
from typing import Final

from grass.errors import InvalidInput, LedgerError, NotFound
from grass.ledger.keccak import keccak256, new_keccak

LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"
#: Bytes a leaf hashes: the prefix, a 20-byte account, a 32-byte amount.
LEAF_SIZE: Final = 53
EMPTY_ROOT: Final = keccak256(b"")
MAX_AMOUNT: Final = 2**256 - 1

_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
_DIGEST: Final = methodcaller("digest")
_FIRST_BYTE: Final = itemgetter(0)
_AMOUNT_BYTES: Final = itemgetter(slice(21, None))
_DONE: Final = object()

Account = bytes | str


class MerkleError(LedgerError):
    """Base of the Merkle tree's errors."""


class InvalidMerkleInput(MerkleError, InvalidInput):
    """A malformed account, an amount out of range, a duplicate account, or a malformed proof."""

    code = "invalid_merkle_input"


class AccountNotInTree(MerkleError, NotFound):
    """A proof was asked for an account that has no leaf in this tree."""

    code = "account_not_in_tree"


def to_checksum_address(account: bytes) -> str:
    """EIP-55 mixed-case hex of a 20-byte account."""
    if len(account) != 20:
        raise InvalidMerkleInput(f"an account is 20 bytes, got {len(account)}")
    lower = account.hex()
    digest = keccak256(lower.encode("ascii")).hex()
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(d, 16) >= 8 else c
        for c, d in zip(lower, digest[:40], strict=True)
    )


def parse_account(account: object) -> bytes:
    """The 20 bytes of an account given as bytes or as ``0x`` hex.

    Hex in one case (all lower or all upper) is accepted as is; mixed case must be a valid EIP-55
    checksum, since a mixed-case address with a wrong checksum is a typo we can catch.
    """
    if isinstance(account, bytes | bytearray | memoryview):
        raw = bytes(account)
        if len(raw) != 20:
            raise InvalidMerkleInput(
                f"an account is 20 bytes, got {len(raw)}", details={"account": raw.hex()}
            )
        return raw
    if not isinstance(account, str):
        raise InvalidMerkleInput(f"an account is bytes or hex text, got {type(account).__name__}")
    digits = account[2:] if account[:2] in ("0x", "0X") else None
    if digits is None or len(digits) != 40 or not _HEX_DIGITS.issuperset(digits):
        raise InvalidMerkleInput(
            "an account is 0x followed by 40 hex digits", details={"account": account}
        )
    raw = bytes.fromhex(digits)
    one_case = digits.islower() or digits.isupper() or digits.isdigit()
    if not one_case and to_checksum_address(raw)[2:] != digits:
        raise InvalidMerkleInput(
            "the account's EIP-55 checksum is wrong", details={"account": account}
        )
    return raw


def _check_amount(amount: object, account: bytes) -> int:
    # bool is an int subclass; True as an amount is a bug upstream, not a balance of 1.
    if type(amount) is not int:
        if isinstance(amount, int) and not isinstance(amount, bool):
            amount = int(amount)
        else:
            raise InvalidMerkleInput(
                f"an amount is an int, got {type(amount).__name__}",
                details={"account": "0x" + account.hex()},
            )
    if not 0 <= amount <= MAX_AMOUNT:
        raise InvalidMerkleInput(
            "an amount must be in [0, 2**256)",
            details={"account": "0x" + account.hex(), "amount": str(amount)},
        )
    return amount


def leaf_data(account: bytes, amount: int) -> bytes:
    """What a leaf hashes: ``0x00 ‖ account ‖ amount`` (53 bytes). Trusts a 20-byte account and
    an amount in range; :func:`leaf_hash` is the checked form."""
    return LEAF_PREFIX + account + amount.to_bytes(32, "big")


def leaf_hash(account: Account, amount: int) -> bytes:
    raw = parse_account(account)
    amount = _check_amount(amount, raw)
    return keccak256(leaf_data(raw, amount))


def node_hash(a: bytes, b: bytes) -> bytes:
    return keccak256(NODE_PREFIX + a + b) if a < b else keccak256(NODE_PREFIX + b + a)


def _hash_pairs(nodes: list[bytes]) -> list[bytes]:
    # node_hash inlined: two fewer Python calls per node is a third of the time per level. An
    # odd last node is the caller's: it is promoted only at the end of a whole level.
    new, prefix = new_keccak, NODE_PREFIX
    pairs = iter(nodes)
    return [
        new(prefix + a + b).digest() if a < b else new(prefix + b + a).digest()
        for a, b in zip(pairs, pairs, strict=False)
    ]


def _hash_leaves(data: list[bytes]) -> list[bytes]:
    # map() over C callables: no interpreter frame per leaf.
    return list(map(_DIGEST, map(new_keccak, data)))


def _is_clean(balances: object) -> bool:
    # Checked with C-level passes over keys and values: a million-entry dict of 20-byte keys and
    # in-range ints (what the ledger hands in) then skips the per-item loop, a fifth of the build.
    if type(balances) is not dict or not balances:
        return False
    amounts = balances.values()
    return (
        set(map(type, balances)) == {bytes}
        and set(map(len, balances)) == {20}
        and set(map(type, amounts)) == {int}
        and min(amounts) >= 0
        and max(amounts) <= MAX_AMOUNT
    )


def _validated(
    balances: Mapping[bytes, int] | Mapping[str, int] | Iterable[tuple[Account, int]],
) -> dict[bytes, int]:
    if _is_clean(balances):
        return balances  # type: ignore[return-value]
    items = balances.items() if isinstance(balances, Mapping) else balances
    by_account: dict[bytes, int] = {}
    for count, (account, amount) in enumerate(items, 1):
        raw = account if type(account) is bytes and len(account) == 20 else parse_account(account)
        by_account[raw] = (
            amount
            if type(amount) is int and 0 <= amount <= MAX_AMOUNT
            else _check_amount(amount, raw)
        )
        if len(by_account) != count:
            raise InvalidMerkleInput(
                "an account appears twice", details={"account": to_checksum_address(raw)}
            )
    return by_account


def _check_leaf_data(data: list[bytes]) -> None:
    # Two C-level passes: every item 53 bytes, every first byte the leaf prefix (0).
    if data and (set(map(len, data)) != {LEAF_SIZE} or any(map(_FIRST_BYTE, data))):
        raise InvalidMerkleInput("leaf data is 0x00, a 20-byte account and a 32-byte amount")


class MerkleTree:
    """An immutable tree over ``{account: cumulative amount}``; see the module docstring.

    The leaves are kept as their hashed bytes (:func:`leaf_data`), sorted: sorting those sorts
    by account, a lookup is a bisection over them, and a million of them are one list of bytes
    instead of a list of accounts and a list of ints.
    """

    __slots__ = ("_data", "_levels", "_total")

    def __init__(self, data: list[bytes], levels: list[list[bytes]]) -> None:
        # Use MerkleTree.build() or TreeBuild; this constructor trusts its (sorted) input.
        self._data = data
        self._levels = levels
        self._total: int | None = None

    @classmethod
    def build(
        cls,
        balances: Mapping[bytes, int] | Mapping[str, int] | Iterable[tuple[Account, int]],
    ) -> MerkleTree:
        """Build from a mapping or from ``(account, amount)`` pairs (e.g. database rows).

        Raises :class:`InvalidMerkleInput` on a malformed account, an amount outside
        ``[0, 2**256)``, or an account given twice (also as bytes and hex, or in two cases).
        """
        by_account = _validated(balances)
        accounts = sorted(by_account)
        # One C-level gather instead of a million dict lookups from the interpreter loop.
        amounts = (
            list(itemgetter(*accounts)(by_account))
            if len(accounts) > 1
            else [by_account[a] for a in accounts]
        )
        del by_account
        prefix = LEAF_PREFIX
        data = [prefix + a + v.to_bytes(32, "big") for a, v in zip(accounts, amounts, strict=True)]
        del accounts, amounts
        return TreeBuild(data, presorted=True).run()

    @classmethod
    def from_leaf_data(cls, data: list[bytes]) -> MerkleTree:
        """Build from :func:`leaf_data` items in any order, one per account (see TreeBuild)."""
        return TreeBuild(data).run()

    @property
    def root(self) -> bytes:
        top = self._levels[-1]
        return top[0] if top else EMPTY_ROOT

    @property
    def total(self) -> int:
        """The sum of every leaf's amount."""
        if self._total is None:
            self._total = sum(map(int.from_bytes, map(_AMOUNT_BYTES, self._data)))
        return self._total

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, account: object) -> bool:
        try:
            self._index(account)
        except (AccountNotInTree, InvalidMerkleInput):
            return False
        return True

    def _index(self, account: object) -> int:
        raw = parse_account(account)
        i = bisect_left(self._data, LEAF_PREFIX + raw)
        if i == len(self._data) or self._data[i][1:21] != raw:
            raise AccountNotInTree(
                "no leaf for this account", details={"account": to_checksum_address(raw)}
            )
        return i

    def amount(self, account: Account) -> int:
        return int.from_bytes(self._data[self._index(account)][21:], "big")

    def proof(self, account: Account) -> list[bytes]:
        """The siblings from the leaf up to (not including) the root."""
        i = self._index(account)
        path: list[bytes] = []
        for level in self._levels[:-1]:
            sibling = i ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            i >>= 1
        return path

    def items(self) -> Iterable[tuple[bytes, int]]:
        """``(account, amount)`` in leaf order."""
        return ((d[1:21], int.from_bytes(d[21:], "big")) for d in self._data)


class TreeBuild:
    """A tree built a step at a time, each step at most ``step`` hashes.

    For callers that must not hold the CPU for a whole million-leaf build (a Trio task
    checkpoints between steps) or that report progress (``done`` of ``total`` hashes)::

        build = TreeBuild(data)
        while build.step():
            report(build.done, build.total)
        tree = build.tree()

    ``data`` is a list of :func:`leaf_data` items, one per account, which the build takes over
    (it is sorted in place unless ``presorted``). Their layout is checked; that no account
    appears twice is the caller's promise: the journals' queries give one row per user and no
    two users share an account (a linked wallet is unique; a derived one hashes the user id).
    """

    def __init__(self, data: list[bytes], *, presorted: bool = False, step: int = 1 << 16) -> None:
        if step < 2:
            raise ValueError("a step is at least 2 hashes")
        _check_leaf_data(data)
        if not presorted:
            data.sort()
        self._data = data
        self._step = step & ~1  # even: a step never splits a pair
        n = len(data)
        #: Hashes in all: one per leaf, one per node (each merges two into one: n - 1 of them).
        self.total = 2 * n - 1 if n else 0
        self.done = 0
        self._levels: list[list[bytes]] = [[]]
        self._work = self._steps()

    def _steps(self) -> Iterator[None]:
        data, step = self._data, self._step
        leaves = self._levels[0]
        for i in range(0, len(data), step):
            leaves.extend(_hash_leaves(data[i : i + step]))
            self.done += min(step, len(data) - i)
            yield
        level = leaves
        while len(level) > 1:
            upper: list[bytes] = []
            self._levels.append(upper)
            for i in range(0, len(level) & ~1, step):
                hashed = _hash_pairs(level[i : min(i + step, len(level) & ~1)])
                upper.extend(hashed)
                self.done += len(hashed)
                yield
            if len(level) & 1:
                upper.append(level[-1])
            level = upper

    def step(self) -> bool:
        """Do the next step; False once the tree is complete."""
        return next(self._work, _DONE) is not _DONE

    def run(self) -> MerkleTree:
        """Every remaining step at once, then the tree."""
        for _ in self._work:
            pass
        return self.tree()

    def tree(self) -> MerkleTree:
        if self.done != self.total:
            raise RuntimeError("the tree is not built yet: call step() until it returns False")
        return MerkleTree(self._data, self._levels)


def compute_root(account: Account, amount: int, proof: Iterable[bytes]) -> bytes:
    node = leaf_hash(account, amount)
    for sibling in proof:
        if not isinstance(sibling, bytes) or len(sibling) != 32:
            raise InvalidMerkleInput("a proof is a list of 32-byte hashes")
        node = node_hash(node, sibling)
    return node


def verify(root: bytes, account: Account, amount: int, proof: Iterable[bytes]) -> bool:
    """Whether ``proof`` shows that ``(account, amount)`` is a leaf under ``root``.

    False for a wrong amount, account, proof or root; raises :class:`InvalidMerkleInput` only
    when an input is malformed (not an account, amount out of range, a sibling not 32 bytes).
    """
    return compute_root(account, amount, proof) == root

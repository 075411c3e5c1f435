"""The in-memory journal and anchor, and the memory ledger made of them. Nothing is persisted.

Every journal method runs without a checkpoint between its reads and writes, so on Trio each
one is atomic with respect to every other task: that is the whole concurrency story here.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import attrs
import trio

from grass.ledger.abc import (
    AccountConflict,
    AlreadySettled,
    AnchorFailed,
    Balance,
    Credit,
    CreditConflict,
    HistoryPage,
    InvalidCredit,
    Link,
    Progress,
    RecordResult,
    Settlement,
    StepHook,
    derived_account,
    latest_confirmed,
)
from grass.ledger.anchored import AnchoredLedger
from grass.ledger.merkle import LEAF_PREFIX, MAX_AMOUNT, InvalidMerkleInput, to_checksum_address


class MemoryJournal:
    capabilities: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self._by_key: dict[str, Credit] = {}
        self._all: list[Credit] = []  # recording order, for export()
        # Per user: every credit in recording order (a history cursor is an index in it) and
        # the sum per epoch (settlement and balances read only these).
        self._log: dict[str, list[Credit]] = {}
        self._per_epoch: dict[str, dict[int, int]] = {}
        self._derived: dict[str, bytes] = {}
        self._links: dict[str, tuple[bytes, int]] = {}  # user -> (account, first epoch)
        self._linked_by: dict[bytes, str] = {}
        self._closed = -1
        self._settlements: dict[int, Settlement] = {}

    async def record(self, credits: Sequence[Credit]) -> RecordResult:
        await trio.lowlevel.checkpoint()
        fresh: dict[str, Credit] = {}
        duplicates = 0
        # Check the whole batch before writing anything: a conflict leaves no trace.
        for credit in credits:
            known = self._by_key.get(credit.key) or fresh.get(credit.key)
            if known is not None:
                if known != credit:
                    raise CreditConflict(
                        "this idempotency key was recorded with other content",
                        details={"key": credit.key},
                    )
                duplicates += 1
                continue
            if credit.epoch <= self._closed:
                raise AlreadySettled(
                    "this credit's epoch is already settled",
                    details={"key": credit.key, "epoch": credit.epoch, "closed": self._closed},
                )
            fresh[credit.key] = credit
        self._all.extend(fresh.values())
        for credit in fresh.values():
            self._by_key[credit.key] = credit
            user = credit.user_id
            log = self._log.get(user)
            if log is None:
                log = self._log[user] = []
                self._per_epoch[user] = {}
                self._derived[user] = derived_account(user)
            log.append(credit)
            sums = self._per_epoch[user]
            sums[credit.epoch] = sums.get(credit.epoch, 0) + credit.amount
        return RecordResult(new=len(fresh), duplicates=duplicates)

    async def balances(self, user_ids: Sequence[str]) -> dict[str, Balance]:
        await trio.lowlevel.checkpoint()
        settled_upto = latest_confirmed(self._settlements)
        result = {}
        for user in user_ids:
            sums = self._per_epoch.get(user, {})
            settled = sum(v for e, v in sums.items() if e <= settled_upto)
            result[user] = Balance(
                user_id=user, settled=settled, pending=sum(sums.values()) - settled
            )
        return result

    async def history(self, user_id: str, cursor: str | None, limit: int) -> HistoryPage:
        await trio.lowlevel.checkpoint()
        log = self._log.get(user_id, [])
        if cursor is None:
            end = len(log)
        elif cursor.isdigit() and int(cursor) <= len(log):
            end = int(cursor)
        else:
            raise InvalidCredit("malformed history cursor", details={"cursor": cursor})
        start = max(0, end - limit)
        return HistoryPage(
            items=tuple(reversed(log[start:end])), next_cursor=str(start) if start else None
        )

    async def link_account(self, user_id: str, account: bytes) -> None:
        await trio.lowlevel.checkpoint()
        owner = self._linked_by.get(account)
        if owner is not None and owner != user_id:
            raise AccountConflict(
                "this wallet is linked to another user",
                details={"account": to_checksum_address(account)},
            )
        current = self._links.get(user_id)
        if current is not None:
            if current[0] != account:
                raise AccountConflict(
                    "this user already linked another wallet", details={"user_id": user_id}
                )
            return
        self._links[user_id] = (account, self._closed + 1)
        self._linked_by[account] = user_id

    def _account_at(self, user_id: str, epoch: int) -> bytes:
        link = self._links.get(user_id)
        if link is not None and link[1] <= epoch:
            return link[0]
        derived = self._derived.get(user_id)
        return derived if derived is not None else derived_account(user_id)

    async def account_of(self, user_id: str, epoch: int) -> bytes:
        await trio.lowlevel.checkpoint()
        return self._account_at(user_id, epoch)

    async def close(self, epoch: int) -> None:
        await trio.lowlevel.checkpoint()
        self._closed = max(self._closed, epoch)

    async def cumulative(self, epoch: int) -> dict[bytes, int]:
        await trio.lowlevel.checkpoint()
        result: dict[bytes, int] = {}
        account_at = self._account_at
        for user, sums in self._per_epoch.items():
            # Most users have credits in one epoch or a few: sum() over a tiny dict is the
            # whole per-user cost of a million-user settlement.
            total = sum(v for e, v in sums.items() if e <= epoch)
            if total:
                result[account_at(user, epoch)] = total
        return result

    async def leaves(self, epoch: int, progress: Progress) -> list[bytes]:
        await trio.lowlevel.checkpoint()
        leaves = []
        account_at, prefix = self._account_at, LEAF_PREFIX
        for user, sums in self._per_epoch.items():
            if len(sums) == 1:  # the usual case, without a generator
                ((first, total),) = sums.items()
                if first > epoch:
                    continue
            else:
                total = sum(v for e, v in sums.items() if e <= epoch)
                if not total:
                    continue
            if total > MAX_AMOUNT:
                raise InvalidMerkleInput(
                    "a cumulative amount is beyond uint256", details={"user_id": user}
                )
            leaves.append(prefix + account_at(user, epoch) + total.to_bytes(32, "big"))
        progress("read", len(leaves), len(leaves))
        return leaves

    async def put_settlement(self, settlement: Settlement) -> None:
        await trio.lowlevel.checkpoint()
        self._settlements[settlement.epoch] = settlement

    async def settlement(self, epoch: int) -> Settlement | None:
        await trio.lowlevel.checkpoint()
        return self._settlements.get(epoch)

    async def settlements(self) -> list[Settlement]:
        await trio.lowlevel.checkpoint()
        return [self._settlements[e] for e in sorted(self._settlements)]

    async def export(self, cursor: int, limit: int) -> tuple[list[Credit], int]:
        await trio.lowlevel.checkpoint()
        page = self._all[cursor : cursor + limit]
        return page, cursor + len(page)

    async def links(self) -> list[Link]:
        await trio.lowlevel.checkpoint()
        return [
            Link(user_id=user, account=account, first_epoch=first)
            for user, (account, first) in self._links.items()
        ]


@attrs.frozen(kw_only=True, slots=True)
class _Posted:
    root: bytes
    ref: str


class MemoryAnchor:
    """Roots in a dict, with the contract's rules: one root per epoch, epochs increasing."""

    capabilities: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self._roots: dict[int, _Posted] = {}
        self._epochs: list[int] = []  # sorted
        #: Roots written per epoch; the conformance suite checks it never exceeds one.
        self.writes: dict[int, int] = {}

    async def post(self, epoch: int, root: bytes) -> str:
        await trio.lowlevel.checkpoint()
        posted = self._roots.get(epoch)
        if posted is not None:
            if posted.root != root:
                raise AnchorFailed(
                    "another root is anchored for this epoch", details={"epoch": epoch}
                )
            return posted.ref
        if root == bytes(32):
            raise AnchorFailed("a zero root is refused", details={"epoch": epoch})
        if self._epochs and epoch <= self._epochs[-1]:
            raise AnchorFailed(
                "epochs must increase", details={"epoch": epoch, "latest": self._epochs[-1]}
            )
        ref = f"memory:{epoch}:{root.hex()}"
        self._roots[epoch] = _Posted(root=root, ref=ref)
        self._epochs.insert(bisect_left(self._epochs, epoch), epoch)
        self.writes[epoch] = self.writes.get(epoch, 0) + 1
        return ref

    async def wait_final(self, epoch: int, root: bytes, ref: str) -> str:
        await trio.lowlevel.checkpoint()
        return ref

    async def anchored(self, epoch: int) -> bytes | None:
        await trio.lowlevel.checkpoint()
        posted = self._roots.get(epoch)
        return None if posted is None else posted.root

    async def ref(self, epoch: int) -> str | None:
        await trio.lowlevel.checkpoint()
        posted = self._roots.get(epoch)
        return None if posted is None else posted.ref

    async def confirmations(self, ref: str) -> int:
        await trio.lowlevel.checkpoint()
        return 1 if any(p.ref == ref for p in self._roots.values()) else 0

    def tamper(self, epoch: int, root: bytes) -> None:
        """Overwrite an epoch's root, as a compromised store would; for verify() tests."""
        self._roots[epoch] = attrs.evolve(self._roots[epoch], root=root)


@asynccontextmanager
async def open_memory_ledger(*, step_hook: StepHook | None = None) -> AsyncIterator[AnchoredLedger]:
    yield AnchoredLedger(MemoryJournal(), MemoryAnchor(), step_hook=step_hook)

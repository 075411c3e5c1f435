"""The ledger: credits in a journal, settlements anchored somewhere that others can check.

A ledger is two components (architecture §7):

- a :class:`Journal` holds every credit (idempotent per key), the wallet links and the
  settlement records; memory now, PostgreSQL later;
- an :class:`Anchor` publishes one Merkle root per epoch: in memory, on the simulated chain
  (``grass.ledger.mockchain``) or on the contract (web3).

:class:`grass.ledger.anchored.AnchoredLedger` composes them and is the one implementation of
the :class:`Ledger` protocol; backends differ only in the journal and anchor they hand it.

Several ledgers may share one journal (``grass ledger migrate`` re-anchors the settled epochs on
another anchor): the journal holds one settlement record per epoch, and each anchor is the
record of its own references, so a ledger's :class:`Settlement` carries the reference *its*
anchor holds for the root.

Settlement accounts: a user's leaf is keyed by the wallet linked with :meth:`Ledger.link_account`
for every epoch after the link, and otherwise by :func:`derived_account` - the first 20 bytes of
``keccak256("grass:user:" + user_id)``. Nobody holds a key for a derived account, so points
settled there cannot be claimed on chain; they stay in the user's cumulative total and become
claimable by the linked wallet from the first epoch settled after the link (cumulative amounts
never drop, so nothing is lost and nothing is paid twice). A link is final: another address, or
an address another user linked, is an :class:`AccountConflict`.

Errors::

    LedgerError
    ├── InvalidCredit        (InvalidInput)  malformed credit or argument
    ├── CreditConflict       (Conflict)      same idempotency key, other content; batch refused
    ├── AccountConflict      (Conflict)      relink to another wallet, or a wallet already taken
    ├── AlreadySettled       (Conflict)      a credit or settlement for an epoch already closed
    ├── EpochNotFound        (NotFound)      no settlement for that epoch
    ├── NoBalance            (NotFound)      the user has no leaf in that epoch's tree
    ├── AnchorFailed         (Unavailable)   the anchor refused or lost the root
    └── VerificationFailed                   VerifyReport.raise_for_mismatch
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs

from grass.errors import Conflict, InvalidInput, LedgerError, NotFound, Unavailable
from grass.ledger.keccak import keccak256

#: ``progress(phase, done, total)``, called as long work advances (``total`` None when not
#: known yet). Phases: "read" (leaves read from the journal), "tree" (hashes of the tree),
#: "settle <step>" (a settlement's steps), "verify" (epochs checked); migrations add theirs.
Progress = Callable[[str, int, int | None], None]


def no_progress(phase: str, done: int, total: int | None) -> None:
    return None


class InvalidCredit(LedgerError, InvalidInput):
    code = "invalid_credit"


class CreditConflict(LedgerError, Conflict):
    code = "credit_conflict"


class AccountConflict(LedgerError, Conflict):
    code = "account_conflict"


class AlreadySettled(LedgerError, Conflict):
    code = "already_settled"


class EpochNotFound(LedgerError, NotFound):
    code = "epoch_not_found"


class NoBalance(LedgerError, NotFound):
    code = "no_balance"


class AnchorFailed(LedgerError, Unavailable):
    code = "anchor_failed"


class AnchorUnreachable(AnchorFailed):
    """The anchor did not answer (a node down, a timeout): nothing is known to have failed,
    so a settlement keeps its status and a re-run sees it through."""

    code = "anchor_unreachable"


class VerificationFailed(LedgerError):
    code = "verification_failed"


def derived_account(user_id: str) -> bytes:
    """The settlement account of a user without a linked wallet (see the module docstring)."""
    return keccak256(b"grass:user:" + user_id.encode())[:20]


def _positive_int(_: object, attribute: attrs.Attribute[int], value: object) -> None:
    # bool is an int; True micro-points is a bug upstream.
    if type(value) is not int or value <= 0:
        raise InvalidCredit(f"{attribute.name} must be a positive int", details={"value": value})


def _epoch_int(_: object, attribute: attrs.Attribute[int], value: object) -> None:
    if type(value) is not int or value < 0:
        raise InvalidCredit(f"{attribute.name} must be an int >= 0", details={"value": value})


def _text(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise InvalidCredit(f"{attribute.name} must be 1 to 200 characters")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@attrs.frozen(kw_only=True, slots=True)
class Credit:
    """Points owed to a user, in micro-points, for an epoch. ``key`` makes a retry harmless.

    Two credits with the same key are the same credit when everything but ``created`` matches:
    a retry rebuilds the credit at another instant.
    """

    key: str = attrs.field(validator=_text)
    user_id: str = attrs.field(validator=_text)
    amount: int = attrs.field(validator=_positive_int)
    epoch: int = attrs.field(validator=_epoch_int)
    source: str = attrs.field(default="uptime", validator=_text)
    created: dt.datetime = attrs.field(factory=_utcnow, eq=False)


@attrs.frozen(kw_only=True, slots=True)
class RecordResult:
    new: int
    duplicates: int


@attrs.frozen(kw_only=True, slots=True)
class Balance:
    """``settled``: credits of epochs up to the last confirmed settlement; ``pending``: the rest."""

    user_id: str
    settled: int
    pending: int

    @property
    def total(self) -> int:
        return self.settled + self.pending


@attrs.frozen(kw_only=True, slots=True)
class HistoryPage:
    """Newest credit first; pass ``next_cursor`` back for the next page (None: no more)."""

    items: tuple[Credit, ...]
    next_cursor: str | None


class SettlementStatus(enum.StrEnum):
    PENDING = "pending"  # recorded, root not yet accepted by the anchor
    ANCHORED = "anchored"  # the anchor holds the root, not yet final
    CONFIRMED = "confirmed"  # final: the epoch's credits count as settled
    FAILED = "failed"  # the anchor refused it; settle() again retries


@attrs.frozen(kw_only=True, slots=True)
class Settlement:
    """An epoch's settlement. ``anchor_ref``: what the ledger's anchor calls the posted root (a
    transaction hash on a chain), None while that anchor holds no root for the epoch."""

    epoch: int
    root: bytes
    total: int
    user_count: int
    anchor_ref: str | None
    status: SettlementStatus


@attrs.frozen(kw_only=True, slots=True)
class Proof:
    """What ``claim(account, cumulative_amount, proof)`` needs, checked against ``root``."""

    epoch: int
    account: bytes
    cumulative_amount: int
    proof: tuple[bytes, ...]
    root: bytes


@attrs.frozen(kw_only=True, slots=True)
class EpochCheck:
    epoch: int
    expected_root: bytes  # recomputed from the journal now
    recorded_root: bytes  # what the settlement record says
    anchored_root: bytes | None  # what the anchor holds
    ok: bool


@attrs.frozen(kw_only=True, slots=True)
class VerifyReport:
    epochs: tuple[EpochCheck, ...]

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.epochs)

    def raise_for_mismatch(self) -> None:
        bad = [e.epoch for e in self.epochs if not e.ok]
        if bad:
            raise VerificationFailed("roots disagree with the journal", details={"epochs": bad})


class Journal(Protocol):
    """Where credits, links and settlement records live. Each method is atomic."""

    capabilities: frozenset[str]

    async def record(self, credits: Sequence[Credit]) -> RecordResult:
        """All or nothing. Raises CreditConflict, or AlreadySettled for an epoch <= closed."""
        ...

    async def balances(self, user_ids: Sequence[str]) -> dict[str, Balance]: ...

    async def history(self, user_id: str, cursor: str | None, limit: int) -> HistoryPage: ...

    async def link_account(self, user_id: str, account: bytes) -> None: ...

    async def account_of(self, user_id: str, epoch: int) -> bytes: ...

    async def close(self, epoch: int) -> None:
        """Refuse from now on any credit for an epoch <= ``epoch`` (idempotent)."""
        ...

    async def cumulative(self, epoch: int) -> dict[bytes, int]:
        """Settlement account -> sum of the user's credits of epochs <= ``epoch``."""
        ...

    async def leaves(self, epoch: int, progress: Progress) -> list[bytes]:
        """What the epoch's tree hashes: :func:`grass.ledger.merkle.leaf_data` of each account
        of :meth:`cumulative` and its amount, in any order (the tree sorts them). Raises
        InvalidMerkleInput if an amount is beyond uint256."""
        ...

    async def put_settlement(self, settlement: Settlement) -> None:
        """Insert or replace the epoch's record; its ``anchor_ref`` is the settling anchor's."""
        ...

    async def settlement(self, epoch: int) -> Settlement | None: ...

    async def settlements(self) -> list[Settlement]: ...

    async def export(self, cursor: int, limit: int) -> tuple[list[Credit], int]:
        """Every credit in recording order, ``limit`` at a time from ``cursor`` (0: the start);
        returns the page and the cursor of the next (an empty page: the end). For migrations."""
        ...

    async def links(self) -> list[Link]:
        """Every wallet link, with the first epoch it applies to."""
        ...


@attrs.frozen(kw_only=True, slots=True)
class Link:
    user_id: str
    account: bytes
    first_epoch: int


class Anchor(Protocol):
    """Publishes one root per epoch, epochs strictly increasing, as the contract does."""

    capabilities: frozenset[str]

    async def post(self, epoch: int, root: bytes) -> str:
        """Publish ``root`` and return a reference once the anchor has accepted it.

        Idempotent: if the epoch already holds this root, return its reference without writing
        again. Raises AnchorFailed if the epoch holds another root or the write is refused.
        """
        ...

    async def wait_final(self, epoch: int, root: bytes, ref: str) -> str:
        """Wait until the root is final (e.g. N confirmations); the reference may change."""
        ...

    async def anchored(self, epoch: int) -> bytes | None: ...

    async def ref(self, epoch: int) -> str | None:
        """The reference of the root this anchor holds for ``epoch`` (None: it holds none)."""
        ...

    async def confirmations(self, ref: str) -> int: ...


@runtime_checkable
class ClaimsAnchor(Anchor, Protocol):
    """An anchor that pays claims (capability "claims"): the contract, or the simulated chain."""

    async def claimed(self, account: bytes) -> int:
        """The cumulative amount already claimed by ``account`` (0: never)."""
        ...


class Ledger(Protocol):
    """What services and the CLI call; see :class:`AnchoredLedger` for the semantics."""

    capabilities: frozenset[str]

    async def record(self, credits: Sequence[Credit]) -> RecordResult: ...

    async def balance(self, user_id: str) -> Balance: ...

    async def balances(self, user_ids: Sequence[str]) -> dict[str, Balance]: ...

    async def history(
        self, user_id: str, cursor: str | None = None, limit: int = 50
    ) -> HistoryPage: ...

    async def link_account(self, user_id: str, account: bytes | str) -> None: ...

    async def settle(self, epoch: int, *, progress: Progress = no_progress) -> Settlement: ...

    async def settlement(self, epoch: int) -> Settlement: ...

    async def settlements(self) -> list[Settlement]: ...

    async def latest_settlement(self) -> int | None:
        """The highest epoch with a settlement record (any status), from the journal alone:
        what crediting asks on every bucket close, which must not wait on the anchor."""
        ...

    async def proof(self, user_id: str, epoch: int) -> Proof: ...

    async def claimed(self, account: bytes) -> int | None:
        """What ``account`` has claimed so far on the anchor; None if the anchor pays no claims."""
        ...

    async def verify(self, *, progress: Progress = no_progress) -> VerifyReport: ...


#: Called after each step of a settlement with the step's name; tests raise from it to
#: simulate a crash between two steps.
StepHook = Callable[[str], Awaitable[None]]

SETTLE_STEPS = ("close", "tree", "pending", "post", "anchored", "final", "confirmed")


def check_user_id(user_id: object) -> str:
    if not isinstance(user_id, str) or not user_id:
        raise InvalidCredit("a user id is a non-empty string")
    return user_id


def check_epoch(epoch: object) -> int:
    if type(epoch) is not int or epoch < 0:
        raise InvalidCredit("an epoch is an int >= 0", details={"epoch": epoch})
    return epoch


def latest_confirmed(settlements: Mapping[int, Settlement]) -> int:
    """The highest confirmed epoch, or -1."""
    return max(
        (e for e, s in settlements.items() if s.status is SettlementStatus.CONFIRMED), default=-1
    )

"""The memory backend's state: every table, the lock that serialises units of work, and how a
store runs one operation (alone, or as part of a unit of work)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import attrs
import trio

from grass.domain.devices import Device
from grass.domain.earnings import EarningEntry
from grass.domain.epochs import Epoch
from grass.domain.notifications import Notification
from grass.domain.pages import (
    CursorPart,
    InvalidPage,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
)
from grass.domain.referrals import Referral
from grass.domain.uptime import UptimeBucket
from grass.domain.users import ApiKey, NodeKey, Session, User, WalletLink
from grass.errors import IntegrityViolation, StorageNotFound, TransactionAborted
from grass.storage.memory._account_tables import AccountTables
from grass.storage.memory._admin_tables import AdminTables
from grass.storage.memory._tables import Table, UndoLog
from grass.storage.payouts import BucketClose, FrozenLine

R = TypeVar("R")


class Db:
    """Every table of the memory backend, on one undo log, behind one lock."""

    def __init__(self) -> None:
        self.lock = trio.Lock()
        self.undo_log = j = UndoLog()
        self._add_user_tables(j)
        self._add_device_tables(j)
        self._add_earning_tables(j)
        self.notifications: Table[str, Notification] = Table(
            "notifications", j, lambda n: n.id, groups={"user": lambda n: n.user_id}
        )
        self.accounts = AccountTables(j)
        self.admin = AdminTables(j)

    def _add_user_tables(self, j: UndoLog) -> None:
        """Users and what they sign in and connect with: sessions, API keys, node keys, wallets."""
        self.users: Table[str, User] = Table(
            "users",
            j,
            lambda u: u.id,
            unique={"email": lambda u: u.email, "referral_code": lambda u: u.referral_code},
        )
        self.sessions: Table[str, Session] = Table(
            "sessions", j, lambda s: s.token_hash, groups={"user": lambda s: s.user_id}
        )
        self.api_keys: Table[str, ApiKey] = Table(
            "api_keys",
            j,
            lambda k: k.id,
            unique={"hash": lambda k: k.key_hash},
            groups={"user": lambda k: k.user_id},
        )
        self.node_keys: Table[str, NodeKey] = Table(
            "node_keys",
            j,
            lambda k: k.id,
            unique={"hash": lambda k: k.key_hash},
            groups={"user": lambda k: k.user_id},
        )
        self.wallets: Table[str, WalletLink] = Table(
            "wallets", j, lambda w: w.user_id, unique={"address": lambda w: w.address}
        )

    def _add_device_tables(self, j: UndoLog) -> None:
        """Devices, and the uptime they accrue per bucket."""
        self.devices: Table[str, Device] = Table(
            "devices",
            j,
            lambda d: d.device_id,
            groups={"user": lambda d: d.user_id, "ip": lambda d: d.ip},
        )
        self.uptime: Table[tuple[str, dt.datetime, str], UptimeBucket] = Table(
            "uptime",
            j,
            lambda b: b.key,
            groups={
                "start": lambda b: b.bucket_start,
                "user": lambda b: b.user_id,
                "device": lambda b: b.device_id,
            },
        )

    def _add_earning_tables(self, j: UndoLog) -> None:
        """What uptime earns: entries, the referrals they pay, epochs, closed buckets' lines."""
        self.earnings: Table[str, EarningEntry] = Table(
            "earnings",
            j,
            lambda e: e.id,
            unique={"key": lambda e: e.idempotency_key},
            groups={"user": lambda e: e.user_id, "bucket": lambda e: e.bucket_start},
        )
        self.referrals: Table[tuple[str, str], Referral] = Table(
            "referrals",
            j,
            lambda r: (r.referrer_id, r.referee_id),
            unique={"referee_level": lambda r: (r.referee_id, r.level)},
            groups={"referrer": lambda r: r.referrer_id, "referee": lambda r: r.referee_id},
        )
        self.epochs: Table[int, Epoch] = Table("epochs", j, lambda e: e.number)
        self.closes: Table[dt.datetime, BucketClose] = Table(
            "bucket_closes", j, lambda c: c.bucket_start
        )
        self.frozen_lines: Table[tuple[dt.datetime, str, str], FrozenLine] = Table(
            "bucket_lines",
            j,
            lambda f: (f.bucket_start, f.device_id, f.ip),
            groups={"bucket": lambda f: f.bucket_start},
        )

    def require_user(self, user_id: str) -> None:
        if user_id not in self.users:
            raise IntegrityViolation(f"unknown user {user_id}", details={"user_id": user_id})


#: Rows a batch operation writes between two checkpoints. The storage lock stays held for the
#: whole batch, so other operations wait for it as they would for a PostgreSQL statement (and a
#: batch cancelled half way is undone), but the rest of the process runs meanwhile: the node
#: gateway keeps answering PINGs while the uptime flusher writes 20 000 rows.
BATCH_CHUNK = 512


async def after_row(n: int) -> None:
    """Call after the ``n``-th row of a batch (counting from 1): checkpoints every chunk."""
    if n % BATCH_CHUNK == 0:
        await trio.lowlevel.checkpoint()


def found(row: R | None, what: str, key: object) -> R:
    if row is None:
        raise StorageNotFound(f"{what} {key} not found", details={"key": str(key)})
    return row


@attrs.define
class TxState:
    failed: bool = False
    finished: bool = False


class Scope:
    """Runs a store's operations: alone (taking the lock, undone if it fails) or in a unit of work
    (already holding the lock; a failure dooms it, as in PostgreSQL)."""

    def __init__(self, db: Db, tx: TxState | None) -> None:
        self.db = db
        self.tx = tx

    @asynccontextmanager
    async def op(self) -> AsyncIterator[Db]:
        db, tx = self.db, self.tx
        if tx is None:
            async with db.lock:
                db.undo_log.begin()
                try:
                    yield db
                except BaseException:
                    db.undo_log.rollback()
                    raise
                db.undo_log.commit()
            return
        if tx.finished:
            raise RuntimeError("this unit of work has already finished")
        if tx.failed:
            raise TransactionAborted("an earlier operation of this unit of work failed")
        await trio.lowlevel.checkpoint()
        try:
            yield db
        except BaseException:
            tx.failed = True
            raise


def paginate(
    rows: Iterable[R],
    key: Callable[[R], Sequence[CursorPart]],
    kinds: Sequence[type],
    *,
    descending: bool,
    cursor: str | None,
    limit: int,
) -> Page[R]:
    """Keyset pagination over ``key`` (a tuple of str/int without None)."""
    check_limit(limit)
    ordered = sorted(rows, key=lambda r: tuple(key(r)), reverse=descending)
    if cursor is not None:
        after = decode_cursor(cursor, kinds)
        if None in after:
            raise InvalidPage("malformed cursor")
        if descending:
            ordered = [r for r in ordered if tuple(key(r)) < after]
        else:
            ordered = [r for r in ordered if tuple(key(r)) > after]
    page = ordered[:limit]
    more = len(ordered) > limit
    return Page(tuple(page), encode_cursor(key(page[-1])) if more else None)


def in_range(at: dt.datetime, since: dt.datetime | None, until: dt.datetime | None) -> bool:
    return (since is None or since <= at) and (until is None or at < until)

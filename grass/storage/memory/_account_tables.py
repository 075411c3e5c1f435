"""The memory backend's account tables (see grass.storage.memory.accounts)."""

from __future__ import annotations

import datetime as dt
import itertools

from grass.domain.accounts import AccountToken, Mail
from grass.storage.memory._tables import Table, UndoLog

#: A failure's key: (login key, time, serial): two failures at one instant are two rows.
FailureKey = tuple[str, dt.datetime, int]


class AccountTables:
    """The rows, kept beside the other tables of :class:`~grass.storage.memory._db.Db`."""

    def __init__(self, undo_log: UndoLog) -> None:
        self.tokens: Table[str, AccountToken] = Table(
            "account_tokens", undo_log, lambda t: t.token_hash, groups={"user": lambda t: t.user_id}
        )
        self.mail: Table[str, Mail] = Table("mail_outbox", undo_log, lambda m: m.id)
        self.failures: Table[FailureKey, FailureKey] = Table(
            "login_failures", undo_log, lambda f: f, groups={"key": lambda f: f[0]}
        )
        self.serial = itertools.count()

    def delete_user(self, user_id: str) -> None:
        for token in self.tokens.group("user", user_id):
            self.tokens.delete(token.token_hash)

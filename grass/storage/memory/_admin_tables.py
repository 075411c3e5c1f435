"""The memory backend's tables of the operators' stores (bans, flag overrides, audit log)."""

from __future__ import annotations

import itertools

import attrs

from grass.domain.admin import AuditEntry, Ban, BanKind, FlagOverride
from grass.storage.memory._tables import Table, UndoLog


class AdminTables:
    def __init__(self, undo_log: UndoLog) -> None:
        self.bans: Table[str, Ban] = Table(
            "bans",
            undo_log,
            lambda b: b.id,
            # Only active bans hold their target, as PostgreSQL's partial unique indexes do.
            unique={"active": lambda b: (b.kind, b.target) if b.lifted_at is None else None},
            groups={"kind": lambda b: b.kind},
        )
        self.flags: Table[str, FlagOverride] = Table("feature_flags", undo_log, lambda f: f.name)
        self.audit: Table[int, AuditEntry] = Table("admin_audit_log", undo_log, lambda e: e.id or 0)
        #: Like a PostgreSQL identity: numbers are never reused, even after a rollback.
        self.audit_ids = itertools.count(1)

    def forget_user(self, user_id: str) -> None:
        """The user is being deleted: its bans go, its name leaves what it authored."""
        for ban in self.bans.rows():
            if ban.kind is BanKind.USER and ban.target == user_id:
                self.bans.delete(ban.id)
            elif ban.created_by == user_id:
                self.bans.save(attrs.evolve(ban, created_by=None))
        for flag in self.flags.rows():
            if flag.updated_by == user_id:
                self.flags.save(attrs.evolve(flag, updated_by=None))
        for entry in self.audit.rows():
            if entry.actor_id == user_id:
                self.audit.save(attrs.evolve(entry, actor_id=None))

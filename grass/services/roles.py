"""Who is an administrator, and how one becomes one without an administrator to ask.

Two ways, both audited (``user.promote`` / ``user.demote``, no acting user, ``details.by``
naming the way):

- ``accounts.admin_emails``: a user whose *verified* email is listed becomes an administrator
  when it logs in (``by: "config"``). Works on every storage backend, the in-memory one
  included. Taking an address off the list demotes nobody: demotion is explicit.
- ``grass user promote|demote EMAIL`` (grass.cli) on the configured PostgreSQL store
  (``by: "cli"``).

An unverified address is never promoted: whoever registers first with an operator's address
must not get the role before proving they read its mail.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

import attrs

from grass import logs
from grass.domain._checks import normalize_email
from grass.domain.admin import AuditAction, AuditEntry
from grass.domain.users import Role, User
from grass.errors import Conflict, NotFound
from grass.storage.abc import Storage, Stores

log = logs.get(__name__)


class UnknownEmail(NotFound):
    code = "user_not_found"


class EmailNotVerified(Conflict):
    code = "email_not_verified"


class Roles:
    def __init__(self, storage: Storage, clock: Callable[[], dt.datetime]) -> None:
        self._storage = storage
        self._clock = clock

    async def at_login(self, user: User, admin_emails: Iterable[str], ip: str | None) -> User:
        """``user`` promoted if its verified email is one of ``admin_emails``."""
        if user.role is Role.ADMIN or not user.email_verified:
            return user
        if user.email not in {normalize_email(e) for e in admin_emails}:
            return user
        async with self._storage.transaction() as tx:
            return await self._set_role(tx, user.id, Role.ADMIN, "config", ip)

    async def set_role(self, email: str, role: Role, *, by: str) -> User:
        """Promote or demote the user with ``email``; UnknownEmail, or EmailNotVerified for a
        promotion of an unverified address. Setting the role it has changes nothing."""
        async with self._storage.transaction() as tx:
            user = await tx.users.find_user_by_email(normalize_email(email))
            if user is None:
                raise UnknownEmail(f"no user with the email {email}")
            if role is Role.ADMIN and not user.email_verified:
                raise EmailNotVerified("verify the email address before promoting it")
            if user.role is role:
                return user
            return await self._set_role(tx, user.id, role, by, None)

    async def _set_role(
        self, tx: Stores, user_id: str, role: Role, by: str, ip: str | None
    ) -> User:
        # Read again inside the unit of work: the audit row and the role change go together.
        user = attrs.evolve(await tx.users.get_user(user_id), role=role)
        await tx.users.update_user(user)
        action = AuditAction.USER_PROMOTE if role is Role.ADMIN else AuditAction.USER_DEMOTE
        await tx.audit.add_audit(
            AuditEntry(
                actor_id=None,
                action=action,
                target_type="user",
                target_id=user.id,
                details={"by": by, "email": user.email},
                ip=ip,
                at=self._clock(),
            )
        )
        log.warning("role changed", user=user.id, role=role.value, by=by)
        return user

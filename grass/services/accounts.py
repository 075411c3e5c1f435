"""Accounts: registration with referral links, email verification, login with lockout,
sessions, password reset and change, account deletion.

Every revoked session is announced on the user's channel (grass.services.live:
``session_revoked`` with the token hash), so the live dashboard sockets opened with it close
on whichever instance holds them; a deleted account is also announced (``account_closed``)
and its nodes are disconnected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence

import attrs
import trio

from grass import logs
from grass.config import Config
from grass.domain.accounts import TokenPurpose
from grass.domain.addresses import canonical
from grass.domain.bearer import hash_token, new_session_token
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page
from grass.domain.referrals import MAX_LEVEL, Referral
from grass.domain.users import Credentials, Session, User, UserStatus
from grass.errors import (
    Conflict,
    Forbidden,
    GrassError,
    InvalidInput,
    NotFound,
    RateLimited,
    StorageConflict,
    StorageNotFound,
    Unauthenticated,
    ValidationFailed,
)
from grass.ids import short_id
from grass.services.account_mail import reset_mail, verification_mail
from grass.services.live import LiveEvents
from grass.services.lockout import LockoutKey, LoginLockout
from grass.services.network import NodeControl
from grass.services.passwords import Passwords
from grass.services.roles import Roles
from grass.services.unsplit import store_and_announce
from grass.storage.abc import Storage, Stores

log = logs.get("grass.accounts")

#: How often expired sessions and old failed logins are deleted.
HOUSEKEEPING_INTERVAL = 3600.0


class EmailTaken(Conflict):
    code = "email_taken"


class UnknownReferralCode(ValidationFailed):
    code = "unknown_referral_code"


class InvalidCredentials(Unauthenticated):
    code = "invalid_credentials"


class LoginLocked(RateLimited):
    code = "login_locked"


class AccountInactive(Forbidden):
    code = "account_inactive"


class TokenRejected(InvalidInput):
    code = "token_rejected"


class WrongPassword(ValidationFailed):
    code = "wrong_password"


class AlreadyVerified(Conflict):
    code = "already_verified"


class SessionNotFound(NotFound):
    code = "session_not_found"


@attrs.frozen
class LoggedIn:
    token: str
    session: Session
    user: User


def _ip_or_none(ip: str) -> str | None:
    return canonical(ip)


class Accounts:
    def __init__(
        self,
        storage: Storage,
        events: LiveEvents,
        passwords: Passwords,
        config: Callable[[], Config],
        clock: Callable[[], dt.datetime],
        *,
        nodes: NodeControl,
        on_mail: Callable[[], None] = lambda: None,
    ) -> None:
        self._storage = storage
        self._events = events
        self._passwords = passwords
        self._config = config
        self._clock = clock
        self._nodes = nodes
        self._on_mail = on_mail
        self._roles = Roles(storage, clock)
        self._lockout = LoginLockout(storage.accounts, config)

    # --- registration and verification ---------------------------------------------------

    async def register(self, email: str, password: str, referral_code: str | None) -> User:
        """Create the user, link it to its referrers (levels 1-3) and queue the verification
        mail, all in one unit of work."""
        password_hash = await self._passwords.hash(password)
        now = self._clock()
        user = User(
            id=short_id(),
            email=email,
            referral_code=short_id(10),
            credentials=Credentials(password_hash=password_hash, changed_at=now),
            created_at=now,
        )
        try:
            async with self._storage.transaction() as tx:
                if await tx.users.find_user_by_email(user.email) is not None:
                    raise EmailTaken("an account with this email exists")
                links: list[Referral] = []
                if referral_code is not None:
                    referrer = await tx.users.find_user_by_referral_code(referral_code)
                    if referrer is None:
                        raise UnknownReferralCode(
                            "unknown referral code",
                            details={"fields": {"referral_code": "unknown referral code"}},
                        )
                    chain = (await tx.referrals.referrers_of([referrer.id])).get(referrer.id, ())
                    uplines = [(referrer.id, 1)] + [
                        (r.referrer_id, r.level + 1) for r in chain if r.level < MAX_LEVEL
                    ]
                    links = [
                        Referral(
                            referrer_id=upline,
                            referee_id=user.id,
                            level=level,
                            code=referral_code,
                            created_at=now,
                        )
                        for upline, level in uplines
                    ]
                await tx.users.create_user(user)
                if links:
                    await tx.referrals.add_referrals(links)
                await self._queue_verification(tx, user, now)
        except StorageConflict:
            raise EmailTaken("an account with this email exists") from None
        self._on_mail()
        log.info("registered", user=user.id, referred=referral_code is not None)
        return user

    async def _queue_verification(self, tx: Stores, user: User, now: dt.datetime) -> None:
        token, mail = verification_mail(self._config(), user, now)
        await tx.accounts.create_token(token)
        await tx.accounts.enqueue_mail(mail)

    async def resend_verification(self, user_id: str) -> None:
        now = self._clock()
        async with self._storage.transaction() as tx:
            user = await tx.users.get_user(user_id)
            if user.email_verified:
                raise AlreadyVerified("the email address is already verified")
            await tx.accounts.revoke_tokens(user.id, TokenPurpose.VERIFY_EMAIL, now)
            await self._queue_verification(tx, user, now)
        self._on_mail()

    async def verify_email(self, token: str) -> User:
        now = self._clock()
        try:
            async with self._storage.transaction() as tx:
                used = await tx.accounts.use_token(
                    hash_token(token), TokenPurpose.VERIFY_EMAIL, now
                )
                user = attrs.evolve(await tx.users.get_user(used.user_id), email_verified=True)
                await tx.users.update_user(user)
        except StorageNotFound:
            raise TokenRejected("the token is unknown, used or expired") from None
        return user

    # --- login and sessions ----------------------------------------------------------------

    async def login(self, email: str, password: str, ip: str, user_agent: str | None) -> LoggedIn:
        settings = self._config().accounts
        now = self._clock()
        keys = [self._lockout.account_key(email), self._lockout.address_key(ip)]
        await self._begin_attempt(keys, now)
        user = await self._storage.users.find_user_by_email(email)
        stored = user.credentials.password_hash if user else None
        # Exactly one verification either way (a decoy's when there is no account): an
        # unknown email must not answer sooner than a wrong password.
        matched = await self._passwords.verify(stored, password)
        if user is None or not matched:
            raise InvalidCredentials("wrong email or password")  # recorded as it began
        await self._lockout.succeeded(keys, now)
        if user.status is not UserStatus.ACTIVE:
            raise AccountInactive(f"the account is {user.status.value}")
        user = await self._roles.at_login(user, settings.admin_emails, _ip_or_none(ip))
        if self._passwords.needs_rehash(user.credentials.password_hash):
            rehashed = await self._passwords.hash(password)
            user = attrs.evolve(
                user, credentials=Credentials(password_hash=rehashed, changed_at=now)
            )
            await self._storage.users.update_user(user)
        token = new_session_token()
        session = Session(
            token_hash=hash_token(token),
            user_id=user.id,
            created_at=now,
            expires_at=now + dt.timedelta(seconds=settings.session_ttl),
            ip=_ip_or_none(ip),
            user_agent=(user_agent or None) and user_agent[:512],
        )
        await self._storage.users.create_session(session)
        return LoggedIn(token, session, user)

    async def logout(self, user_id: str, session_hash: str) -> None:
        await self._storage.users.revoke_session(session_hash, self._clock())
        await self._announce(user_id, [session_hash])

    async def sessions(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[Session]:
        return await self._storage.users.list_sessions(
            user_id, active_at=self._clock(), cursor=cursor, limit=limit
        )

    async def revoke_session(self, user_id: str, session_hash: str) -> None:
        try:
            session = await self._storage.users.get_session(session_hash)
        except StorageNotFound:
            session = None
        if session is None or session.user_id != user_id or not session.is_active(self._clock()):
            raise SessionNotFound("no such session")
        await self.logout(user_id, session_hash)

    async def _announce(self, user_id: str, session_hashes: Iterable[str]) -> None:
        await self._events.sessions_revoked(user_id, session_hashes)

    # --- passwords -------------------------------------------------------------------------

    async def request_password_reset(self, email: str) -> None:
        """Mail a reset token when the account exists and is active; the caller answers the
        same either way, and in the same time: the lookup and the outbox write run beside one
        password verification's worth of work, which they take less time than, so the answer
        comes when that work is done whatever they found. The mail itself leaves later, from
        the outbox."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._passwords.decoy)
            await self._queue_reset(email)

    async def _queue_reset(self, email: str) -> None:
        now = self._clock()
        user = await self._storage.users.find_user_by_email(email)
        if user is None or user.status is not UserStatus.ACTIVE:
            return
        token, mail = reset_mail(self._config(), user, now)
        async with self._storage.transaction() as tx:
            await tx.accounts.create_token(token)
            await tx.accounts.enqueue_mail(mail)
        self._on_mail()

    async def reset_password(self, token: str, new_password: str) -> None:
        """Set the password from a mailed token (once), and end every session of the user."""
        password_hash = await self._passwords.hash(new_password)
        now = self._clock()
        try:
            async with self._storage.transaction() as tx:
                used = await tx.accounts.use_token(
                    hash_token(token), TokenPurpose.RESET_PASSWORD, now
                )
                await tx.accounts.revoke_tokens(used.user_id, TokenPurpose.RESET_PASSWORD, now)
                user = await tx.users.get_user(used.user_id)
                # Reading the mail proves the address, too.
                await tx.users.update_user(
                    attrs.evolve(
                        user,
                        email_verified=True,
                        credentials=Credentials(password_hash=password_hash, changed_at=now),
                    )
                )
                revoked = await tx.users.revoke_user_sessions(used.user_id, now)
        except StorageNotFound:
            raise TokenRejected("the token is unknown, used or expired") from None
        await self._storage.accounts.clear_login_failures(f"account:{user.email}")
        await self._announce(used.user_id, revoked)

    async def _begin_attempt(self, keys: Sequence[LockoutKey], now: dt.datetime) -> None:
        """Count a password attempt (:class:`LoginLockout`), or refuse it with LoginLocked."""
        retry = await self._lockout.count_attempt(keys, now)
        if retry is not None:
            raise LoginLocked("too many failed logins; try again later", retry_after=retry)

    async def _check_password(self, user: User, password: str, field: str) -> None:
        """A password re-entered by a logged-in user: counted against the account's lockout
        like a login, so a stolen session cannot guess it either."""
        keys = [self._lockout.account_key(user.email)]
        now = self._clock()
        await self._begin_attempt(keys, now)
        if not await self._passwords.verify(user.credentials.password_hash, password):
            raise WrongPassword(
                f"the {field.replace('_', ' ')} is wrong",
                details={"fields": {field: "wrong password"}},
            )
        await self._lockout.succeeded(keys, now)

    async def change_password(
        self, user_id: str, session_hash: str | None, current: str, new: str
    ) -> None:
        """Change the password; every other session of the user ends."""
        user = await self._storage.users.get_user(user_id)
        await self._check_password(user, current, "current_password")
        password_hash = await self._passwords.hash(new)
        now = self._clock()
        async with self._storage.transaction() as tx:
            fresh = await tx.users.get_user(user_id)
            await tx.users.update_user(
                attrs.evolve(
                    fresh, credentials=Credentials(password_hash=password_hash, changed_at=now)
                )
            )
            revoked = await tx.users.revoke_user_sessions(user_id, now, keep=session_hash)
        await self._announce(user_id, revoked)

    async def delete_account(self, user_id: str, password: str) -> None:
        """Delete the user and everything keyed by it, after checking the password: its
        mails not sent yet go too, its nodes are disconnected and its live sockets closed."""
        user = await self._storage.users.get_user(user_id)
        await self._check_password(user, password, "password")
        now = self._clock()
        # Gone from the store first, so a node reconnecting meanwhile is refused as unknown;
        # then every instance closes the user's nodes and drops what they would still write.
        # A cancellation cannot separate the two.
        with store_and_announce():
            async with self._storage.transaction() as tx:
                revoked = await tx.users.revoke_user_sessions(user_id, now)
                mails = await tx.accounts.delete_pending_mail(user.email)
                await tx.users.delete_user(user_id)
            await self._nodes.disconnect_user(user_id)
            await self._announce(user_id, revoked)
            await self._events.account_closed(user_id)
        log.info("account deleted", user=user_id, mails_dropped=mails)

    # --- housekeeping ----------------------------------------------------------------------

    async def housekeeping(self) -> tuple[int, int]:
        """Drop expired sessions and failed logins older than the lockout window; how many of
        each went."""
        now = self._clock()
        window = dt.timedelta(seconds=self._config().accounts.lockout_seconds)
        sessions = await self._storage.users.delete_sessions_expired_before(now)
        failures = await self._storage.accounts.delete_login_failures_before(now - window)
        return sessions, failures

    async def run_housekeeping(
        self,
        *,
        interval: float = HOUSEKEEPING_INTERVAL,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        while True:
            await trio.sleep(interval)
            try:
                sessions, failures = await self.housekeeping()
            except GrassError as exc:
                log.warning("account housekeeping failed; retrying later", error=str(exc))
                continue
            if sessions or failures:
                log.info("account housekeeping", sessions=sessions, login_failures=failures)

"""Login lockout: password attempts counted per account and per address, and refused past their
limit within ``accounts.lockout_seconds`` (docs/security.md).

A key is a (failure key, limit) pair: ``account:<email>`` with ``max_failures_per_account``,
``ip:<address key>`` with ``max_failures_per_ip``. A limit of 0 or less counts without refusing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from grass.config import Config
from grass.domain.addresses import address_key
from grass.storage.accounts import AccountStore

#: A failure key and the most failures it may hold within the lockout window.
LockoutKey = tuple[str, int]


class LoginLockout:
    def __init__(self, failures: AccountStore, config: Callable[[], Config]) -> None:
        self._failures = failures
        self._config = config

    def account_key(self, email: str) -> LockoutKey:
        return (
            f"account:{email.strip().lower()}",
            self._config().accounts.max_failures_per_account,
        )

    def address_key(self, ip: str) -> LockoutKey:
        # IPv6 per /64: a host holds a whole /64, one address each try would dodge the count.
        return (f"ip:{address_key(ip)}", self._config().accounts.max_failures_per_ip)

    async def count_attempt(self, keys: Sequence[LockoutKey], now: dt.datetime) -> float | None:
        """Count a password attempt under each key; None when it may go on, else the seconds
        until it may be tried again (past a key's limit it is refused, and not counted).

        Every attempt is recorded as a failure before the lockout is checked, and taken back
        by :meth:`succeeded` if it was not one: attempts made at the same time count each
        other, so no more than the limit of them reach the password check, however many
        arrive at once."""
        failures = self._failures
        for key, _ in keys:
            await failures.add_login_failure(key, now)
        window = dt.timedelta(seconds=self._config().accounts.lockout_seconds)
        # A failure counts for ``window`` after it happened (a half-open interval).
        since = now - window + dt.timedelta(microseconds=1)
        for key, most in keys:
            if most <= 0:
                continue
            recent = await failures.login_failures(key, since, most + 1)
            if len(recent) > most:  # this attempt and ``most`` others
                for taken_back, _ in keys:
                    await failures.remove_login_failure(taken_back, now)
                return max((recent[most] + window - now).total_seconds(), 1.0)
        return None

    async def succeeded(self, keys: Sequence[LockoutKey], now: dt.datetime) -> None:
        """The password was right: the account's failures are forgotten (the first key), the
        attempt taken back from the other keys (an address's failures are other accounts' too)."""
        account, *others = keys
        await self._failures.clear_login_failures(account[0])
        for key, _ in others:
            await self._failures.remove_login_failure(key, now)

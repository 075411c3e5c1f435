"""Password hashing with argon2id (argon2-cffi), off the event loop.

A hash takes tens of milliseconds and ``argon2_memory_kib`` of memory: it runs in a worker
thread, at most ``MAX_PARALLEL`` at once, so logins never stall the other connections and a
burst of them cannot exhaust memory.
"""

from __future__ import annotations

import argon2
import trio
from argon2.exceptions import InvalidHashError, VerificationError

MAX_PARALLEL = 2


class Passwords:
    def __init__(self, *, time_cost: int, memory_kib: int) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=1,
            type=argon2.Type.ID,
        )
        self._limit = trio.CapacityLimiter(MAX_PARALLEL)
        # Verified against when the email is unknown, so that answer takes as long as a
        # wrong password (no account enumeration by timing).
        self._decoy = self._hasher.hash("decoy password")

    async def hash(self, password: str) -> str:
        return await trio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limit)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; with no hash (no such account) the same work is done
        against a decoy and the answer is False, so both answers take as long."""

        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._decoy, password)
            except (VerificationError, InvalidHashError):
                return False

        matched = await trio.to_thread.run_sync(check, limiter=self._limit)
        return matched and password_hash is not None

    async def decoy(self) -> None:
        """Exactly the work of one verification, for answers that must take as long as a
        password check whatever they find (a password-reset request)."""
        await self.verify(None, "")

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the configured ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

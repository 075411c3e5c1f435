"""The active bans, held in memory by every instance so that checking a connection costs no I/O.

Reloaded from storage when an operator changes a ban (every instance is told through the node
command channel) and every ``interval`` seconds as well, since pub/sub may drop a message.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from grass import logs
from grass.domain.admin import BanKind, BanList
from grass.storage.admin import BanStore

log = logs.get(__name__)


class BanGuard:
    def __init__(self, bans: BanStore, *, interval: Callable[[], float]) -> None:
        self._bans = bans
        self._interval = interval
        self.current = BanList()

    async def reload(self) -> None:
        ranges = await self._bans.ban_targets(BanKind.IP_RANGE)
        users = await self._bans.ban_targets(BanKind.USER)
        self.current = BanList(ranges, users)

    def banned_range(self, ip: str) -> str | None:
        return self.current.banned_range(ip)

    def user_banned(self, user_id: str) -> bool:
        return user_id in self.current.users

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load, report ready, then reload every interval (a failure keeps the last list)."""
        await self.reload()
        task_status.started()
        while True:
            await trio.sleep(self._interval())
            try:
                await self.reload()
            except Exception as exc:
                log.warning("ban list reload failed; keeping the last one", error=str(exc))

"""Building blocks for HTTP tests: a guard over a user store, and test-client calls."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from grass.config import LimitsConfig
from grass.http.api import Guard
from grass.services.authentication import Authenticator
from grass.storage.inprocess import InProcessLimiter
from grass.storage.users import UserStore


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def guard_for(
    users: UserStore,
    *,
    limits: LimitsConfig | None = None,
    clock: Callable[[], dt.datetime] = utc_now,
) -> Guard:
    chosen = limits or LimitsConfig()
    return Guard(
        authenticator=Authenticator(users, clock),
        limiter=InProcessLimiter(),
        limits=lambda: chosen,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}

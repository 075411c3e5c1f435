"""The whole HTTP app as ``grass serve`` builds it (grass.app.build_http_app), on memory
backends, and a small world of principals to call it as.

``open_full_app`` is what the OpenAPI and authorization-matrix tests use, so every route wired
into build_http_app is covered by them automatically.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import argon2
import attrs
import pytest

from grass.app import HttpApp, build_http_app
from grass.backends import Backends, open_backends, store_of
from grass.config import Config
from grass.domain.bearer import hash_token, new_api_key, new_node_key, new_session_token
from grass.domain.users import ApiKey, ApiScope, Credentials, NodeKey, Role, Session, User
from grass.ids import short_id
from grass.ledger.abc import Ledger
from grass.ledger.memory import open_memory_ledger
from grass.metrics import Metrics
from grass.nodes.gateway import Gateway
from grass.running import RunningConfig
from grass.storage.abc import Storage
from grass.storage.inprocess import open_inprocess_state
from grass.storage.shared_state import SharedState
from grass.wiring import Services, build_services


def quick_config(**sections: dict[str, Any]) -> Config:
    """Defaults, with cheap password hashing and rate limits off unless a test sets them."""
    base = Config()
    config = attrs.evolve(
        base,
        limits=attrs.evolve(base.limits, auth_requests_per_minute=0, api_requests_per_minute=0),
        accounts=attrs.evolve(base.accounts, argon2_time_cost=1, argon2_memory_kib=1024),
    )
    for name, values in sections.items():
        config = attrs.evolve(config, **{name: attrs.evolve(getattr(config, name), **values)})
    return config


@attrs.frozen
class FullApp:
    app: Any
    storage: Storage
    running: RunningConfig
    ledger: Ledger | None = None
    gateway: Gateway | None = None
    shared: SharedState | None = None
    services: Services | None = None
    http: HttpApp | None = None

    def client(self) -> Any:
        return self.app.test_client()


@asynccontextmanager
async def open_full_app(
    config: Config | None = None, *, storage: Storage | None = None
) -> AsyncIterator[FullApp]:
    """The app on the backends ``config`` names, or on ``storage`` (already open: the
    PostgreSQL test schema) with in-process shared state and a memory ledger."""
    config = config or quick_config()
    running = RunningConfig(config)
    async with AsyncExitStack() as stack:
        if storage is None:
            backends = await stack.enter_async_context(open_backends(config))
        else:
            shared = await stack.enter_async_context(open_inprocess_state())
            ledger = await stack.enter_async_context(open_memory_ledger())
            backends = Backends(config, store_of(storage), shared, ledger)
        services = build_services(backends, running, Metrics())
        http = build_http_app(backends, services)
        yield FullApp(
            http.app,
            backends.storage,
            running,
            backends.ledger,
            services.gateway,
            backends.shared,
            services,
            http,
        )


@pytest.fixture
async def full_app() -> AsyncIterator[FullApp]:
    async with open_full_app() as opened:
        yield opened


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: Every actor's password (hashed with the cheap test parameters of ``quick_config``).
PASSWORD = "correct horse battery"
_HASH = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)


@attrs.frozen
class Actor:
    """A user (password :data:`PASSWORD`, email not yet verified) with a live session token
    and an API key holding every scope."""

    user: User
    session_token: str
    api_key: str
    api_key_id: str

    @property
    def session_hash(self) -> str:
        return hash_token(self.session_token)

    @property
    def id(self) -> str:
        return self.user.id


async def make_actor(
    storage: Storage, *, role: Role = Role.USER, email: str | None = None
) -> Actor:
    at = now()
    user = User(
        id=short_id(),
        email=email or f"{short_id(8).lower().replace('-', 'x').replace('_', 'y')}@example.com",
        role=role,
        referral_code=short_id(10),
        credentials=Credentials(password_hash=_HASH, changed_at=at),
        created_at=at,
    )
    await storage.users.create_user(user)
    session_token = new_session_token()
    await storage.users.create_session(
        Session(
            token_hash=hash_token(session_token),
            user_id=user.id,
            created_at=at,
            expires_at=at + dt.timedelta(days=1),
        )
    )
    key, key_id = new_api_key(), short_id()
    await storage.users.create_api_key(
        ApiKey(
            id=key_id,
            user_id=user.id,
            name="all scopes",
            key_hash=hash_token(key),
            prefix=key[:8],
            scopes=frozenset(ApiScope),
            created_at=at,
        )
    )
    return Actor(user, session_token, key, key_id)


async def node_key_for(storage: Storage, user: User) -> str:
    """A node key of ``user``: what its nodes send where Grass clients send the user id."""
    secret = new_node_key()
    await storage.node_keys.create_node_key(
        NodeKey(
            id=short_id(),
            user_id=user.id,
            name="test nodes",
            key_hash=hash_token(secret),
            prefix=secret[:10],
            created_at=now(),
        )
    )
    return secret

"""The authorization matrix: every declared route x anonymous, the owner, another user, the
owner's API key, an admin, and the callers that must be refused whatever the route: a key of
the owner without the route's scope, a revoked session, a banned user's live session.

Cases live in tests/http/matrix/cases_*.py (see its docstring for the rules). The app is the
one ``grass serve`` builds, so routes added to grass.app.build_http_app are checked here. The
owner also has a device (so the network lists have something of theirs): whatever another
user gets from an authenticated route never names the owner's ids, email or tokens.
"""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from grass.domain.bearer import hash_token, new_api_key, new_session_token
from grass.domain.devices import Device, DeviceType
from grass.domain.users import ApiKey, ApiScope, Role, Session, UserStatus
from grass.http.api import Route, api_of
from grass.http.auth import Access
from grass.ids import new_uuid, short_id
from tests.http.conftest import Actor, FullApp, make_actor, open_full_app
from tests.http.helpers import bearer
from tests.http.matrix import Case, World, all_cases
from tests.storage.conftest import BACKENDS, pg_storage_schema  # noqa: F401

open_pg_storage = BACKENDS["postgres"]

CALLERS = (
    "anonymous",
    "owner",
    "other",
    "api_key",
    "admin",
    "narrow_key",
    "revoked",
    "banned",
)
#: The error code each refused caller gets on a route that needs authentication.
REFUSALS = {
    "anonymous": "unauthenticated",
    "revoked": "invalid_token",
    "banned": "account_inactive",
}


async def declared_routes() -> list[Route]:
    async with open_full_app() as full:
        return list(api_of(full.app).routes)


def expected(route: Route, case: Case, caller: str) -> int:
    ok = case.status or route.status
    policy = route.policy
    if caller in ("anonymous", "revoked"):
        return 401 if policy.needs_auth else ok
    if caller in ("banned", "narrow_key"):
        return 403 if policy.needs_auth else ok
    if caller == "owner":
        # The owner is a plain user: admin routes refuse it like any other user.
        return 403 if policy.access is Access.ADMIN else ok
    if caller == "api_key":
        if not policy.needs_auth:
            return ok
        return ok if policy.access is Access.USER and policy.api_scopes else 403
    if policy.access is Access.ADMIN:
        return ok if caller == "admin" else 403
    return 404 if case.owned else ok


async def test_every_route_has_a_case_and_every_case_a_route():
    names = {route.name for route in await declared_routes()}
    cases = set(all_cases())
    assert names - cases == set(), "routes without a matrix case (add them in tests/http/matrix/)"
    assert cases - names == set(), "matrix cases naming no route"


def _matrix() -> list[tuple[str, str]]:
    # Collected from the cases (the app is built per test); the test above pins cases == routes.
    return [(name, caller) for name in sorted(all_cases()) for caller in CALLERS]


async def narrow_key(full: FullApp, owner: Actor, route: Route) -> str:
    """An API key of the owner holding every scope but the route's (any scope, for a route
    that takes no key at all)."""
    scopes = frozenset(ApiScope) - route.policy.api_scopes or frozenset({ApiScope.STATS_READ})
    key = new_api_key()
    await full.storage.users.create_api_key(
        ApiKey(
            id=short_id(),
            user_id=owner.id,
            name="narrow",
            key_hash=hash_token(key),
            prefix=key[:8],
            scopes=scopes,
            created_at=dt.datetime.now(dt.UTC),
        )
    )
    return key


async def revoked_session(full: FullApp, owner: Actor) -> str:
    token, at = new_session_token(), dt.datetime.now(dt.UTC)
    session = Session(
        token_hash=hash_token(token),
        user_id=owner.id,
        created_at=at,
        expires_at=at + dt.timedelta(days=1),
    )
    await full.storage.users.create_session(session)
    await full.storage.users.revoke_session(session.token_hash, at)
    return token


async def banned_session(full: FullApp) -> str:
    banned = await make_actor(full.storage)
    await full.storage.users.update_user(attrs.evolve(banned.user, status=UserStatus.BANNED))
    return banned.session_token


async def owner_device(full: FullApp, owner: Actor) -> str:
    at = dt.datetime.now(dt.UTC)
    device = Device(
        device_id=new_uuid(),
        user_id=owner.id,
        type=DeviceType.DESKTOP,
        ip="198.51.100.77",
        first_seen=at,
        last_seen=at,
    )
    await full.storage.devices.create_device(device)
    return device.device_id


async def bearer_of(full: FullApp, world: World, route: Route, caller: str) -> dict[str, str]:
    if caller == "anonymous":
        return {}
    token = {
        "owner": lambda: world.owner.session_token,
        "other": lambda: world.other.session_token,
        "api_key": lambda: world.owner.api_key,
        "admin": lambda: world.admin.session_token,
    }.get(caller)
    if token is not None:
        return bearer(token())
    if caller == "narrow_key":
        return bearer(await narrow_key(full, world.owner, route))
    if caller == "revoked":
        return bearer(await revoked_session(full, world.owner))
    return bearer(await banned_session(full))


def owners_marks(world: World, device_id: str) -> list[str]:
    """What must never show in another user's replies."""
    owner = world.owner
    return [
        owner.id,
        owner.user.email,
        owner.session_token,
        owner.session_hash,
        owner.api_key,
        owner.api_key_id,
        device_id,
    ]


@pytest.mark.parametrize(("route_name", "caller"), _matrix())
async def test_authorization_matrix(route_name: str, caller: str):
    async with open_full_app() as full:
        await check(full, route_name, caller)


#: On PostgreSQL: the callers whose answers depend on what the store holds.
PG_CALLERS = ("owner", "other", "admin")


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("route_name", "caller"), [(n, c) for n in sorted(all_cases()) for c in PG_CALLERS]
)
async def test_authorization_matrix_on_postgresql(request, route_name: str, caller: str):
    async with open_pg_storage(request) as storage, open_full_app(storage=storage) as full:
        await check(full, route_name, caller)


async def check(full: FullApp, route_name: str, caller: str) -> None:
    route = next(r for r in api_of(full.app).routes if r.name == route_name)
    world = World(
        full,
        owner=await make_actor(full.storage),
        other=await make_actor(full.storage),
        admin=await make_actor(full.storage, role=Role.ADMIN),
    )
    device_id = await owner_device(full, world.owner)
    case = all_cases()[route_name]
    call = await case.prepare(world)
    headers = await bearer_of(full, world, route, caller)
    client = full.client()
    response = await client.open(
        call.path,
        method=route.method,
        json=call.json,
        query_string=call.query or None,
        headers=headers,
        scope_base={"client": ("127.0.0.1", 40000)},
    )
    want = expected(route, case, caller)
    text = (await response.get_data()).decode(errors="replace")
    where = f"{route.method} {route.path} as {caller}"
    assert response.status_code == want, f"{where}: {text[:300]}"
    if want >= 400 and route.policy.needs_auth:
        code = (await response.get_json())["error"]["code"]
        if caller in REFUSALS:
            assert code == REFUSALS[caller], where
        elif caller == "narrow_key":
            taken = route.policy.access is Access.USER and route.policy.api_scopes
            assert code == ("insufficient_scope" if taken else "api_key_not_allowed"), where
    if caller == "other" and route.policy.needs_auth and response.status_code < 300:
        leaked = [mark for mark in owners_marks(world, device_id) if mark in text]
        assert leaked == [], f"{where} shows the owner's {leaked}"

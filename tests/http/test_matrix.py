"""The authorization matrix: every declared route x anonymous, the owner, another user, the
owner's API key and an admin, with the status each must get from the route's policy.

Cases live in tests/http/matrix/cases_*.py (see its docstring for the rules). The app is the
one ``grass serve`` builds, so routes added to grass.app.build_http_app are checked here.
"""

from __future__ import annotations

import pytest

from grass.domain.users import Role
from grass.http.api import Route, api_of
from grass.http.auth import Access
from tests.http.conftest import make_actor, open_full_app
from tests.http.helpers import bearer
from tests.http.matrix import Case, World, all_cases

CALLERS = ("anonymous", "owner", "other", "api_key", "admin")


async def declared_routes() -> list[Route]:
    async with open_full_app() as full:
        return list(api_of(full.app).routes)


def expected(route: Route, case: Case, caller: str) -> int:
    ok = case.status or route.status
    policy = route.policy
    if caller == "anonymous":
        return 401 if policy.needs_auth else ok
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


@pytest.mark.parametrize(("route_name", "caller"), _matrix())
async def test_authorization_matrix(route_name: str, caller: str):
    async with open_full_app() as full:
        route = next(r for r in api_of(full.app).routes if r.name == route_name)
        world = World(
            full,
            owner=await make_actor(full.storage),
            other=await make_actor(full.storage),
            admin=await make_actor(full.storage, role=Role.ADMIN),
        )
        case = all_cases()[route_name]
        call = await case.prepare(world)
        headers = {
            "anonymous": {},
            "owner": bearer(world.owner.session_token),
            "other": bearer(world.other.session_token),
            "api_key": bearer(world.owner.api_key),
            "admin": bearer(world.admin.session_token),
        }[caller]
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
        text = (await response.get_data()).decode(errors="replace")[:300]
        assert response.status_code == want, f"{route.method} {route.path} as {caller}: {text}"

"""Resource classes: ``@route`` declares methods, ``Api.add_resource`` registers them bound to
the instance, in definition order, through the same path as ``Api.route``."""

from __future__ import annotations

import attrs
import pytest

from grass.http.api import Call, Declaration, api_of, declared_routes, route
from grass.http.app import create_app
from grass.http.auth import ANONYMOUS, USER
from grass.metrics import Metrics
from grass.storage.memory import MemoryStorage
from tests.http.helpers import guard_for


@attrs.frozen(kw_only=True)
class Count:
    count: int


class Counter:
    def __init__(self, start: int) -> None:
        self.count = start

    @route("POST", "/count", summary="add one", tag="t", auth=ANONYMOUS, response=Count)
    async def add_one(self, call: Call) -> Count:
        self.count += 1
        return Count(count=self.count)

    def helper(self) -> int:  # not declared: not a route
        return self.count

    @route("GET", "/count", summary="read", tag="t", auth=ANONYMOUS, response=Count, name="read")
    async def read_count(self, call: Call) -> Count:
        return Count(count=self.count)

    @route("DELETE", "/count", summary="reset", tag="t", auth=USER)
    async def reset(self, call: Call) -> None:
        self.count = 0


async def ready() -> dict[str, str]:
    return {}


def new_app():
    storage = MemoryStorage()
    return create_app(metrics=Metrics(), readiness=ready, guard=guard_for(storage.users))


async def test_declared_methods_are_routes_bound_to_the_instance():
    app = new_app()
    api = api_of(app)
    before = len(api.routes)
    api.add_resource(Counter(start=41))
    added = api.routes[before:]
    # Definition order, the method's name unless name= says otherwise, options as api.route.
    assert [(r.method, r.path, r.name) for r in added] == [
        ("POST", "/count", "add_one"),
        ("GET", "/count", "read"),
        ("DELETE", "/count", "reset"),
    ]
    assert [r.status for r in added] == [200, 200, 204]
    assert added[2].policy is USER
    client = app.test_client()
    assert await (await client.post("/count")).get_json() == {"count": 42}
    assert await (await client.get("/count")).get_json() == {"count": 42}


def test_the_decorator_only_records_the_declaration():
    declaration = Counter.read_count.__grass_route__  # type: ignore[attr-defined]
    assert declaration == Declaration(
        method="GET",
        path="/count",
        summary="read",
        tag="t",
        auth=ANONYMOUS,
        options={"response": Count, "name": "read"},
    )


async def test_a_handler_is_a_method_that_can_be_called_alone():
    counter = Counter(start=1)
    call = Call(principal=None, path={}, query=None, body=None, ip="", user_agent=None)
    assert await counter.add_one(call) == Count(count=2)


def test_a_subclass_keeps_the_order_and_may_override_or_add():
    class Bigger(Counter):
        @route("POST", "/count", summary="add two", tag="t", auth=ANONYMOUS, response=Count)
        async def add_one(self, call: Call) -> Count:
            self.count += 2
            return Count(count=self.count)

        @route("GET", "/count/twice", summary="twice", tag="t", auth=ANONYMOUS, response=Count)
        async def twice(self, call: Call) -> Count:
            return Count(count=2 * self.count)

    bigger = Bigger(start=0)
    found = declared_routes(bigger)
    assert [handler.__name__ for _, handler in found] == ["add_one", "read_count", "reset", "twice"]
    assert found[0][0].summary == "add two"
    assert found[0][1].__self__ is bigger  # type: ignore[attr-defined]


def test_a_class_without_routes_is_refused():
    with pytest.raises(ValueError, match="declares no routes"):
        api_of(new_app()).add_resource(object())


def test_a_method_declared_twice_is_refused():
    with pytest.raises(ValueError, match="declared as a route twice"):

        class Twice:
            @route("GET", "/a", summary="a", tag="t", auth=ANONYMOUS)
            @route("GET", "/b", summary="b", tag="t", auth=ANONYMOUS)
            async def both(self, call: Call) -> None:
                return None


def test_two_resources_with_one_route_name_are_refused():
    api = api_of(new_app())
    api.add_resource(Counter(start=0))
    with pytest.raises(ValueError, match="two routes named 'add_one'"):
        api.add_resource(Counter(start=0))

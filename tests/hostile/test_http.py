"""Campaign 1: every route of the HTTP API under hostile bodies, query strings, path segments
and headers, anonymous and signed in, on the whole server over loopback (``grass.app.run``).

Complements tests/http/test_schemathesis.py, which plays schema-shaped data through the
OpenAPI document: here the data is what the schema forbids or cannot describe (JSON nested
thousands deep, 1e400 and five thousand digits, duplicate keys, invalid UTF-8, NUL and control
characters, bodies at the 1 MiB cap, wrong types and unknown fields everywhere).

Every reply must be below 500, and every 4xx the project's error shape; meanwhile the canary
(tests/hostile/campaign.py) keeps its latency. Lone surrogates are played apart
(``test_lone_surrogates_never_fail_a_route``): today they are #13 finding 2. Nesting deeper than
``strategies.SAFE_DEPTH`` kills the process (#13 finding 1) and is played against a subprocess
in test_depth.py.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import attrs
import h11
import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from grass.domain.users import Role
from grass.http.api import Route, api_of
from grass.http.openapi import MAX_BODY_BYTES
from tests.hostile import strategies as hs
from tests.hostile.campaign import World, count, hostile_settings, open_world
from tests.http.conftest import Actor, open_full_app

pytestmark = pytest.mark.slow

#: Routes whose success ends the caller's session (or account): the actor is replaced after.
SESSION_ENDERS = frozenset({"logout", "revoke_session", "delete_me", "change_password"})
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
AUTH_MODES = ("anonymous", "session", "admin", "api_key", "garbage")


async def declared_routes(world: World) -> list[Route]:
    """Every route of the app, from its route table, checked against /openapi.json: a route
    the document lists and the table does not would escape the campaign."""
    async with open_full_app() as full:  # the same declarations as the running server's
        routes = list(api_of(full.app).routes)
    async with httpx.AsyncClient(base_url=world.http_url) as client:
        document = (await client.get("/openapi.json")).json()
    declared = {(r.method.lower(), r.openapi_path) for r in routes}
    documented = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert documented <= declared, documented - declared
    return routes


def _fields(kind: type[Any] | None) -> list[str]:
    return [f.name for f in attrs.fields(kind)] if kind is not None and attrs.has(kind) else []


class Case:
    """One hostile request (a plain class: hypothesis prints it with this __repr__)."""

    def __init__(
        self,
        route: Route,
        method: str,
        path: str,
        query: str,
        body: bytes | None,
        auth: str,
        headers: dict[str, str],
    ) -> None:
        self.route, self.method, self.path, self.query = route, method, path, query
        self.body, self.auth, self.headers = body, auth, headers

    def __repr__(self) -> str:  # what a failure prints: bodies can be a mebibyte
        body = None if self.body is None else self.body[:300]
        return (
            f"Case({self.method} {self.path}?{self.query[:300]} auth={self.auth} "
            f"headers={self.headers} body[:300]={body!r} ({len(self.body or b'')} bytes))"
        )


def _case(
    route: Route,
    segments: list[str],
    query: str,
    body: bytes | None,
    method: str,
    auth: str,
    headers: dict[str, str],
) -> Case:
    path = route.path
    for name, segment in zip(route.path_params, segments, strict=True):
        path = path.replace(f"<{name}>", segment).replace(f"<int:{name}>", segment)
    return Case(route, method or route.method, path, query, body, auth, headers)


def route_cases(route: Route, *, surrogates: bool) -> st.SearchStrategy[Case]:
    """Hostile requests for one route (strategies built once per route: see strategies.py)."""
    fields = tuple(_fields(route.body))
    body = hs.bodies(fields, surrogates=surrogates)
    if route.body is None:  # a body where none is expected, now and then
        body = st.integers(0, 4).flatmap(lambda n: body if n == 0 else st.none())
    return st.builds(
        _case,
        st.just(route),
        st.lists(
            hs.path_segments(surrogates=surrogates),
            min_size=len(route.path_params),
            max_size=len(route.path_params),
        ),
        hs.query_strings(tuple(_fields(route.query)), surrogates=surrogates) | st.just(""),
        body,
        st.integers(0, 9).flatmap(lambda n: st.sampled_from(METHODS) if n == 0 else st.just("")),
        st.sampled_from(AUTH_MODES),
        hs.EXTRA_HEADERS,
    )


def cases(routes: list[Route], *, surrogates: bool = False) -> st.SearchStrategy[Case]:
    return st.one_of([route_cases(route, surrogates=surrogates) for route in routes])


@attrs.define
class Callers:
    """The hostile accounts' credentials; replaced when a case ends them."""

    world: World
    user: Actor
    admin: Actor

    def header(self, mode: str) -> dict[str, str]:
        token = {
            "session": self.user.session_token,
            "admin": self.admin.session_token,
            "api_key": self.user.api_key,
            "garbage": "gs_" + "A" * 43,
        }.get(mode)
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    async def renew(self, mode: str) -> None:
        if mode == "admin":
            self.admin = await self.world.new_actor(Role.ADMIN)
        else:
            self.user = await self.world.new_actor()


def check_reply(case: Case, reply: httpx.Response) -> None:
    """Below 500; a 4xx is ``{"error": {"code", "message", "details"}}`` (a 422 names its
    fields); a JSON success is JSON."""
    status = reply.status_code
    assert status < 500, f"{status} for {case!r}: {reply.text[:500]}"
    content_type = reply.headers.get("content-type", "")
    if status >= 400:
        assert content_type.startswith("application/json"), (status, content_type, case)
        body = json.loads(reply.content)
        assert set(body) == {"error"}, (body, case)
        error = body["error"]
        assert set(error) == {"code", "message", "details"}, (error, case)
        assert isinstance(error["code"], str), (error, case)
        assert error["code"], (error, case)
        assert isinstance(error["message"], str), (error, case)
        assert isinstance(error["details"], dict), (error, case)
        if status == 422:
            assert isinstance(error["details"].get("fields"), dict), (error, case)
    elif reply.content and content_type.startswith("application/json"):
        json.loads(reply.content.decode("utf-8"))


async def request_alone(
    client: httpx.AsyncClient, method: str, url: str, body: bytes, headers: dict[str, bytes]
) -> httpx.Response:
    """One request on a connection of its own, through h11 on a trio stream: the server may
    answer (413) before the body is sent, which httpx reports as a leaked stream."""
    port = client.base_url.port
    assert port is not None
    connection = h11.Connection(h11.CLIENT)
    head = [("Host", "127.0.0.1"), ("Content-Length", str(len(body))), ("Connection", "close")]
    request = h11.Request(method=method, target=url, headers=[*head, *headers.items()])
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        with trio.fail_after(30):
            # The server may answer and close before the body is all sent.
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(
                    connection.send(request) + connection.send(h11.Data(data=body))
                )
            status, content, reply_headers = 0, b"", []
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    status, reply_headers = event.status_code, list(event.headers)
                elif isinstance(event, h11.Data):
                    content += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
    return httpx.Response(status, headers=reply_headers, content=content)


async def play(client: httpx.AsyncClient, callers: Callers, case: Case) -> None:
    # Latin-1 bytes: httpx would encode a str value as ASCII and refuse the rest.
    headers = {
        k: v.encode("latin-1") for k, v in {**case.headers, **callers.header(case.auth)}.items()
    }
    url = case.path + (f"?{case.query}" if case.query else "")
    if len(case.body or b"") > MAX_BODY_BYTES:
        # A connection that carried a body over the cap stays stuck after its 413 (a new
        # finding, test_a_body_over_the_cap_leaves_its_connection_usable): one of its own.
        reply = await request_alone(client, case.method, url, case.body or b"", headers)
    else:
        reply = await client.request(case.method, url, content=case.body, headers=headers)
    check_reply(case, reply)
    if case.route.name in SESSION_ENDERS and reply.status_code < 300 and case.auth != "api_key":
        await callers.renew(case.auth)


async def campaign(world: World, max_examples: int, *, surrogates: bool) -> None:
    routes = await declared_routes(world)
    callers = Callers(world, world.user, world.admin)
    async with httpx.AsyncClient(base_url=world.http_url, timeout=30) as client:

        @hostile_settings(max_examples)
        @given(case=cases(routes, surrogates=surrogates))
        def examples(case: Case) -> None:
            world.play(play, client, callers, case)
            count(world.campaign)

        await world.drive(examples)


async def test_every_route_survives_hostile_requests():
    async with open_world("http") as world:
        await campaign(world, 1600, surrogates=False)


async def test_lone_surrogates_never_fail_a_route():
    async with open_world("http") as world:
        await campaign(world, 300, surrogates=True)


async def _answers_after_413(port: int, body_size: int) -> bytes:
    """A body over the cap and a second request behind it, in one write: what the server sent
    within 3 s of its 413, and b"EOF" if it hung up."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    head = b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % body_size
    second = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    received = b""

    async def send() -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(head + b"x" * body_size + second)

    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(send)
        with trio.fail_after(20):
            while b" 413 " not in received:
                received += await stream.receive_some(65536)
        with trio.move_on_after(3):
            while chunk := await stream.receive_some(65536):
                received += chunk
                if b" 200 " in received:
                    break
            else:
                received += b"EOF"
        nursery.cancel_scope.cancel()
    return received


async def test_a_body_over_the_cap_leaves_its_connection_usable():
    """Found by this campaign: hypercorn blocked handing the unread body to the finished app
    (grass.http.drain). Whether the body reaches hypercorn before or after the app answered is
    a race; eight connections at once made the stall all but certain on one of them."""
    replies: list[bytes] = []

    async def one(port: int) -> None:
        replies.append(await _answers_after_413(port, 4 * MAX_BODY_BYTES))

    async with open_world("http") as world, trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(one, world.server.http_port)
    count("http", len(replies))
    for received in replies:
        assert b" 413 " in received
        assert received.endswith(b"EOF") or b" 200 " in received, received[-300:]

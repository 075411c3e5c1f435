"""Authorization-matrix cases, one module per resource (``cases_<resource>.py``).

Each module defines ``CASES: dict[str, Case]`` keyed by route name (the handler's name, or the
``name=`` given to ``api.route``). test_matrix.py imports every module of this package, so a
new module needs no registration anywhere; a declared route without a case fails the test.

A case says how to call its route successfully as the *owner* (a user with a session and an
API key holding every scope), given a fresh :class:`World`. The expected status for every
other caller follows from the route's policy and from ``owned``:

==============  ==========================================================================
caller          expected
==============  ==========================================================================
anonymous       401 when the policy needs auth, else the success status
owner session   the success status
other user      403 on admin routes; 404 when ``owned`` (the path names the owner's object);
                else the success status
owner API key   the success status when the policy accepts a key scope, else 403
admin session   the success status on admin routes; 404 when ``owned``; else success
==============  ==========================================================================
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from grass.storage.abc import Storage
from tests.http.conftest import Actor, FullApp


@attrs.frozen
class World:
    """A fresh app with three users: the owner, another user, and an admin."""

    full: FullApp
    owner: Actor
    other: Actor
    admin: Actor

    @property
    def storage(self) -> Storage:
        return self.full.storage


@attrs.frozen(kw_only=True)
class Request:
    """The call to make: the path with its parameters filled in, and the inputs."""

    path: str
    json: Any = None
    query: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Case:
    prepare: Callable[[World], Awaitable[Request]]
    #: The path names an object of the owner: others get 404, never 403 or the object.
    owned: bool = False
    #: The success status, when it is not the route's declared one.
    status: int | None = None


def static(path: str, *, json: Any = None, owned: bool = False, status: int | None = None) -> Case:
    """A case needing no preparation."""

    async def prepare(world: World) -> Request:
        return Request(path=path, json=json)

    return Case(prepare=prepare, owned=owned, status=status)


def all_cases() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name, case in getattr(module, "CASES", {}).items():
            if name in cases:
                raise AssertionError(f"two matrix cases for route {name!r}")
            cases[name] = case
    return cases

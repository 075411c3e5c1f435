"""Who may call a route: policies, checked against the caller before the handler runs.

The caller (a :class:`~grass.services.authentication.Principal`) comes from the bearer token,
resolved by grass.services.authentication. A route's policy says whether it needs one, whether
API keys (and which scopes) are accepted, and whether only admins may call it. Object-level
checks (a user sees only their own objects, 404 otherwise) are the handler's, through
:func:`owned`.
"""

from __future__ import annotations

import enum

import attrs

from grass.domain.users import ApiScope
from grass.errors import Forbidden, NotFound, Unauthenticated
from grass.services.admin import NotAdmin
from grass.services.authentication import Principal

__all__ = [
    "ADMIN",
    "ANONYMOUS",
    "USER",
    "Access",
    "Policy",
    "authorize",
    "owned",
    "user_or_key",
]


class Access(enum.StrEnum):
    ANONYMOUS = "anonymous"  # anyone; a valid bearer is still resolved (logout needs it)
    USER = "user"  # a session (or an API key with a listed scope)
    ADMIN = "admin"  # a session of a user whose role is admin


@attrs.frozen
class Policy:
    """Who may call a route."""

    access: Access
    #: API keys with any of these scopes are accepted too (read routes only).
    api_scopes: frozenset[ApiScope] = frozenset()

    @property
    def needs_auth(self) -> bool:
        return self.access is not Access.ANONYMOUS

    def describe(self) -> str:
        if self.access is Access.ANONYMOUS:
            return "No authentication."
        if self.access is Access.ADMIN:
            return "A session of an admin."
        if self.api_scopes:
            scopes = ", ".join(sorted(self.api_scopes))
            return f"A session, or an API key with scope {scopes}."
        return "A session (API keys are refused)."


ANONYMOUS = Policy(Access.ANONYMOUS)
USER = Policy(Access.USER)
ADMIN = Policy(Access.ADMIN)


def user_or_key(*scopes: ApiScope) -> Policy:
    """A session, or an API key holding one of ``scopes``."""
    if not scopes:
        raise ValueError("name at least one scope")
    return Policy(Access.USER, frozenset(scopes))


class ApiKeyRefused(Forbidden):
    code = "api_key_not_allowed"


class ScopeMissing(Forbidden):
    code = "insufficient_scope"


def authorize(policy: Policy, principal: Principal | None) -> None:
    """Raise 401 or 403 unless ``principal`` may call a route with ``policy``."""
    if not policy.needs_auth:
        return
    if principal is None:
        raise Unauthenticated("authentication required: send Authorization: Bearer <token>")
    if principal.api_key is not None:
        if policy.access is Access.ADMIN or not policy.api_scopes:
            raise ApiKeyRefused("this route does not accept API keys; use a session")
        if not policy.api_scopes & principal.api_key.scopes:
            needed = ", ".join(sorted(policy.api_scopes))
            raise ScopeMissing(f"the API key needs one of the scopes: {needed}")
    if policy.access is Access.ADMIN and not principal.is_admin:
        raise NotAdmin("admins only")


def owned(owner_id: str, principal: Principal, what: str = "object") -> None:
    """Object-level authorization: another user's object is reported as missing (404), so ids
    of others' objects cannot even be probed."""
    if owner_id != principal.user_id:
        raise NotFound(f"no such {what}")

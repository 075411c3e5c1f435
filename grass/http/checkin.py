"""``POST /checkin``: the v5 check-in (architecture §4).

Body ``{browserId, userId, version, extensionId, userAgent, deviceType}`` (extra keys tolerated,
as on the node socket) -> 201 ``{destinations: ["host:port"], token}``. ``userId`` carries one of
the user's node keys (grass.services.node_keys); a bare user id is proof only while
``node.allow_legacy_auth`` is on. The token is bound to the user, the device and the caller's IP
address; the node presents it as ``?token=`` on the WebSocket URL. Errors are
``{"error": {...}}`` through grass.errors: 400 malformed body, 422 a field that breaks its rule,
401 an unknown or revoked key (or user), or a bare user id without legacy auth, 403 an
extension id outside the allowlist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import attrs
import cattrs
from quart import request

from grass.domain.devices import DeviceType
from grass.errors import Forbidden, InvalidInput, ValidationFailed
from grass.http import schema as s
from grass.http.api import Call, route
from grass.http.auth import ANONYMOUS
from grass.ids import is_uuid
from grass.running import RunningConfig
from grass.services.node_keys import (
    NodeKeyRequired,
    NodeStores,
    UnknownNodeKey,
    UnknownUser,
    identify_node,
)

__all__ = ["CheckinRoutes", "ExtensionNotAllowed", "UnknownUser", "parse_checkin"]


class CheckinGateway(Protocol):
    """What the check-in needs from the node gateway (grass.nodes.gateway.Gateway has it)."""

    def issue_token(self, user_id: str, device_id: str, ip: str) -> str: ...


_UUID_ANY_CASE = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


@attrs.frozen(kw_only=True)
class CheckinRequest:
    """A v5 node's check-in; later clients add keys, which are tolerated."""

    ALLOWS_EXTRA_KEYS: ClassVar[bool] = True

    browserId: str = s.text(max_length=36, pattern=_UUID_ANY_CASE)  # the wire names of Grass
    #: A node key (``gn_...``), or with legacy auth on, the user id.
    userId: str = s.text(max_length=64)
    version: str = s.text(max_length=64)
    deviceType: str = attrs.field(metadata={s.SCHEMA: {"enum": [t.value for t in DeviceType]}})
    extensionId: str | None = s.text(max_length=128, optional=True, default=None)
    userAgent: str | None = s.text(max_length=512, optional=True, default=None)


@attrs.frozen(kw_only=True)
class CheckinReply:
    destinations: list[str]
    token: str


_converter = cattrs.Converter(forbid_extra_keys=False)


def _strict_str(value: Any, _: Any) -> str:
    if type(value) is not str:
        raise TypeError("expected a string")
    return value


_converter.register_structure_hook(str, _strict_str)


class ExtensionNotAllowed(Forbidden):
    code = "extension_not_allowed"


def parse_checkin(body: Any) -> CheckinRequest:
    if type(body) is not dict:
        raise InvalidInput("the body must be a JSON object")
    try:
        checkin = _converter.structure(body, CheckinRequest)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        fields = s.field_problems(exc) or {"body": str(exc)}
        summary = "; ".join(f"{k}: {v}" for k, v in fields.items())
        raise ValidationFailed(f"invalid check-in: {summary}", details={"fields": fields}) from None
    device_id = checkin.browserId.lower()
    if not is_uuid(device_id):
        raise ValidationFailed(
            "browserId must be a UUID", details={"fields": {"browserId": "must be a UUID"}}
        )
    if checkin.deviceType not in DeviceType._value2member_map_:
        expected = " | ".join(DeviceType)
        raise ValidationFailed(
            f"unknown deviceType; expected {expected}",
            details={"fields": {"deviceType": f"must be one of {expected}"}},
        )
    return attrs.evolve(checkin, browserId=device_id)


class CheckinRoutes:
    """``POST /checkin``; ``destinations`` gives the node addresses handed out (default:
    ``server.node_public_address``, else this host with the node port)."""

    def __init__(
        self,
        gateway: CheckinGateway,
        stores: NodeStores,
        running: RunningConfig,
        *,
        destinations: Callable[[], list[str]] | None = None,
    ) -> None:
        self._gateway = gateway
        self._stores = stores
        self._running = running
        self._destinations = destinations or self._default_destinations

    def _default_destinations(self) -> list[str]:
        server = self._running.current.server
        if server.node_public_address:
            return [server.node_public_address]
        host = (request.host or "localhost").rsplit(":", 1)[0]
        return [f"{host}:{server.node_port}"]

    @route(
        "POST",
        "/checkin",
        summary="v5 check-in: a token and the node addresses to connect to",
        tag="nodes",
        auth=ANONYMOUS,
        body=CheckinRequest,
        body_parser=parse_checkin,
        response=CheckinReply,
        status=201,
        errors=(UnknownNodeKey, NodeKeyRequired, UnknownUser, ExtensionNotAllowed),
    )
    async def checkin(self, call: Call) -> CheckinReply:
        data: CheckinRequest = call.body
        node = self._running.current.node
        identity = await identify_node(
            self._stores, data.userId, allow_legacy=node.allow_legacy_auth
        )
        allowed = node.allowed_extension_ids
        if data.extensionId and allowed and data.extensionId not in allowed:
            raise ExtensionNotAllowed("this extension may not check in")
        # Behind trusted proxies, the address they saw (grass.domain.addresses): the node
        # gateway must see the same one when the node connects.
        if not call.ip:
            raise InvalidInput("the token needs the client's IP address")
        token = self._gateway.issue_token(identity.user_id, data.browserId, call.ip)
        return CheckinReply(destinations=self._destinations(), token=token)

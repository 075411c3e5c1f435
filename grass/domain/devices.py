"""Devices: one per node installation, identified by the node's own ``browser_id`` UUID."""

from __future__ import annotations

import datetime as dt
import enum

import attrs

from grass.domain import _checks as check
from grass.domain.score import NetworkScore


class DeviceType(enum.StrEnum):
    EXTENSION = "extension"
    DESKTOP = "desktop"
    COMMUNITY = "community"
    ANDROID = "android"


class DeviceStatus(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


@attrs.frozen(kw_only=True)
class Device:
    device_id: str = attrs.field(validator=check.uuid)
    user_id: str = attrs.field(validator=check.short_id)
    type: DeviceType = attrs.field(validator=check.member(DeviceType))
    version: str | None = attrs.field(default=None, validator=check.optional_text(64))
    user_agent: str | None = attrs.field(default=None, validator=check.optional_text(512))
    ip: str | None = attrs.field(default=None, validator=check.optional_ip)
    country: str | None = attrs.field(default=None, validator=check.country)
    status: DeviceStatus = attrs.field(
        default=DeviceStatus.OFFLINE, validator=check.member(DeviceStatus)
    )
    first_seen: dt.datetime = attrs.field(validator=check.utc)
    last_seen: dt.datetime = attrs.field(validator=[check.utc, check.not_before("first_seen")])
    #: Set by the owner: a paused node is told to stop and earns nothing.
    paused: bool = False
    #: Set by the owner; None shows a default name.
    name: str | None = attrs.field(default=None, validator=check.optional_text(64))
    score: NetworkScore | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(NetworkScore)),
    )

"""Notifications shown in the dashboard (and pushed through the user's channels)."""

from __future__ import annotations

import datetime as dt
import enum
import json
from typing import Any

import attrs

from grass.domain import _checks as check


class NotificationType(enum.StrEnum):
    DEVICE_ONLINE = "device_online"
    DEVICE_OFFLINE = "device_offline"
    EARNINGS_CREDITED = "earnings_credited"
    REFERRAL_JOINED = "referral_joined"
    REFERRAL_QUALIFIED = "referral_qualified"
    MILESTONE_REACHED = "milestone_reached"
    EPOCH_SETTLED = "epoch_settled"
    SECURITY = "security"
    ANNOUNCEMENT = "announcement"


class Priority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


def _json_object(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise check.InvalidModel(attribute.name, "must be a JSON object")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise check.InvalidModel(attribute.name, "must be JSON-serialisable") from None


@attrs.frozen(kw_only=True)
class Notification:
    id: str = attrs.field(validator=check.short_id)
    user_id: str = attrs.field(validator=check.short_id)
    type: NotificationType = attrs.field(validator=check.member(NotificationType))
    priority: Priority = attrs.field(default=Priority.NORMAL, validator=check.member(Priority))
    payload: dict[str, Any] = attrs.field(factory=dict, validator=_json_object)
    created_at: dt.datetime = attrs.field(validator=check.utc)
    read_at: dt.datetime | None = attrs.field(default=None, validator=check.optional_utc)

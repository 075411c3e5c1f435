"""The network score a device (or an IP) carries: a value from 0 to 100 and the parts it is made of.

The formula lives with the earnings engine; this is the value every layer passes around, so that
"why is my score low" can always be answered from the components.
"""

from __future__ import annotations

import datetime as dt

import attrs

from grass.domain import _checks as check

_PERCENT = check.between(0, 100)


@attrs.frozen(kw_only=True)
class ScoreComponents:
    availability: int = attrs.field(validator=_PERCENT)
    stability: int = attrs.field(validator=_PERCENT)
    latency: int = attrs.field(validator=_PERCENT)
    ip_quality: int = attrs.field(validator=_PERCENT)


@attrs.frozen(kw_only=True)
class NetworkScore:
    value: int = attrs.field(validator=_PERCENT)
    components: ScoreComponents
    computed_at: dt.datetime = attrs.field(validator=check.utc)

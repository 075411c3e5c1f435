"""Feature flags: ``config.features`` with operators' runtime overrides on top.

An override wins over the config value until it is cleared, survives restarts (it is stored)
and reaches every instance (each reloads when told through the node command channel). A config
reload (SIGHUP) changes the base values; overrides stay on top. Code asks
:meth:`FeatureFlags.enabled`, never ``config.features`` directly, so it sees the overrides.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

import attrs

from grass.domain.admin import FlagOverride
from grass.storage.admin import FlagStore


class FlagSource(enum.StrEnum):
    CONFIG = "config"
    OVERRIDE = "override"


@attrs.frozen(kw_only=True)
class FlagState:
    name: str
    enabled: bool
    source: FlagSource
    #: The config's value, None when the config does not name the flag.
    config_value: bool | None
    override: FlagOverride | None


class FeatureFlags:
    def __init__(
        self,
        store: FlagStore,
        base: Callable[[], Mapping[str, bool]],
    ) -> None:
        self._store = store
        self._base = base
        self._overrides: dict[str, FlagOverride] = {}

    async def reload(self) -> None:
        self._overrides = {f.name: f for f in await self._store.list_flags()}

    def enabled(self, name: str, default: bool = False) -> bool:
        override = self._overrides.get(name)
        if override is not None:
            return override.enabled
        return self._base().get(name, default)

    def effective(self) -> dict[str, bool]:
        values = dict(self._base())
        values.update({name: o.enabled for name, o in self._overrides.items()})
        return values

    def states(self) -> list[FlagState]:
        base = self._base()
        states = []
        for name in sorted(set(base) | set(self._overrides)):
            override = self._overrides.get(name)
            states.append(
                FlagState(
                    name=name,
                    enabled=override.enabled if override else base[name],
                    source=FlagSource.OVERRIDE if override else FlagSource.CONFIG,
                    config_value=base.get(name),
                    override=override,
                )
            )
        return states

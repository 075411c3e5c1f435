"""The running configuration: what SIGHUP swaps in while the server runs."""

from __future__ import annotations

from collections.abc import Callable

from grass.config import Config, reload_changes


class RunningConfig:
    """The running config. SIGHUP swaps in the reloadable sections; the rest needs a restart.
    Everything that reads a setting reads ``current`` when it needs it, never a copy."""

    def __init__(self, config: Config) -> None:
        self.current = config
        self._listeners: list[Callable[[Config], None]] = []

    def on_reload(self, listener: Callable[[Config], None]) -> None:
        self._listeners.append(listener)

    def apply(self, new: Config) -> list[str]:
        """Apply a validated config; returns the restart-only sections that were not applied."""
        self.current, ignored = reload_changes(self.current, new)
        for listener in self._listeners:
            listener(self.current)
        return ignored

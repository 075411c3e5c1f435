"""Collector control (grass.nodes.collector): freezes per batch of sessions, pauses that nest."""

from __future__ import annotations

import gc

import pytest

from grass.nodes import collector
from grass.nodes.collector import BATCH, Collector


def test_a_freeze_after_every_batch_of_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(gc, "collect", lambda generation=2: calls.append(f"collect {generation}"))
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    control = Collector()
    for _ in range(BATCH - 1):
        control.connected()
    assert calls == []
    control.connected()
    assert calls == ["collect 1", "freeze"]
    for _ in range(BATCH):
        control.connected()
    assert control.freezes == 2


def test_pauses_nest_and_leave_a_disabled_collector_alone() -> None:
    assert gc.isenabled()
    with collector.paused():
        assert not gc.isenabled()
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()
    gc.disable()
    try:
        with collector.paused():
            pass
        assert not gc.isenabled()  # whoever disabled it decides
    finally:
        gc.enable()

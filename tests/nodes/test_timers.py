"""The sessions' timers task (grass.nodes.timers) on virtual time."""

from __future__ import annotations

import gc

import trio

from grass.nodes.timers import Timers


class Clocked:
    """Asks to be looked at at each time in ``plan`` (then never again)."""

    def __init__(self, plan: list[float]) -> None:
        self.timer = None
        self.plan = plan
        self.ticks: list[float] = []

    def tick(self, now: float) -> float | None:
        self.ticks.append(now)
        return self.plan.pop(0) if self.plan else None


async def test_ticks_come_exactly_when_asked_and_once(autojump_clock):
    timers = Timers()
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        a, b = Clocked([20.0, 45.5]), Clocked([])
        timers.at(a, 10.0)
        timers.at(b, 30.0)
        await trio.sleep(100)
        assert a.ticks == [10.0, 20.0, 45.5]
        assert b.ticks == [30.0]
        assert len(timers) == 0  # nothing left once nothing is asked for
        nursery.cancel_scope.cancel()


async def test_an_earlier_time_supersedes_a_later_one_and_wakes_the_task(autojump_clock):
    timers = Timers()
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        a = Clocked([])
        timers.at(a, 50.0)
        await trio.sleep(1)
        timers.at(a, 60.0)  # later than what it asked for: looked at at 50 anyway
        timers.at(a, 5.0)  # earlier: the sleeping task wakes for it
        await trio.sleep(100)
        assert a.ticks == [5.0]  # the superseded entry (50) does not tick it again
        nursery.cancel_scope.cancel()


async def test_a_dropped_one_is_let_go_at_once_and_never_ticked(autojump_clock):
    """A closed session is freed when it ends, not when its entry would have come due."""
    timers = Timers()
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        a, b = Clocked([]), Clocked([])
        timers.at(a, 60.0)
        timers.at(a, 30.0)  # two entries name it, one superseded
        timers.at(b, 60.0)
        ticks = a.ticks
        gc.disable()  # freed by reference counting, not by a collector pass
        try:
            timers.drop(a)
            del a
            assert not any(type(o) is Clocked and o.ticks is ticks for o in gc.get_objects())
        finally:
            gc.enable()
        await trio.sleep(100)
        assert ticks == []
        assert b.ticks == [60.0]
        assert len(timers) == 0
        nursery.cancel_scope.cancel()

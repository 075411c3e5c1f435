"""EpochStore."""

from __future__ import annotations

import attrs
import pytest

from grass.domain.epochs import Epoch, EpochStatus, EpochTotals
from grass.errors import IntegrityViolation, StorageConflict, StorageNotFound
from tests.storage.conftest import at, collect


def epoch(number: int, length: int = 10) -> Epoch:
    return Epoch(
        number=number,
        name=f"Epoch {number}",
        start=at(number * length),
        end=at((number + 1) * length),
    )


async def test_round_trip_and_lookups(storage):
    assert await storage.epochs.latest_epoch() is None
    epochs = [epoch(n) for n in range(4)]
    for e in epochs:
        await storage.epochs.create_epoch(e)
    assert await storage.epochs.get_epoch(2) == epochs[2]
    assert await storage.epochs.latest_epoch() == epochs[3]
    assert await storage.epochs.epoch_at(at(10)) == epochs[1]
    assert await storage.epochs.epoch_at(at(19.5)) == epochs[1]
    assert await storage.epochs.epoch_at(at(40)) is None
    with pytest.raises(StorageNotFound):
        await storage.epochs.get_epoch(9)
    assert await collect(storage.epochs.list_epochs, limit=3) == epochs[::-1]


async def test_number_and_range_are_unique(storage):
    await storage.epochs.create_epoch(epoch(1))
    with pytest.raises(StorageConflict):
        await storage.epochs.create_epoch(attrs.evolve(epoch(1), start=at(100), end=at(110)))
    with pytest.raises(StorageConflict):
        await storage.epochs.create_epoch(Epoch(number=2, name="x", start=at(15), end=at(25)))
    await storage.epochs.create_epoch(Epoch(number=2, name="x", start=at(20), end=at(25)))


async def test_close_and_settle(storage):
    e = epoch(0)
    await storage.epochs.create_epoch(e)
    closing = e.close(EpochTotals(points=10, uptime_seconds=3600, users=1))
    await storage.epochs.update_epoch(closing)
    assert await storage.epochs.get_epoch(0) == closing
    listed = await storage.epochs.list_epochs(status=EpochStatus.CLOSING)
    assert listed.items == (closing,)
    assert (await storage.epochs.list_epochs(status=EpochStatus.OPEN)).items == ()
    settled = closing.settle()
    await storage.epochs.update_epoch(settled)
    with pytest.raises(IntegrityViolation):
        await storage.epochs.update_epoch(closing)
    with pytest.raises(IntegrityViolation):
        await storage.epochs.update_epoch(attrs.evolve(settled, end=at(11)))
    assert await storage.epochs.get_epoch(0) == settled
    with pytest.raises(StorageNotFound):
        await storage.epochs.update_epoch(epoch(5))

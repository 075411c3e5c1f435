"""grass.storage.batches.write_apart: a batch refused for a row's content is written by halves
around that row; every other row exactly once; other errors stop it with nothing lost."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grass.errors import IntegrityViolation, InvalidValue, RowRefused, StorageUnavailable
from grass.storage.batches import write_apart


class Store:
    """Refuses any batch holding a bad row (atomically: nothing of it is written)."""

    def __init__(self, bad: set[int], down_at: int | None = None) -> None:
        self.bad = bad
        self.down_at = down_at
        self.stored: list[int] = []
        self.calls = 0

    async def write(self, rows: Sequence[int]) -> int:
        self.calls += 1
        if self.calls == self.down_at:
            raise StorageUnavailable("down")
        refused = self.bad.intersection(rows)
        if refused:
            kind = InvalidValue if min(refused) % 2 else IntegrityViolation
            raise kind(f"row {min(refused)} refused")
        self.stored += rows
        return len(rows)


async def run(store: Store, rows: list[int]) -> tuple[list[int], list[int]]:
    written: list[int] = []
    refused: list[int] = []

    def on_written(batch: Sequence[int], count: int) -> None:
        assert count == len(batch)
        written.extend(batch)

    def on_refused(row: int, exc: RowRefused) -> None:
        assert f"row {row} refused" == exc.message
        refused.append(row)

    await write_apart(rows, store.write, written=on_written, refused=on_refused)
    return written, refused


async def test_one_call_when_nothing_is_refused():
    store = Store(bad=set())
    assert await run(store, list(range(1000))) == (list(range(1000)), [])
    assert store.calls == 1


@given(st.integers(1, 300), st.sets(st.integers(0, 299), max_size=6))
async def test_every_other_row_is_written_once_in_order(count: int, bad: set[int]):
    rows = list(range(count))
    bad &= set(rows)
    store = Store(bad)
    written, refused = await run(store, rows)
    assert written == store.stored == [r for r in rows if r not in bad]
    assert sorted(refused) == sorted(bad)
    assert store.calls <= 1 + 2 * len(bad) * max(1, count.bit_length())


@pytest.mark.parametrize("down_at", [1, 2, 3, 5, 8])
async def test_an_outage_stops_it_and_nothing_written_is_lost(down_at: int):
    """What was written before the outage was reported: the caller retries only the rest."""
    rows = list(range(64))
    store = Store(bad={5, 40}, down_at=down_at)
    written: list[int] = []
    refused: list[int] = []
    with pytest.raises(StorageUnavailable):
        await write_apart(
            rows,
            store.write,
            written=lambda batch, _: written.extend(batch),
            refused=lambda row, _: refused.append(row),
        )
    assert written == store.stored
    rest = [r for r in rows if r not in written and r not in refused]
    more, more_refused = await run(Store(bad={5, 40}), rest)
    assert sorted(written + more) == [r for r in rows if r not in {5, 40}]
    assert sorted(refused + more_refused) == [5, 40]

"""Batch writes that one bad row cannot block.

A batch call is atomic (grass.storage.abc): when it fails, nothing of it was written. A batch
refused for a row's content (:class:`~grass.errors.RowRefused`: text the database cannot
store, a reference or an owner that does not fit) would be refused again on every retry, and
every other row with it. :func:`write_apart` splits such a batch in halves and writes each
half, again and again, down to the rows refused alone: every other row is written exactly
once, in ``O(bad rows x log(rows))`` calls, and each refused row is handed to ``refused`` once.

Any other error (the backend is unavailable, a bug) propagates at once, after ``written`` was
told of the parts already written: the caller keeps the rest for its next attempt.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from grass.errors import RowRefused

Row = TypeVar("Row")
Result = TypeVar("Result")


async def write_apart(
    rows: Sequence[Row],
    write: Callable[[Sequence[Row]], Awaitable[Result]],
    *,
    written: Callable[[Sequence[Row], Result], None],
    refused: Callable[[Row, RowRefused], None],
) -> None:
    """Write ``rows`` with ``write``, in one call unless a row is refused (see the module)."""
    pending = [rows]
    while pending:
        batch = pending.pop()
        if not batch:
            continue
        try:
            result = await write(batch)
        except RowRefused as exc:
            if len(batch) == 1:
                refused(batch[0], exc)
            else:
                half = len(batch) // 2
                pending += (batch[half:], batch[:half])  # the first half is written first
            continue
        written(batch, result)

"""In-memory tables with unique and grouping indexes, and an undo journal for rollback.

Rows are frozen attrs values, so undoing a write is putting the previous row object back:
the journal records (table, key, previous row or None) for every write and replays it backwards.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Generic, TypeVar

from grass.storage.abc import StorageConflict

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")
Undo = Callable[[], None]


class Journal:
    def __init__(self) -> None:
        self._undo: list[Undo] | None = None

    @property
    def active(self) -> bool:
        return self._undo is not None

    def begin(self) -> None:
        if self._undo is not None:
            raise RuntimeError("a unit of work is already open on this memory storage")
        self._undo = []

    def record(self, undo: Undo) -> None:
        if self._undo is None:
            raise RuntimeError("memory storage written outside a unit of work")
        self._undo.append(undo)

    def commit(self) -> None:
        self._undo = None

    def rollback(self) -> None:
        undo, self._undo = self._undo or [], None
        for step in reversed(undo):
            step()


class Table(Generic[K, R]):
    def __init__(
        self,
        name: str,
        journal: Journal,
        key: Callable[[R], K],
        *,
        unique: Mapping[str, Callable[[R], Hashable | None]] | None = None,
        groups: Mapping[str, Callable[[R], Hashable | None]] | None = None,
    ) -> None:
        self.name = name
        self._journal = journal
        self._key = key
        self._rows: dict[K, R] = {}
        self._unique_of = dict(unique or {})
        self._group_of = dict(groups or {})
        self._unique: dict[str, dict[Hashable, K]] = {n: {} for n in self._unique_of}
        self._groups: dict[str, dict[Hashable, dict[K, None]]] = {n: {} for n in self._group_of}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: K) -> bool:
        return key in self._rows

    def get(self, key: K) -> R | None:
        return self._rows.get(key)

    def rows(self) -> Iterator[R]:
        return iter(list(self._rows.values()))

    def lookup(self, index: str, value: Hashable) -> R | None:
        key = self._unique[index].get(value)
        return None if key is None else self._rows[key]

    def group(self, index: str, value: Hashable) -> list[R]:
        return [self._rows[k] for k in self._groups[index].get(value, ())]

    def group_values(self, index: str) -> list[Hashable]:
        return list(self._groups[index])

    def insert(self, row: R) -> None:
        key = self._key(row)
        if key in self._rows:
            raise StorageConflict(f"{self.name}: {key!r} already exists", details={"key": str(key)})
        self.save(row)

    def save(self, row: R) -> None:
        """Insert or replace by primary key; a unique value held by another row conflicts."""
        key = self._key(row)
        for name, of in self._unique_of.items():
            value = of(row)
            holder = None if value is None else self._unique[name].get(value)
            if holder is not None and holder != key:
                raise StorageConflict(f"{self.name}: {name} already taken", details={"field": name})
        self._write(key, row)

    def delete(self, key: K) -> R | None:
        row = self._rows.get(key)
        if row is not None:
            self._write(key, None)
        return row

    def _write(self, key: K, row: R | None) -> None:
        previous = self._rows.get(key)
        self._journal.record(lambda: self._set(key, previous))
        self._set(key, row)

    def _set(self, key: K, row: R | None) -> None:
        previous = self._rows.pop(key, None)
        if previous is not None:
            for name, of in self._unique_of.items():
                value = of(previous)
                if value is not None:
                    del self._unique[name][value]
            for name, of in self._group_of.items():
                value = of(previous)
                if value is not None:
                    members = self._groups[name][value]
                    del members[key]
                    if not members:
                        del self._groups[name][value]
        if row is None:
            return
        self._rows[key] = row
        for name, of in self._unique_of.items():
            value = of(row)
            if value is not None:
                self._unique[name][value] = key
        for name, of in self._group_of.items():
            value = of(row)
            if value is not None:
                self._groups[name].setdefault(value, {})[key] = None

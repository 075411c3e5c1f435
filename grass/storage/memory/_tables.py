"""In-memory tables with unique and grouping indexes, and an undo log for rollback.

Rows are frozen attrs values, so undoing a write is putting the previous row object back:
the undo log records (table, key, previous row or None) for every write and replays it backwards.

A row is refused (InvalidValue) where PostgreSQL would refuse it for its text: a string UTF-8
cannot encode (a lone surrogate) or holding NUL, anywhere in the row. Stored, such a row made
every later JSON reply that showed it fail. So is a row with an integer field no PostgreSQL
integer column holds (beyond bigint); numbers inside JSON-like values are free, as in jsonb.
"""

from __future__ import annotations

import datetime as dt
import enum
import operator
import types
import typing
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import attrs

from grass.errors import InvalidValue, StorageConflict
from grass.jsontext import is_text

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")
Undo = Callable[[], None]


class UndoLog:
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
        undo_log: UndoLog,
        key: Callable[[R], K],
        *,
        unique: Mapping[str, Callable[[R], Hashable | None]] | None = None,
        groups: Mapping[str, Callable[[R], Hashable | None]] | None = None,
    ) -> None:
        self.name = name
        self._undo_log = undo_log
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
        found = _unstorable(row, "")
        if found is not None:
            where, what = found
            raise InvalidValue(
                f"{self.name}: cannot store {what} ({where or 'row'})",
                details={"table": self.name, "column": where},
            )
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
        self._undo_log.record(lambda: self._set(key, previous))
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


#: Types that never hold text; enum classes join on first sight.
_LEAVES: set[type] = {int, float, bool, dt.datetime, dt.date, dt.time, dt.timedelta, bytes}
_LEAVES.add(type(None))
Getter = Callable[[Any], tuple[Any, ...]]
#: Per attrs class: its text fields (and a getter for them all), its integer fields (and a
#: getter), then its other fields that may hold text deeper down (containers, nested classes).
Plan = tuple[tuple[str, ...], Getter, tuple[str, ...], Getter, tuple[str, ...]]
_PLANS: dict[type, Plan] = {}
#: PostgreSQL's widest integer column (bigint): a number beyond it fits no column.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_TEXT = "text that UTF-8 cannot encode or holding NUL"
_NUMBER = "a number out of its column's range"


def _storable(text: str) -> bool:
    return "\x00" not in text and is_text(text)


def _getter(names: tuple[str, ...]) -> Getter:
    get = operator.attrgetter(*names) if names else None
    if get is None:
        return lambda row: ()
    return get if len(names) > 1 else lambda row: (get(row),)


def _holds(hint: Any) -> str:
    """ "text", "none" or "deep": what a field of this type may hold."""
    args = (
        typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
    )
    kinds = [a for a in args if a is not type(None)] if args else [hint]
    if all(k is str for k in kinds):
        return "text"
    if all(isinstance(k, type) and (k in _LEAVES or issubclass(k, enum.Enum)) for k in kinds):
        return "none"
    return "deep"


def _is_int(hint: Any) -> bool:
    args = typing.get_args(hint) if typing.get_origin(hint) is not None else (hint,)
    return int in args and all(a in (int, type(None)) for a in args)


def _plan(kind: type) -> Plan:
    plan = _PLANS.get(kind)
    if plan is None:
        names = [f.name for f in attrs.fields(kind)]
        try:
            hints = typing.get_type_hints(kind)
        except (NameError, TypeError):
            hints = {}
        holds = {name: _holds(hints[name]) if name in hints else "deep" for name in names}
        text = tuple(n for n in names if holds[n] == "text")
        ints = tuple(n for n in names if n in hints and _is_int(hints[n]))
        deep = tuple(n for n in names if holds[n] == "deep")
        plan = _PLANS[kind] = (text, _getter(text), ints, _getter(ints), deep)
    return plan


def _out_of_range(names: tuple[str, ...], numbers: tuple[Any, ...], where: str) -> str | None:
    for name, number in zip(names, numbers, strict=True):
        if type(number) is int and not _INT_MIN <= number <= _INT_MAX:
            return f"{where}.{name}" if where else name
    return None


def _unstorable(value: Any, where: str) -> tuple[str, str] | None:
    """Where in ``value`` a value PostgreSQL would refuse is (a path, "" for the value itself),
    and what it is.

    Every write of every row comes here: an attrs row's text fields are fetched in one C call
    and checked joined (ASCII without NUL, the common case, costs two C scans)."""
    kind = type(value)
    plan = _PLANS.get(kind)
    if plan is not None or attrs.has(kind):
        text, get, ints, get_ints, deep = plan or _plan(kind)
        texts = get(value)
        joined = "".join(filter(None, texts))
        if not (joined.isascii() and "\x00" not in joined) and not _storable(joined):
            bad = _first(zip(text, texts, strict=True), where)
            if bad is not None:
                return bad
        if ints:
            number = _out_of_range(ints, get_ints(value), where)
            if number is not None:
                return number, _NUMBER
        for name in deep:
            item = getattr(value, name)
            if type(item) not in _LEAVES:
                found = _unstorable(item, f"{where}.{name}" if where else name)
                if found is not None:
                    return found
        return None
    if kind is str:
        return None if _storable(value) else (where, _TEXT)
    if kind in _LEAVES:
        return None
    if isinstance(value, enum.Enum):
        _LEAVES.add(kind)
        return None
    if isinstance(value, Mapping):
        if any(type(key) is str and not _storable(key) for key in value):
            return where, _TEXT  # a key cannot be named: its mapping is
        return _first(((str(key), item) for key, item in value.items()), where)
    if isinstance(value, tuple | list | frozenset | set):
        return _first(((str(n), item) for n, item in enumerate(value)), where)
    return None


def _first(pairs: Iterable[tuple[str, Any]], where: str) -> tuple[str, str] | None:
    for name, item in pairs:
        if type(item) not in _LEAVES:
            found = _unstorable(item, f"{where}.{name}" if where else name)
            if found is not None:
                return found
    return None

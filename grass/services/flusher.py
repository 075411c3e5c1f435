"""The uptime flusher (architecture §4): the one loop that writes what the sessions accrued.

It owns every live session's :class:`~grass.domain.uptime.Accrual` (the node gateway adds and
retires them). Each interval it takes what they hold (taking zeroes them), writes device rows in
ONE ``upsert_devices`` call, then all deltas in ONE ``add_uptime`` call (rows first: uptime of a
device without a row would be skipped). A flush that fails because the store is unavailable
keeps what it did not write (``_rows``, ``_carry``) for the next one, so nothing is lost and
nothing is written twice; a crash loses at most one interval. A batch refused for a row's
content (grass.storage.batches) is written by halves around that row, which is dropped, counted
(``grass_storage_rows_refused_total``) and logged once: one node's bad row never blocks the
others' uptime, nor the final flush. A device row refused is not sent again while its content
stays the same.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import attrs
import trio

from grass import logs
from grass.domain.devices import Device, DeviceType
from grass.domain.uptime import Accrual, UptimeDelta, UptimeFlushResult
from grass.errors import OwnedByAnother, RowRefused
from grass.metrics import Metrics
from grass.storage.batches import write_apart

log = logs.get(__name__)

Key = tuple[str, dt.datetime, str]
#: What a device row holds that came from its node (a refused row is known by it).
Content = tuple[str, DeviceType, str | None, str | None, str | None]

#: Sessions whose accruals are taken between two checkpoints of a flush.
COLLECT_SLICE = 256


class DeviceRows(Protocol):
    async def upsert_devices(self, devices: Sequence[Device]) -> None: ...


class UptimeRows(Protocol):
    async def add_uptime(self, deltas: Sequence[UptimeDelta]) -> UptimeFlushResult: ...


class UptimeFlusher:
    def __init__(
        self,
        devices: DeviceRows,
        uptime: UptimeRows,
        *,
        interval: Callable[[], float],
        metrics: Metrics | None = None,
        pause: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        self._devices = devices
        self._uptime = uptime
        self._interval = interval
        self._metrics = metrics
        #: Holds the garbage collector off during a flush (the node gateway's
        #: ``grass.nodes.collector.paused``).
        self._pause = pause
        #: Devices whose row was refused, with what it held: not sent again unchanged.
        self._refused: dict[str, Content] = {}
        self._live: set[Accrual] = set()
        self._retired: list[Accrual] = []
        self._carry: dict[Key, UptimeDelta] = {}
        self._rows: dict[str, Device] = {}
        self._forgotten: set[str] = set()
        self._lock = trio.Lock()
        self.flushes = 0
        self.failures = 0
        #: Rows dropped because the store refused their content.
        self.rows_refused = 0

    @property
    def pending(self) -> int:
        """Deltas kept from failed flushes."""
        return len(self._carry)

    def add(self, accrual: Accrual) -> None:
        self._live.add(accrual)

    def retire(self, accrual: Accrual) -> None:
        """The session ended: its last seconds and its offline row go out with the next flush."""
        accrual.close()
        if accrual in self._live:
            self._live.discard(accrual)
            self._retired.append(accrual)

    def forget(self, device_id: str) -> None:
        """The device was removed by its owner: its sessions' rows and uptime not written yet
        are dropped (writing the row would bring the device back)."""
        self._forgotten.add(device_id)
        self._rows.pop(device_id, None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self._interval())
            await self.flush_now()

    async def flush_now(self) -> UptimeFlushResult | None:
        """Write everything pending; on failure keep it for the next call. Never raises on a
        storage error (it is logged): the next interval retries."""
        # The rows and deltas of every device are short-lived and acyclic: no collector pass
        # while they exist (``pause``). The pause spans the storage awaits: CPython counts
        # allocations while the collector is off, so turning it on before the rows and deltas
        # are freed would start a young pass over all of them at once.
        async with self._lock:
            with self._pause():
                return await self._flush()

    async def _flush(self) -> UptimeFlushResult | None:
        await self._collect()
        if not self._rows and not self._carry:
            return None
        try:
            # Shielded: a write cancelled after it committed would be repeated next time.
            with trio.CancelScope(shield=True):
                if self._rows:
                    await self._write_rows()
                result = await self._write_deltas()
        except Exception as exc:  # storage down: what is not written stays for the next try
            self.failures += 1
            log.warning("uptime flush failed", error=str(exc), pending=len(self._carry))
            return None
        self.flushes += 1
        return result

    async def _collect(self) -> None:
        retired, self._retired = self._retired, []
        if self._forgotten:
            self._drop_forgotten(retired)
        n = 0
        try:
            # Retired first: a device's newer session, if any, has the last word on its row.
            for n, accrual in enumerate((*retired, *self._live), 1):
                if not n % COLLECT_SLICE:
                    # Tens of thousands of sessions take a while: the nodes' PINGs go on
                    # meanwhile (what a session does then is taken next time: take() zeroes
                    # what it took).
                    await trio.lowlevel.checkpoint()
                if accrual.device_id in self._forgotten:
                    accrual.take()
                    continue
                for delta in accrual.take():
                    old = self._carry.get(delta.key)
                    if old is not None:
                        delta = attrs.evolve(delta, stats=old.stats + delta.stats)
                    self._carry[delta.key] = delta
                if accrual.dirty or (not accrual.closed and accrual.device_id in self._rows):
                    accrual.dirty = False
                    row = accrual.device_row()
                    if not self._refused or self._refused.get(row.device_id) != _content(row):
                        self._rows[row.device_id] = row
        except BaseException:
            # Cancelled at a checkpoint (a shutdown): the retired sessions not taken yet go
            # back, ahead of those retired since; what was taken stays in _carry and _rows.
            self._retired[:0] = retired[max(n - 1, 0) :]
            raise

    def _drop_forgotten(self, retired: list[Accrual]) -> None:
        forgotten = self._forgotten
        self._carry = {k: d for k, d in self._carry.items() if d.device_id not in forgotten}
        # A mark lasts while a session of the device still runs (it is closing).
        self._forgotten = {a.device_id for a in self._live if a.device_id in forgotten}
        for accrual in retired:
            if accrual.device_id in forgotten:
                accrual.take()
        retired[:] = [a for a in retired if a.device_id not in forgotten]

    async def _write_rows(self) -> None:
        saved: set[str] = set()

        def written(rows: Sequence[Device], _: None) -> None:
            for row in rows:
                saved.add(row.device_id)
                self._rows.pop(row.device_id, None)

        def refused(row: Device, exc: RowRefused) -> None:
            self._rows.pop(row.device_id, None)
            self._refused[row.device_id] = _content(row)
            self._count_refused("devices", row.device_id, exc)
            if isinstance(exc, OwnedByAnother):
                # Another user's node wrote the device first (two instances let both in
                # before either wrote it): this session's uptime must not land on its row.
                self._carry = {
                    k: d
                    for k, d in self._carry.items()
                    if (d.device_id, d.user_id) != (row.device_id, row.user_id)
                }

        try:
            rows = list(self._rows.values())
            await write_apart(rows, self._devices.upsert_devices, written=written, refused=refused)
        finally:
            if saved:
                for accrual in self._live:
                    if accrual.device_id in saved:
                        accrual.saved = accrual.recent = True
            if self._refused:  # forgotten once no session of the device is left
                live = {a.device_id for a in self._live}
                self._refused = {d: c for d, c in self._refused.items() if d in live}

    async def _write_deltas(self) -> UptimeFlushResult:
        total = UptimeFlushResult(applied=0)

        def written(deltas: Sequence[UptimeDelta], result: UptimeFlushResult) -> None:
            nonlocal total
            total += result
            for delta in deltas:
                self._carry.pop(delta.key, None)

        def refused(delta: UptimeDelta, exc: RowRefused) -> None:
            self._carry.pop(delta.key, None)
            self._count_refused("uptime", delta.device_id, exc)

        deltas = list(self._carry.values())
        await write_apart(deltas, self._uptime.add_uptime, written=written, refused=refused)
        return total

    def _count_refused(self, batch: str, device_id: str, exc: RowRefused) -> None:
        self.rows_refused += 1
        if self._metrics is not None:
            self._metrics.rows_refused.labels(batch).inc()
        # The store's message never quotes the value (it may be what could not be stored).
        log.warning("row refused; dropped", batch=batch, device_id=device_id, error=exc.message)


def _content(row: Device) -> Content:
    return (row.user_id, row.type, row.version, row.user_agent, row.ip)

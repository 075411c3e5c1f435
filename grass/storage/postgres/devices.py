"""DeviceStore on PostgreSQL. Device ids are uuid, IPs inet: both cross as text and are cast in
SQL, and come back through their canonical ``str``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence

from grass.domain.devices import Device, DeviceStatus, DeviceType
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page, micros
from grass.domain.score import NetworkScore, ScoreComponents
from grass.errors import OwnedByAnother, StorageNotFound
from grass.ids import is_uuid
from grass.postgres.connection import Connection, Record
from grass.storage.postgres.rows import (
    after_time_text,
    page_of,
    require,
    require_rows,
    row_count,
    text_or_none,
)
from grass.storage.postgres.scope import Scope

__all__ = ["PgDeviceStore"]

_COLUMNS = (
    "id, user_id, type, version, user_agent, ip, country, status, first_seen, last_seen,"
    " paused, name, score, score_components, score_at"
)
# The same, from an unnest() of text arrays (ids and IPs cast back to their types).
_VALUES = "$1::uuid, $2, $3, $4, $5, $6::text::inet, $7, $8, $9, $10, $11, $12, $13, $14, $15"


def _components(score: NetworkScore) -> dict[str, int]:
    c = score.components
    return {
        "availability": c.availability,
        "stability": c.stability,
        "latency": c.latency,
        "ip_quality": c.ip_quality,
    }


def _device(row: Record) -> Device:
    score = None
    if row["score"] is not None:
        score = NetworkScore(
            value=row["score"],
            components=ScoreComponents(**row["score_components"]),
            computed_at=row["score_at"],
        )
    return Device(
        device_id=str(row["id"]),
        user_id=row["user_id"],
        type=DeviceType(row["type"]),
        version=row["version"],
        user_agent=row["user_agent"],
        ip=text_or_none(row["ip"]),
        country=row["country"],
        status=DeviceStatus(row["status"]),
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        paused=row["paused"],
        name=row["name"],
        score=score,
    )


def _args(d: Device) -> tuple[object, ...]:
    return (
        d.device_id,
        d.user_id,
        d.type.value,
        d.version,
        d.user_agent,
        d.ip,
        d.country,
        d.status.value,
        d.first_seen,
        d.last_seen,
        d.paused,
        d.name,
        None if d.score is None else d.score.value,
        None if d.score is None else _components(d.score),
        None if d.score is None else d.score.computed_at,
    )


def _owned_elsewhere(device_id: str) -> OwnedByAnother:
    return OwnedByAnother(
        f"device {device_id} belongs to another user", details={"device_id": device_id}
    )


class PgDeviceStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def create_device(self, device: Device) -> None:
        async def insert(conn: Connection) -> None:
            await conn.execute(
                f"INSERT INTO devices ({_COLUMNS}) VALUES ({_VALUES})", *_args(device)
            )

        await self._scope.write(insert)

    async def get_device(self, device_id: str) -> Device:
        device = await self._find(device_id, required=True)
        assert device is not None
        return device

    async def find_device(self, device_id: str) -> Device | None:
        return await self._find(device_id, required=False)

    async def _find(self, device_id: str, *, required: bool) -> Device | None:
        async def find(conn: Connection) -> Record | None:
            row = None
            if is_uuid(device_id):  # anything else is simply not found, never a cast error
                row = await conn.fetchrow(
                    f"SELECT {_COLUMNS} FROM devices WHERE id = $1::uuid", device_id
                )
            return require(row, "device", device_id) if required else row

        row = await self._scope.read_primary(find)
        return None if row is None else _device(row)

    async def set_device_name(self, device_id: str, name: str | None) -> None:
        await self._set_column(device_id, "name", name)

    async def set_device_paused(self, device_id: str, paused: bool) -> None:
        await self._set_column(device_id, "paused", paused)

    async def _set_column(self, device_id: str, column: str, value: object) -> None:
        query = f"UPDATE devices SET {column} = $2 WHERE id = $1::uuid"  # column: ours

        async def update(conn: Connection) -> None:
            require_rows(await conn.execute(query, device_id, value), "device", device_id)

        await self._scope.write(update)

    async def update_device(self, device: Device) -> None:
        async def update(conn: Connection) -> None:
            owner = await conn.fetchval(
                "SELECT user_id FROM devices WHERE id = $1::uuid FOR UPDATE", device.device_id
            )
            if owner is None:
                raise StorageNotFound(
                    f"device {device.device_id} not found", details={"key": device.device_id}
                )
            if owner != device.user_id:
                raise _owned_elsewhere(device.device_id)
            await conn.execute(
                "UPDATE devices SET type = $3, version = $4, user_agent = $5,"
                " ip = $6::text::inet, country = $7, status = $8, first_seen = $9,"
                " last_seen = $10, paused = $11, name = $12, score = $13,"
                " score_components = $14, score_at = $15 WHERE id = $1::uuid AND user_id = $2",
                *_args(device),
            )

        await self._scope.write(update)

    async def upsert_devices(self, devices: Sequence[Device]) -> None:
        latest = list({d.device_id: d for d in devices}.values())
        if not latest:
            return
        columns = list(zip(*(_args(d)[:10] for d in latest), strict=True))

        async def upsert(conn: Connection) -> None:
            # One statement for the whole batch. A device owned by someone else is not
            # updated (the WHERE), so fewer rows come back: that fails the batch, and the
            # exception rolls back the rows already written.
            rows = await conn.fetch(
                "INSERT INTO devices (id, user_id, type, version, user_agent, ip, country, status,"
                " first_seen, last_seen)"
                " SELECT id::uuid, user_id, type, version, user_agent, ip::inet, country, status,"
                " first_seen, last_seen FROM unnest($1::text[], $2::text[], $3::text[],"
                " $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],"
                " $9::timestamptz[], $10::timestamptz[]) AS t(id, user_id, type, version,"
                " user_agent, ip, country, status, first_seen, last_seen)"
                " ON CONFLICT (id) DO UPDATE SET type = EXCLUDED.type,"
                " version = EXCLUDED.version, user_agent = EXCLUDED.user_agent,"
                " ip = EXCLUDED.ip, country = EXCLUDED.country, status = EXCLUDED.status,"
                " last_seen = EXCLUDED.last_seen,"
                " first_seen = LEAST(devices.first_seen, EXCLUDED.first_seen)"
                " WHERE devices.user_id = EXCLUDED.user_id RETURNING id",
                *(list(column) for column in columns),
            )
            if len(rows) < len(latest):
                written = {str(row["id"]) for row in rows}
                refused = next(d.device_id for d in latest if d.device_id not in written)
                raise _owned_elsewhere(refused)

        await self._scope.write(upsert)

    async def delete_device(self, device_id: str) -> None:
        async def delete(conn: Connection) -> None:
            status = "DELETE 0"
            if is_uuid(device_id):
                status = await conn.execute("DELETE FROM devices WHERE id = $1::uuid", device_id)
            require_rows(status, "device", device_id)

        await self._scope.write(delete)

    async def list_devices(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[Device]:
        after_at, after_id = after_time_text(cursor, limit)

        async def fetch(conn: Connection) -> list[Record]:
            # A uuid's text is lower-case hex and dashes: its order is the string order.
            return await conn.fetch(
                f"SELECT {_COLUMNS} FROM devices WHERE user_id = $1::text"
                " AND ($2::timestamptz IS NULL"
                ' OR (first_seen, id::text COLLATE "C") > ($2, $3::text))'
                ' ORDER BY first_seen, id::text COLLATE "C" LIMIT $4',
                user_id,
                after_at,
                after_id,
                limit + 1,
            )

        rows = await self._scope.read(fetch)
        return page_of(rows, limit, _device, lambda d: (micros(d.first_seen), d.device_id))

    async def count_devices(self, user_id: str) -> int:
        async def count(conn: Connection) -> int:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM devices WHERE user_id = $1::text", user_id
                )
            )

        return await self._scope.read(count)

    async def count_recent_devices(self, user_id: str, *, seen_since: dt.datetime) -> int:
        async def count(conn: Connection) -> int:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM devices WHERE user_id = $1::text AND last_seen >= $2",
                    user_id,
                    seen_since,
                )
            )

        # The primary: another instance's flush a moment ago counts.
        return await self._scope.read_primary(count)

    async def user_ips(self, user_id: str) -> dict[str, tuple[str, ...]]:
        async def fetch(conn: Connection) -> list[Record]:
            return await conn.fetch(
                'SELECT ip, array_agg(id::text ORDER BY id::text COLLATE "C") AS ids'
                " FROM devices WHERE user_id = $1::text AND ip IS NOT NULL GROUP BY ip",
                user_id,
            )

        rows = await self._scope.read(fetch)
        return {
            str(row["ip"]): tuple(row["ids"]) for row in sorted(rows, key=lambda r: str(r["ip"]))
        }

    async def count_devices_on_ips(
        self, ips: Collection[str], *, since: dt.datetime | None = None
    ) -> dict[str, int]:
        wanted = sorted(set(ips))
        if not wanted:
            return {}

        async def fetch(conn: Connection) -> list[Record]:
            # Keyed by the caller's own strings; compared as inet so equal addresses match.
            return await conn.fetch(
                "SELECT w.ip, count(*) AS n FROM unnest($1::text[]) AS w(ip)"
                " JOIN devices d ON d.ip = w.ip::inet"
                " WHERE $2::timestamptz IS NULL OR d.last_seen >= $2 GROUP BY w.ip",
                wanted,
                since,
            )

        return {row["ip"]: int(row["n"]) for row in await self._scope.read(fetch)}

    async def set_scores(self, scores: Mapping[str, NetworkScore]) -> int:
        ids = [device_id for device_id in scores if is_uuid(device_id)]
        if not ids:
            return 0
        values = [scores[i].value for i in ids]
        parts = [_components(scores[i]) for i in ids]
        times = [scores[i].computed_at for i in ids]

        async def update(conn: Connection) -> str:
            return await conn.execute(
                "UPDATE devices d SET score = s.value, score_components = s.parts,"
                " score_at = s.at FROM unnest($1::text[], $2::smallint[], $3::jsonb[],"
                " $4::timestamptz[]) AS s(id, value, parts, at) WHERE d.id = s.id::uuid",
                ids,
                values,
                parts,
                times,
            )

        return row_count(await self._scope.write(update))

    async def mark_offline(self, *, seen_before: dt.datetime) -> int:
        async def update(conn: Connection) -> str:
            return await conn.execute(
                "UPDATE devices SET status = 'offline' WHERE status = 'online' AND last_seen < $1",
                seen_before,
            )

        return row_count(await self._scope.write(update))

"""Monthly partitions of the time-partitioned tables.

``uptime_buckets`` (by ``bucket_start``) and ``earnings`` (by ``accrued_at``) get one partition per
UTC month, named ``<table>_YYYY_MM``. :func:`ensure_partitions` creates the current month's
and the next ones; it is idempotent and runs after the stores' migrations
(:func:`~grass.storage.postgres.schema.migrate_storage_tables`) and then
periodically. Rows outside every monthly partition go to ``<table>_default`` (created by the
schema), so an insert never fails; when a month's partition is created later, rows already in
the default partition for that month are moved into it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from grass.postgres.connection import Connection
from grass.postgres.migrate import LOCK_CLASS
from grass.postgres.pool import Database

__all__ = ["PARTITIONED_TABLES", "ensure_partitions", "month_starts", "partition_name"]

#: table -> partition key column
PARTITIONED_TABLES: dict[str, str] = {"uptime_buckets": "bucket_start", "earnings": "accrued_at"}
_LOCK_OBJECT_SALT = "partitions"
#: Half-empty pages for uptime buckets: the flush adds to every open bucket each interval, and
#: with room on the page PostgreSQL updates in place (HOT) without touching the indexes —
#: measured 2.5 s -> 0.75 s for 100 000 updates.
_STORAGE: dict[str, str] = {"uptime_buckets": " WITH (fillfactor = 50)"}


def _month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def _add_months(month: datetime, count: int) -> datetime:
    index = month.year * 12 + month.month - 1 + count
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def month_starts(now: datetime, months_ahead: int) -> list[datetime]:
    """UTC starts of ``now``'s month and of the ``months_ahead`` months after it."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    first = _month_start(now)
    return [_add_months(first, i) for i in range(months_ahead + 1)]


def partition_name(table: str, month: datetime) -> str:
    return f"{table}_{month:%Y_%m}"


async def ensure_partitions(
    db: Database, *, now: datetime | None = None, months_ahead: int = 2
) -> list[str]:
    """Create the missing monthly partitions; return the names of those created."""
    created: list[str] = []
    for month in month_starts(now or datetime.now(UTC), months_ahead):
        for table, column in PARTITIONED_TABLES.items():
            name = partition_name(table, month)

            async def create(
                conn: Connection,
                table: str = table,
                column: str = column,
                name: str = name,
                month: datetime = month,
            ) -> bool:
                return await _create_partition(conn, table, column, name, month)

            if await db.run(create):
                created.append(name)
    return created


async def _create_partition(
    conn: Connection, table: str, column: str, name: str, month: datetime
) -> bool:
    # One instance at a time per schema: two CREATE TABLEs of one name would collide.
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema() || $2))",
        LOCK_CLASS,
        _LOCK_OBJECT_SALT,
    )
    if await conn.fetchval("SELECT to_regclass($1)", name) is not None:
        return False
    low, high = month, _add_months(month, 1)
    bounds = f"FROM ('{low.isoformat()}') TO ('{high.isoformat()}')"
    default = f"{table}_default"
    # Creating a partition scans the default partition for rows it would now own and fails
    # if there are any; lock it so none arrive between the check and the creation.
    await conn.execute(f'LOCK TABLE "{default}" IN SHARE ROW EXCLUSIVE MODE')
    strays = await conn.fetchval(
        f'SELECT EXISTS (SELECT 1 FROM "{default}" WHERE "{column}" >= $1 AND "{column}" < $2)',
        low,
        high,
    )
    if not strays:
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{table}" FOR VALUES {bounds}'
            + _STORAGE.get(table, "")
        )
        return True
    await conn.execute(
        f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS)'
        + _STORAGE.get(table, "")
    )
    await conn.execute(
        f'WITH moved AS (DELETE FROM "{default}" WHERE "{column}" >= $1 AND "{column}" < $2 '
        f'RETURNING *) INSERT INTO "{name}" SELECT * FROM moved',
        low,
        high,
    )
    await conn.execute(f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" FOR VALUES {bounds}')
    return True

"""The conversion of a database migrated before owners existed.

Until the stores and the ledger each had their own migrations, one sequence held both (the
files of ``grass/storage/postgres/migrations`` at the time, 0001 to 0013) and
``schema_migrations`` was keyed by version alone. The files were then split by owner without a
byte changed, and renumbered from 0001 in each owner's directory (:data:`RENUMBERED`; comments
inside them still cite the old numbers and module paths of the time, since an applied file
never changes).

:func:`convert_single_sequence` rewrites that old bookkeeping into the new one, keeping each
row's name, checksum and time: nothing is applied again, and the owners' runners then check
and continue from it as on any database. It runs under the migration lock before any owner
migrates, does nothing on a database already converted or never migrated, and leaves the
table exactly as a fresh database's (dropped and created again in one transaction).
"""

from __future__ import annotations

from grass.postgres.connection import Connection
from grass.postgres.errors import MigrationError

__all__ = ["RENUMBERED", "convert_single_sequence"]

#: Old version -> (old name, owner, new version); the name is unchanged.
RENUMBERED: dict[int, tuple[str, str, int]] = {
    1: ("schema", "storage", 1),
    2: ("ledger", "ledger", 1),
    3: ("accounts", "storage", 2),
    4: ("admin", "storage", 3),
    5: ("bucket_closes", "storage", 4),
    6: ("batch_writes", "storage", 5),
    7: ("ledger_outbox", "ledger", 2),
    8: ("bucket_lines", "storage", 6),
    9: ("cheaper_id_check", "storage", 7),
    10: ("unused_earnings_indexes", "storage", 8),
    11: ("earnings_keys_user_check", "storage", 9),
    12: ("outbox_by_contract", "ledger", 3),
    13: ("node_keys", "storage", 10),
}

_SINGLE_SEQUENCE = (
    "SELECT to_regclass('schema_migrations') IS NOT NULL AND NOT EXISTS ("
    " SELECT FROM pg_attribute WHERE attrelid = to_regclass('schema_migrations')"
    " AND attname = 'owner' AND NOT attisdropped)"
)


async def convert_single_sequence(conn: Connection, create_table: str) -> bool:
    """Rewrite the old single-sequence bookkeeping per owner (``create_table``: the new table's
    statement); False when there is nothing to convert. The caller holds the migration lock."""
    if not await conn.fetchval(_SINGLE_SEQUENCE):
        return False
    rows = await conn.fetch(
        "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
    )
    converted = []
    for row in rows:
        old_name, owner, version = RENUMBERED.get(int(row["version"]), (None, "", 0))
        if old_name != row["name"]:
            raise MigrationError(
                f"applied migration {row['version']} ({row['name']}) is unknown to this code:"
                " the database was migrated by another grass",
                details={"version": int(row["version"])},
            )
        converted.append((owner, version, row["name"], row["checksum"], row["applied_at"]))
    async with conn.transaction():
        await conn.execute("DROP TABLE schema_migrations")
        await conn.execute(create_table)
        await conn.executemany(
            "INSERT INTO schema_migrations (owner, version, name, checksum, applied_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            converted,
        )
    return True

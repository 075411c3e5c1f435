"""Schema migrations: numbered SQL files applied in order, each in its own transaction.

Each owner of tables (the stores, the ledger) ships its own ``NNNN_name.sql`` files, numbered
from 0001, and applies them with :func:`migrate` under its owner name: two owners never share
a version sequence. An applied file is recorded in ``schema_migrations`` under (owner, version)
with a checksum of its text and must never change afterwards (write a new migration instead).
:func:`migrate` holds a session advisory lock while it works, so instances starting together
apply each migration once, the others waiting then finding nothing to do. Per owner, it refuses
a database whose schema is newer than this code, a database missing a migration older than
one it has, and an applied migration whose file changed.

A database migrated before owners existed (one sequence for everything, no owner column) is
converted first, under the same lock: see :mod:`grass.postgres.single_sequence`.

Names are unqualified: everything lands in the first schema of ``search_path``, which is how
the tests give each module a schema of its own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from importlib.resources.abc import Traversable

import attrs

from grass.postgres.connection import Connection
from grass.postgres.errors import ChecksumMismatch, MigrationError, SchemaTooNew
from grass.postgres.pool import Database
from grass.postgres.single_sequence import convert_single_sequence

__all__ = [
    "LOCK_CLASS",
    "Migration",
    "load_migrations",
    "migrate",
    "schema_version",
]

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_OWNER = re.compile(r"^[a-z][a-z0-9_]*$")
# Two-key advisory lock: this constant plus a hash of the schema, so migrations of different
# schemas of one database (parallel test modules) do not wait for each other. Every owner
# takes the same lock: they share the bookkeeping table.
LOCK_CLASS = 0x67726173  # "gras"

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    owner      text        NOT NULL CHECK (owner ~ '^[a-z][a-z0-9_]*$'),
    version    integer     NOT NULL CHECK (version > 0),
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, version)
)
"""


@attrs.frozen(kw_only=True)
class Migration:
    version: int
    name: str
    sql: str = attrs.field(repr=False)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def load_migrations(directory: Traversable) -> list[Migration]:
    """The migrations in ``directory`` (one owner's), by version.

    Versions must run 1, 2, 3... without gaps or duplicates: a gap is a lost file.
    """
    found: list[Migration] = []
    for entry in directory.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file name {entry.name!r} is not NNNN_name.sql")
        found.append(
            Migration(version=int(match[1]), name=match[2], sql=entry.read_text(encoding="utf-8"))
        )
    found.sort(key=lambda m: m.version)
    expected = list(range(1, len(found) + 1))
    if [m.version for m in found] != expected:
        raise MigrationError(
            f"migration versions must be 1..{len(found)} without gaps or duplicates, "
            f"found {[m.version for m in found]}"
        )
    return found


async def schema_version(db: Database, owner: str) -> int:
    """The owner's highest applied migration; 0 for a database it never migrated or one whose
    old single-sequence bookkeeping is not converted yet (:func:`migrate` converts it first)."""

    async def read(conn: Connection) -> int:
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            return 0
        if not await conn.fetchval(_HAS_OWNERS):  # not converted yet
            return 0
        return int(
            await conn.fetchval(
                "SELECT coalesce(max(version), 0) FROM schema_migrations WHERE owner = $1", owner
            )
        )

    return await db.run(read, readonly=True)


_HAS_OWNERS = (
    "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('schema_migrations')"
    " AND attname = 'owner' AND NOT attisdropped)"
)


async def migrate(db: Database, owner: str, migrations: Sequence[Migration]) -> list[int]:
    """Apply the owner's pending migrations in order; return the versions applied (empty if
    none)."""
    if _OWNER.match(owner) is None:
        raise MigrationError(f"migration owner {owner!r} is not a lower-case name")
    async with db.connection() as conn:
        await conn.execute("SELECT pg_advisory_lock($1, hashtext(current_schema()))", LOCK_CLASS)
        try:
            await convert_single_sequence(conn, CREATE_TABLE)
            return await _migrate_locked(conn, owner, list(migrations))
        finally:
            # Also released by the pool's reset or the connection's end, whichever comes first.
            await conn.execute(
                "SELECT pg_advisory_unlock($1, hashtext(current_schema()))", LOCK_CLASS
            )


async def _migrate_locked(conn: Connection, owner: str, known: list[Migration]) -> list[int]:
    await conn.execute(CREATE_TABLE)
    rows = await conn.fetch(
        "SELECT version, name, checksum FROM schema_migrations WHERE owner = $1", owner
    )
    applied = {int(row["version"]): (str(row["name"]), str(row["checksum"])) for row in rows}
    pending = _check(owner, applied, known)
    done: list[int] = []
    for migration in pending:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (owner, version, name, checksum)"
                " VALUES ($1, $2, $3, $4)",
                owner,
                migration.version,
                migration.name,
                migration.checksum,
            )
        done.append(migration.version)
    return done


def _check(
    owner: str, applied: dict[int, tuple[str, str]], known: Iterable[Migration]
) -> list[Migration]:
    """The migrations to apply, after refusing any history this code does not agree with."""
    by_version = {m.version: m for m in known}
    code_version = max(by_version, default=0)
    db_version = max(applied, default=0)
    if db_version > code_version:
        raise SchemaTooNew(
            f"database schema of {owner} is at version {db_version}, newer than the"
            f" {code_version} this code knows: upgrade grass before starting it against this"
            " database",
            details={"owner": owner, "database_version": db_version, "code_version": code_version},
        )
    for version, (name, checksum) in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"applied {owner} migration {version} ({name}) is unknown to this code"
            )
        if checksum != migration.checksum:
            raise ChecksumMismatch(
                f"{owner} migration {migration.label} was changed after it was applied "
                f"(checksum {checksum[:12]}... in the database, {migration.checksum[:12]}... "
                f"in the file): add a new migration instead",
                details={"owner": owner, "version": version},
            )
    pending = [m for v, m in sorted(by_version.items()) if v not in applied]
    if pending and pending[0].version < db_version:
        raise MigrationError(
            f"{owner} migration {pending[0].label} is not applied but later version"
            f" {db_version} is",
            details={"owner": owner, "version": pending[0].version, "database_version": db_version},
        )
    return pending

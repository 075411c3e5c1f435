"""Schema migrations: numbered SQL files applied in order, each in its own transaction.

``migrations/NNNN_name.sql`` files are the schema's history; an applied file is recorded in
``schema_migrations`` with a checksum of its text and must never change afterwards (write a
new migration instead). :func:`migrate` holds a session advisory lock while it works, so
instances starting together apply each migration once, the others waiting then finding
nothing to do. It refuses a database whose schema is newer than this code, a database
missing a migration older than one it has, and an applied migration whose file changed.

Names are unqualified: everything lands in the first schema of ``search_path``, which is how
the tests give each module a schema of its own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from importlib.resources.abc import Traversable

import attrs

from grass.postgres.errors import ChecksumMismatch, MigrationError, SchemaTooNew
from grass.postgres.pool import Connection, Database

__all__ = [
    "Migration",
    "load_migrations",
    "migrate",
    "schema_version",
]

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Two-key advisory lock: this constant plus a hash of the schema, so migrations of different
# schemas of one database (parallel test modules) do not wait for each other.
LOCK_CLASS = 0x67726173  # "gras"

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY CHECK (version > 0),
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
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


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    """The migrations shipped with the package (or in ``directory``), by version.

    Versions must run 1, 2, 3... without gaps or duplicates: a gap is a lost file.
    """
    folder = directory or resources.files("grass.storage.postgres").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
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


async def schema_version(db: Database) -> int:
    """The highest applied migration, 0 for a database never migrated."""

    async def read(conn: Connection) -> int:
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            return 0
        return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))

    return await db.run(read, readonly=True)


async def migrate(db: Database, migrations: Sequence[Migration] | None = None) -> list[int]:
    """Apply the pending migrations in order; return the versions applied (empty if none)."""
    known = list(migrations) if migrations is not None else load_migrations()
    async with db.connection() as conn:
        await conn.execute("SELECT pg_advisory_lock($1, hashtext(current_schema()))", LOCK_CLASS)
        try:
            return await _migrate_locked(conn, known)
        finally:
            # Also released by the pool's reset or the connection's end, whichever comes first.
            await conn.execute(
                "SELECT pg_advisory_unlock($1, hashtext(current_schema()))", LOCK_CLASS
            )


async def _migrate_locked(conn: Connection, known: list[Migration]) -> list[int]:
    await conn.execute(_CREATE_TABLE)
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    applied = {int(row["version"]): (str(row["name"]), str(row["checksum"])) for row in rows}
    pending = _check(applied, known)
    done: list[int] = []
    for migration in pending:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
        done.append(migration.version)
    return done


def _check(applied: dict[int, tuple[str, str]], known: Iterable[Migration]) -> list[Migration]:
    """The migrations to apply, after refusing any history this code does not agree with."""
    by_version = {m.version: m for m in known}
    code_version = max(by_version, default=0)
    db_version = max(applied, default=0)
    if db_version > code_version:
        raise SchemaTooNew(
            f"database schema is at version {db_version}, newer than the {code_version} this "
            f"code knows: upgrade grass before starting it against this database",
            details={"database_version": db_version, "code_version": code_version},
        )
    for version, (name, checksum) in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(f"applied migration {version} ({name}) is unknown to this code")
        if checksum != migration.checksum:
            raise ChecksumMismatch(
                f"migration {migration.label} was changed after it was applied "
                f"(checksum {checksum[:12]}... in the database, {migration.checksum[:12]}... "
                f"in the file): add a new migration instead",
                details={"version": version},
            )
    pending = [m for v, m in sorted(by_version.items()) if v not in applied]
    if pending and pending[0].version < db_version:
        raise MigrationError(
            f"migration {pending[0].label} is not applied but later version {db_version} is",
            details={"version": pending[0].version, "database_version": db_version},
        )
    return pending

"""The PostgreSQL anchor: roots in ``ledger_anchored_roots`` (the ledger's migration
``postgres_migrations/0001_ledger.sql``)."""

from __future__ import annotations

from grass.ledger.abc import AnchorFailed
from grass.postgres.connection import Connection
from grass.postgres.pool import Database


class PostgresAnchor:
    """Roots in ``ledger_anchored_roots`` with the contract's rules: one root per epoch, epochs
    increasing, a zero root refused. Final as soon as committed."""

    capabilities: frozenset[str] = frozenset({"persistent"})

    def __init__(self, db: Database) -> None:
        self._db = db

    async def post(self, epoch: int, root: bytes) -> str:
        async def work(conn: Connection) -> str:
            # Posts are rare (one per epoch): a table lock makes the ordering check race-free.
            await conn.execute("LOCK TABLE ledger_anchored_roots IN EXCLUSIVE MODE")
            row = await conn.fetchrow(
                "SELECT root, ref FROM ledger_anchored_roots WHERE epoch = $1", epoch
            )
            if row is not None:
                if bytes(row["root"]) != root:
                    raise AnchorFailed(
                        "another root is anchored for this epoch", details={"epoch": epoch}
                    )
                return str(row["ref"])
            if root == bytes(32):
                raise AnchorFailed("a zero root is refused", details={"epoch": epoch})
            latest = await conn.fetchval("SELECT max(epoch) FROM ledger_anchored_roots")
            if latest is not None and epoch <= latest:
                raise AnchorFailed(
                    "epochs must increase", details={"epoch": epoch, "latest": latest}
                )
            ref = f"postgres:{epoch}:{root.hex()}"
            await conn.execute(
                "INSERT INTO ledger_anchored_roots (epoch, root, ref) VALUES ($1, $2, $3)",
                epoch,
                root,
                ref,
            )
            return ref

        return await self._db.run(work)

    async def wait_final(self, epoch: int, root: bytes, ref: str) -> str:
        return ref

    async def ref(self, epoch: int) -> str | None:
        ref = await self._db.run(
            lambda conn: conn.fetchval(
                "SELECT ref FROM ledger_anchored_roots WHERE epoch = $1", epoch
            ),
            readonly=True,
        )
        return None if ref is None else str(ref)

    async def anchored(self, epoch: int) -> bytes | None:
        root = await self._db.run(
            lambda conn: conn.fetchval(
                "SELECT root FROM ledger_anchored_roots WHERE epoch = $1", epoch
            ),
            readonly=True,
        )
        return None if root is None else bytes(root)

    async def confirmations(self, ref: str) -> int:
        found = await self._db.run(
            lambda conn: conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM ledger_anchored_roots WHERE ref = $1)", ref
            ),
            readonly=True,
        )
        return 1 if found else 0

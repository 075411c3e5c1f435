"""With a replica DSN, the stores' dashboard reads go to the replica, everything else to the
primary.

The "replica" here is a second schema on the same server, empty like a replica that has not
caught up: what a read returns tells which pool served it.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

from grass.config import load_config
from grass.domain.epochs import EpochTotals
from grass.domain.uptime import UptimeStats
from grass.postgres.pool import open_postgres
from grass.services.epochs import EpochService
from grass.storage.postgres.storage import open_postgres_storage
from tests.storage.conftest import T0, delta, make_device, make_entry, make_user


def _in_schema(dsn: str, schema: str) -> str:
    return f"{dsn}?options={quote(f'-csearch_path={schema}')}"


async def test_dashboard_reads_go_to_the_replica(postgres_dsn):
    primary, replica = (f"r_{uuid.uuid4().hex[:16]}" for _ in range(2))
    async with open_postgres(postgres_dsn, min_size=1, max_size=1) as admin:
        for schema in (primary, replica):
            await admin.run(lambda c, s=schema: c.execute(f'CREATE SCHEMA "{s}"'))
        try:
            async with open_postgres_storage(_in_schema(postgres_dsn, replica)):
                pass  # migrated: the replica has the schema, and no rows
            async with open_postgres_storage(
                _in_schema(postgres_dsn, primary), replica_dsn=_in_schema(postgres_dsn, replica)
            ) as storage:
                user = make_user()
                await storage.users.create_user(user)
                device = make_device(user)
                await storage.devices.create_device(device)
                await storage.uptime.add_uptime([delta(device, seconds=42)])
                await storage.earnings.insert_earnings([make_entry(user.id, amount=5)])

                # Dashboard views: served by the replica, which has not seen the writes.
                assert await storage.uptime.uptime_stats(user_id=user.id) == UptimeStats()
                assert await storage.uptime.uptime_by_device(user.id) == {}
                assert (await storage.earnings.earnings_totals(user_id=user.id)).total == 0
                # Reads that must see this instance's own writes stay on the primary.
                (bucket,) = (await storage.uptime.list_buckets(T0)).items
                assert bucket.stats.seconds == 42
                # Inside a unit of work everything runs on the unit's primary connection.
                async with storage.transaction() as tx:
                    assert (await tx.uptime.uptime_stats(user_id=user.id)).seconds == 42
                # The epoch job freezes totals and reads the epochs to settle from the primary:
                # a replica a moment behind would freeze an epoch without its last bucket.
                epochs = EpochService(storage, None, lambda: load_config(environ={})[0])
                epoch = await epochs.ensure(epochs.number_at(T0))
                assert await epochs.totals(epoch) == EpochTotals(
                    points=5, uptime_seconds=42, users=1
                )
                assert [e.number for e in await epochs._unsettled()] == [epoch.number]
        finally:
            for schema in (primary, replica):
                await admin.run(lambda c, s=schema: c.execute(f'DROP SCHEMA "{s}" CASCADE'))

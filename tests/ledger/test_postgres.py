"""PostgreSQL-only ledger cases: races on two connections and a crash inside a settlement."""

from __future__ import annotations

import pytest
import trio

from grass.ledger.abc import Credit, CreditConflict, SettlementStatus
from grass.ledger.postgres import PostgresJournal, open_postgres_ledger
from grass.ledger.postgres_schema import migrate_ledger_tables
from tests.storage.postgres.conftest import open_test_database, temporary_schema


@pytest.fixture
def pg_fresh_schema(postgres_dsn):
    with temporary_schema(postgres_dsn, prefix="ledger") as name:
        yield name


@pytest.fixture
async def db(pg_fresh_schema, postgres_dsn):
    async with open_test_database(postgres_dsn, pg_fresh_schema, max_size=4) as opened:
        await migrate_ledger_tables(opened)
        yield opened


def credit(key: str, amount: int = 100, epoch: int = 1, user: str = "alice") -> Credit:
    return Credit(key=key, user_id=user, amount=amount, epoch=epoch)


async def _race(db, first_batch, second_batch):
    """Run two record() calls whose inserts overlap: the first holds its uncommitted row of
    the shared key while the second's INSERT ... ON CONFLICT must wait for it."""
    journal = PostgresJournal(db)
    results: dict[str, object] = {}
    # A third connection holds the key's row lock the way a slow concurrent batch would.
    async with db.connection() as blocker:
        await blocker.execute("BEGIN")
        await blocker.execute(
            "INSERT INTO ledger_credits (key, user_id, amount, epoch, source, created)"
            " VALUES ($1, 'alice', 100, 1, 'uptime', now())",
            first_batch[0].key,
        )

        async def one(name, batch):
            try:
                results[name] = await journal.record(batch)
            except CreditConflict as exc:
                results[name] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, "first", first_batch)
            nursery.start_soon(one, "second", second_batch)
            # Both calls reach the locked key; neither can finish before the blocker ends.
            await _wait_for_lock_waiters(db, 2)
            assert results == {}
            await blocker.execute("ROLLBACK")
    return results


async def _wait_for_lock_waiters(db, count):
    with trio.fail_after(10):
        while True:
            waiting = await db.run(
                lambda c: c.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
            if waiting >= count:
                return
            await trio.sleep(0.01)


async def test_unique_key_race_records_once(db):
    results = await _race(db, [credit("k"), credit("a")], [credit("k"), credit("b")])
    news = sorted((r.new, r.duplicates) for r in results.values())
    assert news == [(1, 1), (2, 0)]
    rows = await db.run(lambda c: c.fetch("SELECT key FROM ledger_credits ORDER BY key"))
    assert [r["key"] for r in rows] == ["a", "b", "k"]
    balance = (await PostgresJournal(db).balances(["alice"]))["alice"]
    assert balance.pending == 300


async def test_unique_key_race_with_other_content_refuses_the_loser(db):
    results = await _race(db, [credit("k"), credit("a")], [credit("k", amount=7), credit("b")])
    outcomes = {type(r).__name__ for r in results.values()}
    assert outcomes == {"RecordResult", "CreditConflict"}
    loser = next(r for r in results.values() if isinstance(r, CreditConflict))
    assert loser.details == {"key": "k"}
    rows = await db.run(lambda c: c.fetch("SELECT key, amount FROM ledger_credits"))
    keys = {r["key"] for r in rows}
    # The loser's whole batch is gone: its other credit too.
    assert keys in ({"k", "a"}, {"k", "b"})
    total = (await PostgresJournal(db).balances(["alice"]))["alice"].pending
    assert total == sum(int(r["amount"]) for r in rows)


class Crash(Exception):
    pass


@pytest.mark.parametrize("step", ["pending", "post", "anchored"])
async def test_crash_between_steps_leaves_one_settlement(db, step, postgres_dsn, pg_fresh_schema):
    async def hook(name):
        if name == step:
            raise Crash(name)

    async with open_postgres_ledger(db, step_hook=hook) as ledger:
        await ledger.record([credit("a"), credit("b", user="bob", amount=3)])
        with pytest.raises(Crash):
            await ledger.settle(1)
    # A new process: another pool on the same schema, no hook.
    async with (
        open_test_database(postgres_dsn, pg_fresh_schema) as again,
        open_postgres_ledger(again) as ledger,
    ):
        settled = await ledger.settle(1)
        assert settled.status is SettlementStatus.CONFIRMED
        assert await ledger.settle(1) == settled
        assert (await ledger.verify()).ok
    rows = await db.run(lambda c: c.fetch("SELECT epoch, root FROM ledger_settlements"))
    anchored = await db.run(lambda c: c.fetch("SELECT epoch, root FROM ledger_anchored_roots"))
    assert [(r["epoch"], bytes(r["root"])) for r in rows] == [(1, settled.root)]
    assert [(r["epoch"], bytes(r["root"])) for r in anchored] == [(1, settled.root)]


async def test_large_amounts_are_exact(db):
    journal = PostgresJournal(db)
    big = 2**200 + 1
    await journal.record([credit("a", amount=big), credit("b", amount=big)])
    assert (await journal.balances(["alice"]))["alice"].pending == 2 * big
    assert list((await journal.cumulative(1)).values()) == [2 * big]

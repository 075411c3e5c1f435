"""``grass ledger ...`` as an operator runs it, on PostgreSQL and a mock chain on disk."""

from __future__ import annotations

import pytest
import trio

from grass.cli import main
from grass.ledger.abc import Credit
from grass.ledger.postgres import PostgresJournal
from grass.storage.postgres.storage import open_postgres_storage
from tests.storage.postgres.conftest import temporary_schema


@pytest.fixture
def store(postgres_dsn, monkeypatch, tmp_path):
    with temporary_schema(postgres_dsn, prefix="ledgercli") as name:
        dsn = f"{postgres_dsn}?search_path={name}"
        monkeypatch.setenv("GRASS_STORAGE", "postgres")
        monkeypatch.setenv("GRASS_POSTGRES_DSN", dsn)
        monkeypatch.setenv("GRASS_LEDGER", "postgres")
        monkeypatch.setenv("GRASS_LEDGER_MOCKCHAIN_PATH", str(tmp_path / "chain"))
        monkeypatch.setenv("GRASS_LEDGER_MOCKCHAIN_BLOCK_TIME", "0.05")
        monkeypatch.setenv("GRASS_LOGGING_LEVEL", "error")
        yield dsn


async def _seed(dsn: str) -> None:
    async with open_postgres_storage(dsn, min_size=1, max_size=2) as pg:
        journal = PostgresJournal(pg.db)
        for epoch in (1, 2):
            await journal.record(
                [
                    Credit(key=f"{epoch}:{u}", user_id=f"u{u}", amount=u + 1, epoch=epoch)
                    for u in range(300)
                ]
            )


async def _tamper(dsn: str) -> None:
    async with open_postgres_storage(dsn, min_size=1, max_size=2) as pg:
        await pg.db.run(
            lambda c: c.execute(
                "UPDATE ledger_anchored_roots SET root = $1 WHERE epoch = 2", b"\x07" * 32
            )
        )


def test_settle_status_migrate_verify(store, capsys):
    trio.run(_seed, store)
    assert main(["ledger", "settle", "1"]) == 0
    assert main(["ledger", "settle", "2"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1 confirmed: 300 users, total 45150" in out
    assert main(["ledger", "status"]) == 0
    out = capsys.readouterr().out
    assert "ledger postgres: 2 settlement(s)" in out
    assert out.count("anchored (1 confirmation(s))") == 2

    assert main(["ledger", "migrate", "--from", "postgres", "--to", "mockchain"]) == 0
    captured = capsys.readouterr()
    assert "migrate postgres -> mockchain (one journal: roots re-anchored)" in captured.out
    assert captured.out.count("re-anchored  root") == 2
    assert "verify mockchain: 2 epoch(s), every root agrees" in captured.out
    assert "epochs   [" in captured.err  # the progress bar
    assert main(["ledger", "verify", "--backend", "mockchain"]) == 0
    # The chain on disk survived the process: status reads it back.
    assert main(["ledger", "status", "--backend", "mockchain"]) == 0
    assert capsys.readouterr().out.count("  anchored (") == 2

    trio.run(_tamper, store)
    assert main(["ledger", "verify"]) == 1
    out = capsys.readouterr().out
    assert "verify postgres: 1 of 2 epoch(s) disagree: [2]" in out
    assert main(["ledger", "verify", "--backend", "mockchain"]) == 0


def test_migrate_needs_two_backends(store, capsys):
    assert main(["ledger", "migrate", "--from", "postgres", "--to", "postgres"]) == 2
    assert "two different backends" in capsys.readouterr().err

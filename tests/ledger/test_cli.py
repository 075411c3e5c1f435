"""``grass ledger ...`` as an operator runs it, on PostgreSQL and a mock chain on disk."""

from __future__ import annotations

import io
import re

import pytest
import trio

from grass.cli import main
from grass.cli.ledger import ProgressBar
from grass.ledger.abc import Credit
from grass.ledger.postgres import PostgresJournal
from grass.ledger.postgres_schema import migrate_ledger_tables
from grass.storage.postgres.storage import open_postgres_storage
from tests.ledger.evm import anvil_node
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
        await migrate_ledger_tables(pg.db)  # what opening a ledger on the store does
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
    captured = capsys.readouterr()
    assert "epoch 1 confirmed: 300 users, total 45150" in captured.out
    # Not a terminal: plain progress lines, the tree's up to its 599 hashes, every step.
    assert "tree     [##############################] 100% 599/599\n" in captured.err
    assert "settle confirmed [" in captured.err
    assert "\r" not in captured.err
    assert main(["ledger", "settle", "2"]) == 0
    out = capsys.readouterr().out
    assert "epoch 2 confirmed: 300 users, total 90300" in out
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
    assert "verify   [##############################] 100% 2/2" in capsys.readouterr().err
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


@pytest.mark.parametrize(("source", "target"), [("memory", "postgres"), ("postgres", "memory")])
def test_migrate_refuses_the_memory_anchor(store, capsys, source, target):
    assert main(["ledger", "migrate", "--from", source, "--to", target]) == 2
    err = capsys.readouterr().err
    flag = "--from" if source == "memory" else "--to"
    assert f"ledger migrate {flag} memory: the memory anchor lives inside one process" in err


def test_migrate_refuses_a_journal_in_memory(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("GRASS_STORAGE", "memory")
    monkeypatch.setenv("GRASS_LEDGER_MOCKCHAIN_PATH", str(tmp_path / "chain"))
    assert main(["ledger", "migrate", "--from", "mockchain", "--to", "postgres"]) == 2
    assert "storage.backend = memory: the journal would be a new, empty one" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "chain").exists()  # refused before anything was opened


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_redraws_one_line_on_a_terminal():
    out = _Terminal()
    bar = ProgressBar(out, width=10)
    bar.update("settle confirmed", 7, 7)
    bar.update("tree", 5, 10)
    bar.update("read", 65536, None)
    bar.finish()
    bar.finish()  # a second finish adds nothing
    text = out.getvalue()
    first, second, third = text.rstrip("\n").split("\r")[1:]
    assert first == "settle confirmed [##########] 100% 7/7"
    assert second.startswith("tree     [#####     ]  50% 5/10")
    assert len(second) == len(first)  # padded over the longer line it replaces
    assert third.rstrip() == "read     65536"
    assert text.endswith("\n")
    assert text.count("\n") == 1


def test_the_progress_bar_prints_a_line_per_tenth_elsewhere():
    out = io.StringIO()
    bar = ProgressBar(out)
    for done in range(0, 1001, 7):
        bar.update("tree", done, 1000)
    for done in (1, 2, 3, 4, 100, 1000):
        bar.update("read", done, None)
    lines = out.getvalue().splitlines()
    assert len([line for line in lines if line.startswith("tree")]) == 10
    assert [line for line in lines if line.startswith("read")] == [
        "read     1",
        "read     2",
        "read     4",
        "read     100",
        "read     1000",
    ]


def test_postgres_to_mockchain_to_web3_on_anvil(store, capsys, monkeypatch, anvil_url):
    trio.run(_seed, store)
    assert main(["ledger", "settle", "1"]) == 0
    assert main(["ledger", "settle", "2"]) == 0
    assert main(["ledger", "migrate", "--from", "postgres", "--to", "mockchain"]) == 0
    capsys.readouterr()

    signer = anvil_node(anvil_url).new_signer()
    monkeypatch.setenv("GRASS_LEDGER_RPC_URL", anvil_url)
    monkeypatch.setenv("GRASS_LEDGER_PRIVATE_KEY", signer.key.hex())
    assert main(["ledger", "deploy"]) == 0
    out = capsys.readouterr().out
    address = re.search(r"GRASS_LEDGER_CONTRACT_ADDRESS\) to (0x[0-9a-fA-F]{40})", out)[1]
    block = re.search(r"GRASS_LEDGER_CONTRACT_BLOCK\) to (\d+)", out)[1]
    monkeypatch.setenv("GRASS_LEDGER_CONTRACT_ADDRESS", address)
    monkeypatch.setenv("GRASS_LEDGER_CONTRACT_BLOCK", block)
    # anvil mines a block per transaction and none in between: one confirmation is all it gives.
    monkeypatch.setenv("GRASS_LEDGER_CONFIRMATIONS", "1")
    monkeypatch.setenv("GRASS_LEDGER_POLL_INTERVAL", "0.02")

    assert main(["ledger", "migrate", "--from", "mockchain", "--to", "web3"]) == 0
    out = capsys.readouterr().out
    assert "migrate mockchain -> web3 (one journal: roots re-anchored)" in out
    assert out.count("re-anchored  root") == 2
    assert "verify web3: 2 epoch(s), every root agrees" in out
    assert main(["ledger", "verify", "--backend", "web3"]) == 0
    assert main(["ledger", "migrate", "--from", "mockchain", "--to", "web3"]) == 0
    assert capsys.readouterr().out.count("already there  root") == 2

    refs = {}
    for backend in ("postgres", "mockchain", "web3"):
        assert main(["ledger", "status", "--backend", backend]) == 0
        out = capsys.readouterr().out
        assert out.count("  anchored (") == 2, out
        refs[backend] = re.findall(r"ref (\S+)", out)
    # Each backend keeps its own references: three different pairs.
    assert all(ref.startswith("postgres:") for ref in refs["postgres"])
    assert len({*refs["postgres"], *refs["mockchain"], *refs["web3"]}) == 6

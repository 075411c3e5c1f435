"""``grass ledger status | settle | verify | migrate | deploy``, called by ``grass.cli.main``.

Every command opens the configured store and the ledger(s) it names, does its work and closes
them; output goes to stdout, progress to stderr (a bar redrawn in place on a terminal, a line now
and then otherwise). Exit codes: 0 done, 1 failed (a verification mismatch included), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

import trio

from grass.backends import open_ledger, open_store
from grass.config import Config, LedgerBackend, StorageBackend
from grass.errors import GrassError
from grass.ledger.abc import VerifyReport
from grass.ledger.anchored import AnchoredLedger
from grass.ledger.migrate import MigrationReport, migrate_ledger

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
BACKENDS = [b.value for b in LedgerBackend]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ledger = commands.add_parser("ledger", help="inspect, settle, verify or move the ledger")
    sub = ledger.add_subparsers(dest="ledger_command", required=True)
    status = sub.add_parser("status", help="settlements and what the anchor holds")
    status.add_argument("--backend", choices=BACKENDS, help="default: ledger.backend")
    settle = sub.add_parser("settle", help="settle an epoch (tree, root, anchor, confirmations)")
    settle.add_argument("epoch", type=int)
    settle.add_argument("--backend", choices=BACKENDS, help="default: ledger.backend")
    verify = sub.add_parser("verify", help="recompute every root from the journal and compare")
    verify.add_argument("--backend", choices=BACKENDS, help="default: ledger.backend")
    migrate = sub.add_parser("migrate", help="re-anchor every settled epoch on another backend")
    migrate.add_argument("--from", dest="source", choices=BACKENDS, required=True)
    migrate.add_argument("--to", dest="target", choices=BACKENDS, required=True)
    migrate.add_argument("--batch", type=int, default=10_000, help="credits per copied batch")
    deploy = sub.add_parser("deploy", help="deploy the distributor with ledger.private_key")
    deploy.add_argument("--token", default="0x" + "00" * 20, help="ERC-20 paid on claims")


def migrate_refusal(config: Config, source: str, target: str) -> str | None:
    """Why ``migrate --from source --to target`` cannot do anything useful, if it cannot."""
    if source == target:
        return "ledger migrate needs two different backends"
    memory = LedgerBackend.MEMORY.value
    if memory in (source, target):
        where = "--from" if source == memory else "--to"
        return (
            f"ledger migrate {where} memory: the memory anchor lives inside one process, so this"
            " command would open an empty one and lose it at exit; migrate between persistent"
            " backends (postgres, mockchain, web3)"
        )
    if config.storage.backend is StorageBackend.MEMORY:
        return (
            "ledger migrate with storage.backend = memory: the journal would be a new, empty one;"
            " set storage.backend = postgres (GRASS_STORAGE=postgres)"
        )
    return None


def run(config: Config, args: argparse.Namespace) -> int:
    if args.ledger_command == "migrate":
        refusal = migrate_refusal(config, args.source, args.target)
        if refusal is not None:
            print(f"grass: {refusal}", file=sys.stderr)
            return EXIT_USAGE
    try:
        return trio.run(_run, config, args)
    except GrassError as exc:
        print(f"grass: {exc}", file=sys.stderr)
        return EXIT_FAILURE


async def _run(config: Config, args: argparse.Namespace) -> int:
    command = args.ledger_command
    if command == "deploy":
        return await _deploy(config, args.token)
    async with open_store(config, pool_size=4, maintain=False) as store:
        if command == "migrate":
            source, target = LedgerBackend(args.source), LedgerBackend(args.target)
            journal = store.journal
            async with (
                open_ledger(config, store, backend=source, journal=journal) as a,
                open_ledger(config, store, backend=target, journal=journal) as b,
            ):
                progress = ProgressBar(sys.stderr)
                try:
                    report = await migrate_ledger(a, b, progress=progress.update, batch=args.batch)
                finally:
                    progress.finish()
                print_migration(report, source.value, target.value)
                return EXIT_OK if report.verify.ok else EXIT_FAILURE
        backend = LedgerBackend(args.backend) if args.backend else config.ledger.backend
        async with open_ledger(config, store, backend=backend) as ledger:
            if command == "status":
                await print_status(ledger, backend.value)
                return EXIT_OK
            progress = ProgressBar(sys.stderr)
            if command == "settle":
                started = time.perf_counter()
                try:
                    s = await ledger.settle(args.epoch, progress=progress.update)
                finally:
                    progress.finish()
                print(
                    f"epoch {s.epoch} {s.status.value}: {s.user_count} users, total {s.total},"
                    f" root 0x{s.root.hex()}, anchor {s.anchor_ref}"
                    f" ({time.perf_counter() - started:.2f} s)"
                )
                return EXIT_OK
            try:
                checked = await ledger.verify(progress=progress.update)
            finally:
                progress.finish()
            print_verify(checked, backend.value)
            return EXIT_OK if checked.ok else EXIT_FAILURE


async def _deploy(config: Config, token: str) -> int:
    from grass.ledger.web3 import connect, deploy_distributor, load_signer

    settings = config.ledger
    if not settings.rpc_url:
        print("grass: ledger deploy needs ledger.rpc_url", file=sys.stderr)
        return EXIT_USAGE
    signer = load_signer(
        private_key=settings.private_key.reveal(),
        keystore_path=settings.keystore_path,
        password=settings.keystore_password.reveal(),
    )
    deployed = await deploy_distributor(connect(settings.rpc_url), signer, token=token)
    where = f"distributor {deployed.address} deployed in block {deployed.block}"
    print(f"{where}, owned by {signer.address}")
    print(f"set ledger.contract_address (GRASS_LEDGER_CONTRACT_ADDRESS) to {deployed.address}")
    print(f"set ledger.contract_block (GRASS_LEDGER_CONTRACT_BLOCK) to {deployed.block}")
    return EXIT_OK


async def print_status(ledger: AnchoredLedger, backend: str) -> None:
    settlements = await ledger.settlements()
    print(f"ledger {backend}: {len(settlements)} settlement(s)")
    for s in settlements:
        anchored = await ledger.anchor.anchored(s.epoch)
        where = "anchored" if anchored == s.root else "NOT on the anchor"
        confirmations = await ledger.anchor.confirmations(s.anchor_ref) if s.anchor_ref else 0
        print(
            f"  epoch {s.epoch:>6}  {s.status.value:<9}  users {s.user_count:>9}"
            f"  total {s.total:>16}  root 0x{s.root.hex()[:16]}…  {where}"
            f" ({confirmations} confirmation(s))  ref {s.anchor_ref}"
        )


def print_verify(report: VerifyReport, backend: str) -> None:
    for e in report.epochs:
        mark = "ok" if e.ok else "MISMATCH"
        anchored = f"0x{e.anchored_root.hex()[:16]}…" if e.anchored_root else "nothing"
        print(
            f"  epoch {e.epoch:>6}  {mark:<8}  journal 0x{e.expected_root.hex()[:16]}…"
            f"  recorded 0x{e.recorded_root.hex()[:16]}…  anchored {anchored}"
        )
    bad = [e.epoch for e in report.epochs if not e.ok]
    if bad:
        print(f"verify {backend}: {len(bad)} of {len(report.epochs)} epoch(s) disagree: {bad}")
    else:
        print(f"verify {backend}: {len(report.epochs)} epoch(s), every root agrees")


def print_migration(report: MigrationReport, source: str, target: str) -> None:
    how = "one journal: roots re-anchored" if report.shared_journal else "journal copied"
    print(f"migrate {source} -> {target} ({how})")
    print(
        f"  credits copied: {report.credits_copied}"
        f" (already there: {report.credits_already_there}); links copied: {report.links_copied}"
    )
    for m in report.epochs:
        print(
            f"  epoch {m.epoch:>6}  {m.action:<11}  root 0x{m.root.hex()[:16]}…"
            f"  {source} {m.source_ref} -> {target} {m.target_ref}"
        )
    if report.skipped:
        skipped = ", ".join(f"{s.epoch} ({s.status.value})" for s in report.skipped)
        print(f"  not moved (not confirmed on {source}): {skipped}")
    print_verify(report.verify, target)


class ProgressBar:
    """A one-line bar on a terminal; elsewhere (a pipe, a log) a plain line per phase and per
    tenth of its work, or per doubling of the count when the total is not known."""

    def __init__(self, out: TextIO, width: int = 30) -> None:
        self.out = out
        self.width = width
        self.tty = out.isatty()
        self._last: tuple[str, int] = ("", -1)
        self._drawn = 0

    def update(self, phase: str, done: int, total: int | None) -> None:
        if total is not None and total > 0:
            share = done / total
            bar = "#" * int(share * self.width)
            line = f"{phase:<8} [{bar:<{self.width}}] {share:4.0%} {done}/{total}"
            step = int(share * 10)
        else:
            line = f"{phase:<8} {done}"
            step = done.bit_length()  # a line per doubling when the total is unknown
        if self.tty:
            # Padded to the last line's length: a shorter line must hide all of it.
            self.out.write("\r" + line.ljust(self._drawn))
            self.out.flush()
            self._drawn = len(line)
        elif self._last != (phase, step):
            self.out.write(line + "\n")
            self.out.flush()
        self._last = (phase, step)

    def finish(self) -> None:
        """End the bar's line (on a terminal); the next update starts a new one."""
        if self.tty and self._drawn:
            self.out.write("\n")
            self.out.flush()
        self._last, self._drawn = ("", -1), 0

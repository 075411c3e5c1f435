"""The ``grass`` command.

Exit codes: 0 done, 1 a start-up or run-time failure (one line on stderr), 2 bad usage or an
invalid configuration (every problem listed, nothing opened), 130 stopped by a second signal
before the graceful shutdown had finished.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import attrs
import trio

from grass import logs
from grass.app import Server, run
from grass.cli import ledger as ledger_cli
from grass.config import Config, Port, StorageBackend, load_config, show
from grass.domain.bearer import is_node_key
from grass.domain.users import Role
from grass.errors import ConfigError, GrassError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_FORCED = 0, 1, 2, 130

#: Where ``grass node`` reads its node key when no option names it. The config loader, which
#: refuses unknown ``GRASS_*`` variables, knows this one is not a setting (grass.config).
NODE_KEY_VARIABLE = "GRASS_NODE_KEY"


#: A node key file holds one key (a few dozen characters): what is read of it is bounded.
MAX_KEY_FILE_CHARS = 4096


class UsageError(Exception):
    """Bad command-line usage: one line on stderr, exit 2."""


def node_credential(key_file: str | None, user_id: str | None, environ: Mapping[str, str]) -> str:
    """What ``grass node`` authenticates with: the key in ``key_file``, else ``--user-id``,
    else ``$GRASS_NODE_KEY``. UsageError when none or both options are given, or the file
    cannot be read or is empty."""
    if key_file is not None and user_id is not None:
        raise UsageError("give --node-key-file or --user-id, not both")
    if key_file is not None:
        try:
            with open(key_file, encoding="utf-8") as file:
                key = file.read(MAX_KEY_FILE_CHARS + 1).strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the node key file {key_file}: {exc}") from None
        if not key:
            raise UsageError(f"the node key file {key_file} is empty")
        if len(key) > MAX_KEY_FILE_CHARS:
            raise UsageError(
                f"the node key file {key_file} holds more than a key"
                f" (over {MAX_KEY_FILE_CHARS} characters)"
            )
        return key
    if user_id is not None:
        return user_id
    key = environ.get(NODE_KEY_VARIABLE, "").strip()
    if not key:
        raise UsageError(f"no node key: give --node-key-file PATH or set {NODE_KEY_VARIABLE}")
    return key


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grass", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="TOML config file (default: $GRASS_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the node gateway and the HTTP server")
    serve.add_argument("--host", help="HTTP listen address (overrides server.http_host)")
    serve.add_argument("--port", type=int, help="HTTP port (overrides server.http_port)")
    serve.add_argument("--node-host", help="node listen address (overrides server.node_host)")
    serve.add_argument("--node-port", type=int, help="node port (overrides server.node_port)")
    migrate = commands.add_parser(
        "migrate",
        help="apply the PostgreSQL migrations (the stores', then the ledger's), create partitions",
    )
    migrate.add_argument("--dsn", help="PostgreSQL DSN (default: storage.postgres_dsn)")
    node = commands.add_parser(
        "node",
        help="run reference node clients (v4, or v5 with --checkin)",
        description="The devices authenticate with a node key of their user. Give it in a file "
        f"(--node-key-file) or in ${NODE_KEY_VARIABLE}, not on the command line: arguments are "
        "visible to every local user (ps) and kept in shell history.",
    )
    node.add_argument("--url", default="ws://127.0.0.1:4650/", help="node WebSocket address")
    node.add_argument(
        "--node-key-file",
        metavar="PATH",
        help="a file holding the node key (surrounding whitespace ignored); "
        f"default: ${NODE_KEY_VARIABLE}",
    )
    node.add_argument(
        "--user-id",
        help="the node key itself (visible in ps: prefer --node-key-file or "
        f"${NODE_KEY_VARIABLE}), or with legacy auth the user's id",
    )
    node.add_argument("--devices", type=int, default=1, help="how many devices to simulate")
    node.add_argument("--ping-interval", type=float, default=60.0, help="seconds between PINGs")
    node.add_argument("--jitter", type=float, default=0.2, help="share of the interval, random")
    node.add_argument("--checkin", help="v5: the /checkin URL (e.g. http://127.0.0.1:8000/checkin)")
    ledger_cli.add_parser(commands)
    user = commands.add_parser(
        "user", help="make a user an administrator, or a plain user again (PostgreSQL)"
    )
    user_commands = user.add_subparsers(dest="user_command", required=True)
    promote = user_commands.add_parser(
        "promote", help="the user with this (verified) email becomes an administrator"
    )
    promote.add_argument("email")
    demote = user_commands.add_parser("demote", help="the administrator becomes a plain user")
    demote.add_argument("email")
    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    config_commands.add_parser("show", help="print the effective config, secrets masked")
    return parser


def _overrides(config: Config, args: argparse.Namespace) -> Config:
    server = config.server
    if args.host is not None:
        server = attrs.evolve(server, http_host=args.host)
    if args.port is not None:
        server = attrs.evolve(server, http_port=Port(args.port))
    if args.node_host is not None:
        server = attrs.evolve(server, node_host=args.node_host)
    if args.node_port is not None:
        server = attrs.evolve(server, node_port=Port(args.node_port))
    return attrs.evolve(config, server=server)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config, path = load_config(args.config)
    except ConfigError as exc:
        print(f"grass: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "config":
        print(json.dumps(show(config), indent=2))
        return EXIT_OK
    if args.command == "migrate":
        dsn = args.dsn or config.storage.postgres_dsn.reveal()
        if not dsn:
            print("grass: migrate needs --dsn or storage.postgres_dsn", file=sys.stderr)
            return EXIT_USAGE
        logs.configure(config.logging)
        try:
            trio.run(_migrate, dsn)
        except GrassError as exc:
            print(f"grass: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        return EXIT_OK
    if args.command == "ledger":
        logs.configure(config.logging)
        return ledger_cli.run(config, args)
    if args.command == "user":
        return _user(config, args.user_command, args.email)
    if args.command == "node":
        try:
            credential = node_credential(args.node_key_file, args.user_id, os.environ)
        except UsageError as exc:
            print(f"grass: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if args.user_id is not None and is_node_key(args.user_id):
            print(
                f"grass: warning: a node key on the command line shows in ps and shell "
                f"history; use --node-key-file or {NODE_KEY_VARIABLE}",
                file=sys.stderr,
            )
        logs.configure(config.logging)
        trio.run(_nodes, args, credential)
        return EXIT_OK
    config = _overrides(config, args)
    logs.configure(config.logging)
    try:
        trio.run(_serve, config, path)
    except (GrassError, BaseExceptionGroup) as exc:
        failures = _startup_failures(exc)
        if not failures:
            raise
        for failure in failures:
            print(f"grass: {failure}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _startup_failures(exc: BaseException) -> list[BaseException]:
    """The operator-facing errors inside a (nested) group; empty if anything else is in it."""
    if isinstance(exc, GrassError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found = [_startup_failures(e) for e in exc.exceptions]
        return [] if any(not f for f in found) else [e for f in found for e in f]
    return []


async def _nodes(args: argparse.Namespace, credential: str) -> None:
    """Run the devices until SIGINT or SIGTERM, then print their counters."""
    from grass.nodes.node_client import run_nodes

    log = logs.get("grass.node")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            stats = await nursery.start(
                partial(
                    run_nodes,
                    args.url,
                    credential,
                    devices=args.devices,
                    ping_interval=args.ping_interval,
                    jitter=args.jitter,
                    checkin_url=args.checkin,
                )
            )
            log.info(
                "nodes running",
                devices=len(stats),
                authenticated=sum(1 for s in stats if s.authenticated),
            )
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    log.info(
        "nodes stopped",
        pings=sum(s.pings for s in stats),
        pongs=sum(s.pongs for s in stats),
        errors=sum(s.errors for s in stats),
        last_close_codes=sorted(str(s.last_close) for s in stats),
    )


def _user(config: Config, command: str, email: str) -> int:
    if config.storage.backend is not StorageBackend.POSTGRES:
        print(
            "grass: `grass user` changes the PostgreSQL store (storage.backend = postgres); the"
            " memory store lives inside `grass serve`: list the address in"
            " accounts.admin_emails instead",
            file=sys.stderr,
        )
        return EXIT_USAGE
    logs.configure(config.logging)
    try:
        trio.run(_set_role, config, Role.ADMIN if command == "promote" else Role.USER, email)
    except GrassError as exc:
        print(f"grass: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


async def _set_role(config: Config, role: Role, email: str) -> None:
    """Audited as ``user.promote``/``user.demote`` by the CLI (grass.services.roles)."""
    from grass.services.roles import Roles
    from grass.storage.postgres.storage import open_postgres_storage

    dsn = config.storage.postgres_dsn.reveal()
    async with open_postgres_storage(dsn, min_size=1, max_size=2) as storage:
        user = await Roles(storage, lambda: dt.datetime.now(dt.UTC)).set_role(email, role, by="cli")
    what = "an administrator" if user.role is Role.ADMIN else "a plain user"
    print(f"{user.email} ({user.id}) is now {what}")


async def _migrate(dsn: str) -> None:
    # Imported here: only this command needs the driver loaded before serving.
    from grass.ledger import postgres_schema as ledger
    from grass.postgres.migrate import schema_version
    from grass.postgres.pool import open_postgres
    from grass.storage.postgres import schema as storage
    from grass.storage.postgres.partitions import ensure_partitions

    async with open_postgres(dsn, max_size=2) as db:
        # The stores' tables first, then the ledger's, as the backend factories do.
        applied = {
            storage.OWNER: await storage.migrate_storage_tables(db),
            ledger.OWNER: await ledger.migrate_ledger_tables(db),
        }
        created = await ensure_partitions(db)
        for owner, versions in applied.items():
            version = await schema_version(db, owner)
            done = ", ".join(map(str, versions)) or "none (already up to date)"
            print(f"{owner} schema version {version}; migrations applied: {done}")
    print(f"partitions created: {', '.join(created) or 'none'}")


async def _serve(config: Config, path: str | None) -> None:
    """Run until SIGINT/SIGTERM (graceful; a second one stops at once); SIGHUP reloads."""
    log = logs.get("grass.cli")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:

            async def serve_then_stop(*, task_status: trio.TaskStatus[Server]) -> None:
                await run(config, task_status=task_status)
                nursery.cancel_scope.cancel()  # what is left is the signal loop below

            server: Server = await nursery.start(serve_then_stop)
            addresses = server.addresses()
            print(f"grass serving HTTP on {addresses['http']}", flush=True)
            print(f"grass serving nodes on {addresses['nodes']}", flush=True)
            stopping = False
            async for signum in signals:
                if signum == signal.SIGHUP:
                    _reload(server, path, log)
                elif not stopping:
                    stopping = True
                    log.info("signal received, shutting down", signal=signal.Signals(signum).name)
                    server.shutdown()
                else:
                    # Shielded clean-up (closing sockets, the last flush) could still take
                    # seconds; an operator who asks twice wants the process gone now.
                    log.warning("second signal, stopping now")
                    sys.stderr.flush()
                    os._exit(EXIT_FORCED)


def _reload(server: Server, path: str | None, log: Any) -> None:
    try:
        new, _ = load_config(path, os.environ)
    except ConfigError as exc:
        server.metrics.config_reloads.labels("refused").inc()
        log.error("config reload refused; keeping the running config", problems=exc.problems)
        return
    ignored = server.running.apply(new)
    logs.configure(server.running.current.logging)
    server.metrics.config_reloads.labels("applied").inc()
    log.info("config reloaded", restart_needed_for=ignored)


if __name__ == "__main__":
    sys.exit(main())

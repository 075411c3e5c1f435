"""Nothing changes the interpreter's recursion limit behind grass's back (py_ecc raised it to
100 000 on import, and 100 000 nested ``[`` in a request body then segfaulted the server), and
deep input is refused whatever the limit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
import trio

import grass
import grass.app
from grass.app import Server, run
from tests.foundation.test_lifecycle import local_config

DEEP = "'[' * 100_000 + ']' * 100_000"


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_importing_all_of_grass_keeps_the_default_limit() -> None:
    """In a fresh interpreter: every module of the package, the server, the CLI, wallets and
    the web3 ledger (which pull in eth-account and py_ecc) imported, the limit is still
    CPython's default."""
    done = _python(
        """
        import importlib, pkgutil, sys
        import grass, grass.app, grass.cli, grass.services.wallets, grass.ledger.web3.rpc
        for module in pkgutil.walk_packages(grass.__path__, "grass."):
            if not module.name.endswith("__main__"):  # it would run the CLI
                importlib.import_module(module.name)
        import py_ecc, eth_account, web3  # already imported: nothing runs again
        print(sys.getrecursionlimit())
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1000"]


def test_a_limit_raised_before_grass_is_imported_is_put_back() -> None:
    """py_ecc imported first (a program, or a test session, that loads eth-account before
    grass): grass takes the default, not the raised limit, as the one to keep."""
    done = _python(
        """
        import sys
        import py_ecc
        raised = sys.getrecursionlimit()
        import grass
        print(raised, grass.RECURSION_LIMIT, sys.getrecursionlimit())
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["100000", "1000", "1000"]


def test_the_old_reproduction_no_longer_crashes() -> None:
    done = _python(
        f"""
        import grass.services.wallets, json
        try:
            json.loads({DEEP})
        except RecursionError:
            print("refused")
        """
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])  # -11 was the segfault
    assert done.stdout.split() == ["refused"]


def test_deep_input_is_refused_even_under_a_raised_limit() -> None:
    """The depth is measured before parsing: the parser never recurses, whatever the limit."""
    done = _python(
        f"""
        import sys
        from grass import jsontext
        sys.setrecursionlimit(100_000)
        for text in ({DEEP}, '[' * 100_000, '{{"a":' * 100_000):
            try:
                jsontext.loads(text)
            except jsontext.JsonTooDeep:
                print("refused")
        """
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert done.stdout.split() == ["refused"] * 3


def test_pin_recursion_limit() -> None:
    assert grass.RECURSION_LIMIT == 1000
    assert grass.pin_recursion_limit() is None
    sys.setrecursionlimit(5000)
    try:
        assert grass.pin_recursion_limit() == 5000
        assert sys.getrecursionlimit() == 1000
    finally:
        sys.setrecursionlimit(grass.RECURSION_LIMIT)


class Warnings:
    """Stands for grass.app's logger (its other calls are let through)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.events: list[dict[str, Any]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append({"event": event, **fields})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def test_the_server_puts_a_raised_limit_back_at_start(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = Warnings(grass.app.log)
    monkeypatch.setattr(grass.app, "log", logged)
    sys.setrecursionlimit(100_000)
    try:
        running: Server = await nursery.start(run, local_config())
        assert sys.getrecursionlimit() == grass.RECURSION_LIMIT
        warned = [e for e in logged.events if e["event"].startswith("an imported library")]
        assert [(e["found"], e["limit"]) for e in warned] == [(100_000, 1000)]
        running.shutdown()
    finally:
        sys.setrecursionlimit(grass.RECURSION_LIMIT)

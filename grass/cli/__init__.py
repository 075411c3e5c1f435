"""The ``grass`` command: ``serve``, ``node``, ``migrate``, ``user`` (main.py) and ``ledger``."""

from grass.cli.main import main

__all__ = ["main"]

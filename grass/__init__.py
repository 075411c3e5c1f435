"""grass: a server for a Grass-style bandwidth-sharing network (see README.md).

Importing the package pins the interpreter's recursion limit. py_ecc, which eth-account pulls
in through eth-keyfile, raises it to 100 000 when it is imported; past the C stack's depth, a
deeply nested input then kills the process with a segfault instead of raising RecursionError.
py_ecc is imported here, first, and the limit put back, so that no later import of it changes
anything; the server checks the limit again when it starts (:func:`pin_recursion_limit`).
Nested input is refused long before either limit by :mod:`grass.jsontext`.
"""

from __future__ import annotations

import importlib
import sys

#: CPython's default recursion limit.
DEFAULT_RECURSION_LIMIT = 1000

#: The limit grass keeps: the interpreter's when grass is first imported, but never above the
#: default (a program that imported py_ecc before grass has 100 000 by then).
RECURSION_LIMIT = min(sys.getrecursionlimit(), DEFAULT_RECURSION_LIMIT)

#: Libraries known to raise the limit on import.
_RAISE_THE_LIMIT = ("py_ecc",)


def pin_recursion_limit() -> int | None:
    """Put the recursion limit back to :data:`RECURSION_LIMIT`; returns what it had become
    when something changed it, else None."""
    found = sys.getrecursionlimit()
    if found == RECURSION_LIMIT:
        return None
    sys.setrecursionlimit(RECURSION_LIMIT)
    return found


pin_recursion_limit()
for _name in _RAISE_THE_LIMIT:
    try:
        importlib.import_module(_name)
    except ImportError:  # not installed: nothing of it can change the limit later either
        pass
    finally:
        pin_recursion_limit()

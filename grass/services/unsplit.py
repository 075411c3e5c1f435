"""Store, then tell the gateways: one unit that a cancellation cannot split.

A revocation (a node key, a ban, a deleted account, a paused or removed device) is stored
first, so a node reconnecting is refused, then announced, so the nodes connected now are
closed. A request cancelled between the two (its client went away, the server shuts down)
used to leave the change stored but the nodes connected. :func:`store_and_announce` shields
both steps from an outside cancellation; a bound (``STORE_AND_ANNOUNCE_SECONDS``) keeps a
stuck backend from holding the request, or a shutdown, forever: past it the step fails with
``trio.TooSlowError`` (the request answers 500, the log says which step).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

#: How long the shielded steps may take together (a storage write and a publish, normally
#: milliseconds).
STORE_AND_ANNOUNCE_SECONDS = 15.0


@contextmanager
def store_and_announce(seconds: float = STORE_AND_ANNOUNCE_SECONDS) -> Iterator[None]:
    """Run the block to its end even if the calling task is cancelled meanwhile (the
    cancellation takes effect at the next checkpoint after it); TooSlowError past
    ``seconds``."""
    with trio.fail_after(seconds, shield=True):
        yield

"""Where the state lives: one factory per backend, chosen by configuration.

Only this package (and the composition root that calls it) knows the concrete backends;
everything else reads the typed bundles of :mod:`grass.backends.bundle`.
"""

from grass.backends.bundle import Backends, Check, StoreBackend
from grass.backends.factory import open_backends, open_store, store_of
from grass.backends.ledger import open_ledger
from grass.backends.shared import open_shared_state

__all__ = [
    "Backends",
    "Check",
    "StoreBackend",
    "open_backends",
    "open_ledger",
    "open_shared_state",
    "open_store",
    "store_of",
]

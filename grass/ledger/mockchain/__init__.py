"""The mockchain ledger backend: a simulated chain (``chain``) and the anchor on it (``anchor``)."""

from grass.ledger.mockchain.anchor import MockchainAnchor, open_mockchain_ledger
from grass.ledger.mockchain.chain import OWNER, ContractState, MockChain, Receipt, Tx

__all__ = [
    "OWNER",
    "ContractState",
    "MockChain",
    "MockchainAnchor",
    "Receipt",
    "Tx",
    "open_mockchain_ledger",
]

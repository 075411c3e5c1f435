"""The web3 ledger backend: the distributor contract on any JSON-RPC node (or eth-tester)."""

from grass.ledger.web3.anchor import Web3Anchor, open_web3_ledger
from grass.ledger.web3.deploy import connect, deploy_distributor
from grass.ledger.web3.keys import load_signer
from grass.ledger.web3.outbox import MemoryOutbox, Outbox, OutboxEntry, PostgresOutbox
from grass.ledger.web3.rpc import DistributorClient

__all__ = [
    "DistributorClient",
    "MemoryOutbox",
    "Outbox",
    "OutboxEntry",
    "PostgresOutbox",
    "Web3Anchor",
    "connect",
    "deploy_distributor",
    "load_signer",
    "open_web3_ledger",
]

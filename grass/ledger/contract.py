"""The compiled contracts (ABI and bytecode) committed in ``grass/ledger/artifacts/``.

``contracts/build.sh`` writes them from ``contracts/*.sol`` and ``contracts/check.sh`` (run in CI)
fails when they no longer match the sources. Custom errors are how the distributor reverts, so
:meth:`ContractArtifact.decode_error` turns a revert's data back into the error's name and
arguments for the ledger to map onto its own errors.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import attrs
from eth_abi.abi import decode as abi_decode

from grass.errors import LedgerError, NotFound
from grass.ledger.keccak import keccak256
from grass.ledger.merkle import to_checksum_address

DISTRIBUTOR = "CumulativeMerkleDistributor"
#: A bare ERC-20 for tests and local demos (the distributor can pay it out on claims).
TEST_TOKEN = "TestToken"


class ArtifactNotFound(LedgerError, NotFound):
    code = "artifact_not_found"


@attrs.frozen(kw_only=True)
class ContractError:
    """A decoded custom error, e.g. ``ContractError(name="InvalidProof", args=())``."""

    name: str
    args: tuple[Any, ...]


def _signature(item: dict[str, Any]) -> str:
    # Tuples never appear in our errors' inputs, so the canonical type is the declared type.
    return f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"


@attrs.frozen(kw_only=True)
class ContractArtifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    source_sha256: str

    def error_selectors(self) -> dict[bytes, str]:
        """4-byte selector -> signature of every custom error in the ABI."""
        return {
            keccak256(sig.encode())[:4]: sig
            for sig in (_signature(item) for item in self.abi if item["type"] == "error")
        }

    def decode_error(self, data: bytes | str) -> ContractError | None:
        """The custom error a revert's return data encodes; None if it is not one of ours."""
        raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else data
        # Reverts are rare, and the ABI has a handful of errors: no need to cache the table.
        signature = self.error_selectors().get(raw[:4])
        if signature is None:
            return None
        name, _, types = signature.partition("(")
        arg_types = [t for t in types.rstrip(")").split(",") if t]
        values = abi_decode(arg_types, raw[4:])
        # eth_abi gives addresses in lower case; every other grass API speaks EIP-55.
        args = tuple(
            to_checksum_address(bytes.fromhex(v[2:])) if t == "address" else v
            for t, v in zip(arg_types, values, strict=True)
        )
        return ContractError(name=name, args=args)


@functools.cache
def load_artifact(name: str = DISTRIBUTOR) -> ContractArtifact:
    path = resources.files("grass.ledger") / "artifacts" / f"{name}.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactNotFound(
            f"no compiled artifact {name}.json: run contracts/build.sh", details={"name": name}
        ) from None
    data = json.loads(text)
    return ContractArtifact(
        name=data["contractName"],
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        compiler_version=data["compiler"]["version"],
        source_sha256=data["sourceSha256"],
    )

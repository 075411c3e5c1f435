"""The Solidity distributor on eth-tester (py-evm, in process), fed by grass.ledger.merkle."""

import hashlib
from pathlib import Path

import pytest
from eth_tester.exceptions import TransactionFailed
from web3 import EthereumTesterProvider, Web3

from grass.ledger.contract import DISTRIBUTOR, TEST_TOKEN, ContractError, load_artifact
from grass.ledger.merkle import MerkleTree, verify

REPO = Path(__file__).resolve().parents[2]
NO_TOKEN = "0x" + "00" * 20


@pytest.fixture(scope="module")
def w3():
    return Web3(EthereumTesterProvider())


@pytest.fixture
def accounts(w3):
    return w3.eth.accounts


def _deploy(w3, name, *args, sender):
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor(*args).transact({"from": sender})
    )
    assert receipt.status == 1
    return w3.eth.contract(address=receipt.contractAddress, abi=artifact.abi)


@pytest.fixture
def distributor(w3, accounts):
    return _deploy(w3, DISTRIBUTOR, accounts[0], NO_TOKEN, sender=accounts[0])


def _send(w3, fn, sender):
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}))
    assert receipt.status == 1
    return receipt


def _revert(exc_info) -> ContractError:
    """The distributor's custom error behind a failed transaction.

    eth-tester reports a revert as TransactionFailed; web3 re-raises it with the data only in its
    message, but the chain of causes still holds the raw bytes (sometimes wrapped in py-evm's
    Revert).
    """
    exc = exc_info.value
    while exc is not None:
        data = exc.args[0] if exc.args else None
        if isinstance(data, Exception) and data.args:
            data = data.args[0]
        if isinstance(data, bytes):
            decoded = load_artifact().decode_error(data)
            assert decoded is not None, data
            return decoded
        exc = exc.__cause__ or exc.__context__
    raise AssertionError(f"no revert data in {exc_info.value!r}")


def _post(w3, distributor, epoch, tree, owner):
    return _send(w3, distributor.functions.setRoot(epoch, tree.root), owner)


def _claim(w3, distributor, tree, account, sender, amount=None):
    amount = tree.amount(account) if amount is None else amount
    return _send(w3, distributor.functions.claim(account, amount, tree.proof(account)), sender)


def test_artifacts_are_built_from_the_committed_sources():
    # contracts/check.sh compares byte for byte (needs node); this catches an unbuilt edit here.
    for name, source in [
        (DISTRIBUTOR, "CumulativeMerkleDistributor.sol"),
        (TEST_TOKEN, "test/TestToken.sol"),
    ]:
        artifact = load_artifact(name)
        text = (REPO / "contracts" / source).read_bytes()
        assert artifact.source_sha256 == hashlib.sha256(text).hexdigest()
        assert artifact.compiler_version.startswith("0.8.")
        assert artifact.bytecode.startswith("0x60")


def test_deploy_and_claim_before_any_root(w3, distributor, accounts):
    assert distributor.functions.owner().call() == accounts[0]
    assert distributor.functions.token().call() == NO_TOKEN
    assert distributor.functions.nextEpoch().call() == 0
    tree = MerkleTree.build({accounts[1]: 100})
    with pytest.raises(TransactionFailed) as exc_info:
        _claim(w3, distributor, tree, accounts[1], accounts[1])
    assert _revert(exc_info).name == "NoRoot"


def test_claim_with_a_proof_from_merkle_py_is_accepted_once(w3, distributor, accounts):
    alice, bob, carol = accounts[1:4]
    tree = MerkleTree.build({alice: 100, bob: 5, carol: 0})
    receipt = _post(w3, distributor, 1, tree, accounts[0])
    (posted,) = distributor.events.RootPosted().process_receipt(receipt)
    assert posted.args.epoch == 1
    assert posted.args.root == tree.root
    assert distributor.functions.roots(1).call() == tree.root

    # Anyone may submit the claim; the points are the account's.
    receipt = _claim(w3, distributor, tree, alice, sender=bob)
    (claimed,) = distributor.events.Claimed().process_receipt(receipt)
    assert dict(claimed.args) == {
        "account": alice,
        "epoch": 1,
        "amount": 100,
        "cumulativeAmount": 100,
    }
    assert distributor.functions.claimed(alice).call() == 100
    assert distributor.functions.totalClaimed().call() == 100

    with pytest.raises(TransactionFailed) as exc_info:
        _claim(w3, distributor, tree, alice, sender=alice)
    assert _revert(exc_info) == ContractError(name="NothingToClaim", args=(100, 100))
    # A zero balance is a valid leaf, but there is never anything to pay for it.
    with pytest.raises(TransactionFailed) as exc_info:
        _claim(w3, distributor, tree, carol, sender=carol)
    assert _revert(exc_info).name == "NothingToClaim"
    assert distributor.functions.claimed(alice).call() == 100


def test_wrong_proofs_are_refused(w3, distributor, accounts):
    alice, bob, carol = accounts[1:4]
    tree = MerkleTree.build({alice: 100, bob: 5, carol: 9})
    _post(w3, distributor, 1, tree, accounts[0])
    attempts = [
        (alice, 101, tree.proof(alice)),  # inflated amount
        (bob, 100, tree.proof(alice)),  # someone else's leaf
        (alice, 100, tree.proof(bob)),  # someone else's proof
        (alice, 100, []),  # no proof
        (alice, 100, [*tree.proof(alice), tree.root]),  # padded proof
    ]
    for account, amount, proof in attempts:
        assert not verify(tree.root, account, amount, proof)
        with pytest.raises(TransactionFailed) as exc_info:
            _send(w3, distributor.functions.claim(account, amount, proof), accounts[4])
        assert _revert(exc_info).name == "InvalidProof"
    assert distributor.functions.totalClaimed().call() == 0


def test_contract_verify_agrees_with_merkle_py_on_a_deep_uneven_tree(w3, distributor, accounts):
    balances = {bytes([7, *i.to_bytes(19, "big")]): i * 10**15 for i in range(1, 1001)}
    balances[bytes.fromhex(accounts[1][2:])] = 2**256 - 1
    tree = MerkleTree.build(balances)
    checker = distributor.functions.verify
    for account in [*list(balances)[::97], bytes.fromhex(accounts[1][2:])]:
        proof = tree.proof(account)
        amount = balances[account]
        assert checker(tree.root, account, amount, proof).call()
        assert not checker(tree.root, account, amount - 1, proof).call()
    _post(w3, distributor, 3, tree, accounts[0])
    _claim(w3, distributor, tree, accounts[1], accounts[1])
    assert distributor.functions.claimed(accounts[1]).call() == 2**256 - 1


def test_only_the_owner_posts_and_epochs_increase(w3, distributor, accounts):
    owner, mallory = accounts[0], accounts[5]
    tree = MerkleTree.build({accounts[1]: 1})
    with pytest.raises(TransactionFailed) as exc_info:
        _post(w3, distributor, 1, tree, mallory)
    assert _revert(exc_info) == ContractError(name="NotOwner", args=(mallory,))

    _post(w3, distributor, 5, tree, owner)
    for epoch in (5, 4, 0):
        with pytest.raises(TransactionFailed) as exc_info:
            _post(w3, distributor, epoch, tree, owner)
        assert _revert(exc_info) == ContractError(name="EpochNotIncreasing", args=(epoch, 6))
    with pytest.raises(TransactionFailed) as exc_info:
        _send(w3, distributor.functions.setRoot(6, b"\x00" * 32), owner)
    assert _revert(exc_info).name == "ZeroRoot"
    assert distributor.functions.latestEpoch().call() == 5
    assert distributor.functions.roots(6).call() == b"\x00" * 32


def test_cumulative_claims_across_epochs_pay_only_the_difference(w3, distributor, accounts):
    owner, alice, bob = accounts[0], accounts[1], accounts[2]
    epoch1 = MerkleTree.build({alice: 100, bob: 30})
    epoch2 = MerkleTree.build({alice: 250, bob: 70})
    _post(w3, distributor, 1, epoch1, owner)
    _claim(w3, distributor, epoch1, alice, alice)
    _post(w3, distributor, 2, epoch2, owner)

    # Only the latest root counts: an old proof no longer verifies.
    with pytest.raises(TransactionFailed) as exc_info:
        _claim(w3, distributor, epoch1, bob, bob)
    assert _revert(exc_info).name == "InvalidProof"

    (paid,) = distributor.events.Claimed().process_receipt(
        _claim(w3, distributor, epoch2, alice, alice)
    )
    assert (paid.args.epoch, paid.args.amount, paid.args.cumulativeAmount) == (2, 150, 250)
    # Bob skipped epoch 1 and loses nothing.
    (paid,) = distributor.events.Claimed().process_receipt(
        _claim(w3, distributor, epoch2, bob, bob)
    )
    assert (paid.args.amount, paid.args.cumulativeAmount) == (70, 70)
    assert distributor.functions.totalClaimed().call() == 320


def test_ownership_transfer(w3, distributor, accounts):
    old, new = accounts[0], accounts[6]
    tree = MerkleTree.build({accounts[1]: 1})
    with pytest.raises(TransactionFailed) as exc_info:
        _send(w3, distributor.functions.transferOwnership(new), new)
    assert _revert(exc_info).name == "NotOwner"
    with pytest.raises(TransactionFailed) as exc_info:
        _send(w3, distributor.functions.transferOwnership(NO_TOKEN), old)
    assert _revert(exc_info).name == "ZeroAddress"

    receipt = _send(w3, distributor.functions.transferOwnership(new), old)
    (moved,) = distributor.events.OwnershipTransferred().process_receipt(receipt)
    assert (moved.args.previousOwner, moved.args.newOwner) == (old, new)
    with pytest.raises(TransactionFailed) as exc_info:
        _post(w3, distributor, 1, tree, old)
    assert _revert(exc_info).name == "NotOwner"
    _post(w3, distributor, 1, tree, new)


def test_a_configured_token_is_paid_out(w3, accounts):
    owner, alice = accounts[0], accounts[1]
    token = _deploy(w3, TEST_TOKEN, 10**24, sender=owner)
    distributor = _deploy(w3, DISTRIBUTOR, owner, token.address, sender=owner)
    assert distributor.functions.token().call() == token.address
    tree = MerkleTree.build({alice: 500, accounts[2]: 1})
    _post(w3, distributor, 1, tree, owner)

    # Unfunded: the transfer fails and the whole claim reverts, so nothing is recorded.
    with pytest.raises(TransactionFailed) as exc_info:
        _claim(w3, distributor, tree, alice, alice)
    assert _revert(exc_info).name == "TransferFailed"
    assert distributor.functions.claimed(alice).call() == 0

    _send(w3, token.functions.transfer(distributor.address, 1000), owner)
    _claim(w3, distributor, tree, alice, alice)
    assert token.functions.balanceOf(alice).call() == 500
    assert token.functions.balanceOf(distributor.address).call() == 500


def test_a_token_must_be_a_contract(w3, accounts):
    with pytest.raises(TransactionFailed) as exc_info:
        _deploy(w3, DISTRIBUTOR, accounts[0], accounts[3], sender=accounts[0])
    assert _revert(exc_info) == ContractError(name="NotAContract", args=(accounts[3],))
    with pytest.raises(TransactionFailed) as exc_info:
        _deploy(w3, DISTRIBUTOR, NO_TOKEN, NO_TOKEN, sender=accounts[0])
    assert _revert(exc_info).name == "ZeroAddress"


def test_decode_error_ignores_foreign_data():
    artifact = load_artifact()
    assert artifact.decode_error("0x08c379a0" + "00" * 64) is None  # Error(string)
    assert artifact.decode_error(b"") is None
    assert artifact.decode_error("0x09bde339") == ContractError(name="InvalidProof", args=())

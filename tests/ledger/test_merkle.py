import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grass.errors import InvalidInput, LedgerError, NotFound
from grass.ledger.keccak import keccak256
from grass.ledger.merkle import (
    EMPTY_ROOT,
    MAX_AMOUNT,
    AccountNotInTree,
    InvalidMerkleInput,
    MerkleTree,
    TreeBuild,
    leaf_data,
    leaf_hash,
    node_hash,
    parse_account,
    to_checksum_address,
    verify,
)

accounts = st.binary(min_size=20, max_size=20)
amounts = st.integers(min_value=0, max_value=MAX_AMOUNT)
balances = st.dictionaries(accounts, amounts, min_size=1, max_size=80)


def _acct(i: int) -> bytes:
    return i.to_bytes(20, "big")


def test_keccak_is_ethereum_keccak_not_sha3():
    # The well-known Keccak-256 of no bytes; NIST SHA3-256 would give a7ffc6f8...
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )


def test_leaf_and_node_layout():
    account, amount = _acct(0xABC), 10**18
    expected_leaf = keccak256(b"\x00" + account + amount.to_bytes(32, "big"))
    assert leaf_hash(account, amount) == expected_leaf
    a, b = keccak256(b"a"), keccak256(b"b")
    low, high = sorted((a, b))
    assert node_hash(a, b) == node_hash(b, a) == keccak256(b"\x01" + low + high)


def test_single_leaf_tree_root_is_the_leaf():
    tree = MerkleTree.build({_acct(1): 5})
    assert tree.root == leaf_hash(_acct(1), 5)
    assert tree.proof(_acct(1)) == []
    assert verify(tree.root, _acct(1), 5, [])
    assert not verify(tree.root, _acct(1), 6, [])


def test_two_leaf_tree():
    tree = MerkleTree.build({_acct(2): 7, _acct(1): 5})
    l1, l2 = leaf_hash(_acct(1), 5), leaf_hash(_acct(2), 7)
    assert tree.root == node_hash(l1, l2)
    assert tree.proof(_acct(1)) == [l2]
    assert tree.proof(_acct(2)) == [l1]


def test_odd_node_is_promoted_unchanged():
    tree = MerkleTree.build({_acct(i): i for i in (1, 2, 3)})
    l1, l2, l3 = (leaf_hash(_acct(i), i) for i in (1, 2, 3))
    assert tree.root == node_hash(node_hash(l1, l2), l3)
    # The promoted leaf gets no sibling at the level where it was alone.
    assert tree.proof(_acct(3)) == [node_hash(l1, l2)]
    assert tree.proof(_acct(1)) == [l2, l3]


def test_empty_tree():
    tree = MerkleTree.build({})
    assert tree.root == EMPTY_ROOT
    assert len(tree) == 0
    with pytest.raises(AccountNotInTree):
        tree.proof(_acct(1))


@settings(max_examples=60, deadline=None)
@given(balances)
def test_every_proof_verifies(data):
    tree = MerkleTree.build(data)
    root = tree.root
    assert len(tree) == len(data)
    for account, amount in data.items():
        proof = tree.proof(account)
        assert verify(root, account, amount, proof)
        assert tree.amount(account) == amount
        assert len(proof) <= max(1, len(data) - 1).bit_length()


@settings(max_examples=60, deadline=None)
@given(balances, st.data())
def test_wrong_amount_account_or_root_fails(data, draw):
    tree = MerkleTree.build(data)
    account = draw.draw(st.sampled_from(sorted(data)))
    amount = data[account]
    proof = tree.proof(account)
    other_amount = draw.draw(amounts.filter(lambda v: v != amount))
    assert not verify(tree.root, account, other_amount, proof)
    other_account = draw.draw(accounts.filter(lambda a: a != account))
    assert not verify(tree.root, other_account, amount, proof)
    assert not verify(keccak256(tree.root), account, amount, proof)
    if proof:
        tampered = [*proof[:-1], keccak256(proof[-1])]
        assert not verify(tree.root, account, amount, tampered)


@settings(max_examples=40, deadline=None)
@given(balances, st.randoms(use_true_random=False))
def test_root_is_independent_of_input_order(data, rnd):
    items = list(data.items())
    rnd.shuffle(items)
    assert MerkleTree.build(items).root == MerkleTree.build(data).root
    # Hex in any accepted spelling names the same leaf.
    as_hex = {to_checksum_address(a): v for a, v in items}
    assert MerkleTree.build(as_hex).root == MerkleTree.build(data).root


def test_items_are_in_account_order():
    data = {_acct(i): i for i in random.Random(3).sample(range(1, 1000), 50)}
    tree = MerkleTree.build(data)
    assert list(tree.items()) == sorted(data.items())
    assert next(iter(data)) in tree
    assert _acct(5000) not in tree
    assert "not an account" not in tree


def test_checksum_address_matches_eip55_vector():
    # From the EIP-55 specification's test cases.
    spelled = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    raw = parse_account(spelled)
    assert to_checksum_address(raw) == spelled
    assert parse_account(spelled.lower()) == raw
    assert parse_account("0x" + spelled[2:].upper()) == raw


@pytest.mark.parametrize(
    "account",
    [
        b"\x01" * 19,
        b"\x01" * 21,
        "0x" + "ab" * 19,
        "ab" * 20,
        "0x" + "zz" * 20,
        "0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed",  # mixed case, checksum broken
        1234,
        None,
    ],
)
def test_malformed_accounts_are_refused(account):
    with pytest.raises(InvalidMerkleInput):
        MerkleTree.build([(account, 1)])
    with pytest.raises(InvalidMerkleInput):
        verify(EMPTY_ROOT, account, 1, [])


@pytest.mark.parametrize("amount", [-1, 2**256, 1.5, "10", True, None])
def test_bad_amounts_are_refused(amount):
    with pytest.raises(InvalidMerkleInput):
        MerkleTree.build({_acct(1): amount})
    with pytest.raises(InvalidMerkleInput):
        leaf_hash(_acct(1), amount)


def test_a_large_clean_dict_is_still_checked():
    # The vectorised fast path must refuse what the per-item loop refuses.
    data = {_acct(i): i for i in range(1, 100)}
    data[_acct(50)] = -3
    with pytest.raises(InvalidMerkleInput):
        MerkleTree.build(data)
    data[_acct(50)] = MAX_AMOUNT + 1
    with pytest.raises(InvalidMerkleInput):
        MerkleTree.build(data)
    data[_acct(50)] = MAX_AMOUNT
    tree = MerkleTree.build(data)
    assert verify(tree.root, _acct(50), MAX_AMOUNT, tree.proof(_acct(50)))


def test_duplicates_are_refused_in_any_spelling():
    raw = parse_account("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
    for dup in (raw, "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", bytearray(raw)):
        with pytest.raises(InvalidMerkleInput, match="twice"):
            MerkleTree.build([(raw, 1), (dup, 1)])


def test_malformed_proof_is_refused():
    tree = MerkleTree.build({_acct(1): 1, _acct(2): 2})
    with pytest.raises(InvalidMerkleInput):
        verify(tree.root, _acct(1), 1, [b"short"])


def test_errors_map_onto_the_grass_tree():
    assert issubclass(InvalidMerkleInput, LedgerError)
    assert issubclass(InvalidMerkleInput, InvalidInput)
    assert issubclass(AccountNotInTree, NotFound)
    assert InvalidMerkleInput("x").http_status == 400
    assert AccountNotInTree("x").http_status == 404


def test_pycryptodome_fallback_hashes_the_same(monkeypatch):
    import importlib

    from grass.ledger import keccak

    real_import = importlib.import_module

    def without_pysha3(name, *args):
        if name == "_pysha3":
            raise ImportError(name)
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_pysha3)
    backend, new = keccak._pick_keccak()
    assert backend == "pycryptodome"
    for data in (b"", b"\x01" * 65, bytes(range(53))):
        assert new(data).digest() == keccak256(data)


@settings(max_examples=40, deadline=None)
@given(data=st.dictionaries(accounts, amounts, max_size=70), step=st.integers(2, 9))
def test_a_build_in_steps_is_the_same_tree(data, step):
    expected = MerkleTree.build(data)
    leaves = [leaf_data(a, v) for a, v in data.items()]
    build = TreeBuild(list(reversed(leaves)), step=step)
    assert build.total == (2 * len(data) - 1 if data else 0)
    done = [build.done]
    while build.step():
        done.append(build.done)
        assert done[-1] - done[-2] <= step
    assert done == sorted(done)
    assert done[-1] == build.total
    tree = build.tree()
    assert tree.root == expected.root
    assert list(tree.items()) == list(expected.items())
    assert tree.total == sum(data.values())
    for account, amount in data.items():
        assert tree.amount(account) == amount
        assert tree.proof(account) == expected.proof(account)
    assert MerkleTree.from_leaf_data(leaves).root == expected.root


def test_a_tree_is_not_handed_out_before_its_last_step():
    build = TreeBuild([leaf_data(_acct(i), i) for i in range(5)], step=2)
    assert build.step()
    with pytest.raises(RuntimeError, match="not built yet"):
        build.tree()
    assert build.run().root == MerkleTree.build({_acct(i): i for i in range(5)}).root


@pytest.mark.parametrize(
    "bad",
    [
        [b"\x00" + bytes(20)],  # no amount
        [leaf_data(_acct(1), 1) + b"\x00"],  # a byte too many
        [b"\x01" + bytes(52)],  # a node's prefix
    ],
)
def test_malformed_leaf_data_is_refused(bad):
    with pytest.raises(InvalidMerkleInput):
        MerkleTree.from_leaf_data([leaf_data(_acct(2), 2), *bad])


def test_leaf_data_is_what_a_leaf_hashes():
    data = leaf_data(_acct(7), 2**200 + 3)
    assert data == b"\x00" + _acct(7) + (2**200 + 3).to_bytes(32, "big")
    assert keccak256(data) == leaf_hash(_acct(7), 2**200 + 3)

"""The binary COPY parser of an epoch's leaves, fed byte streams as PostgreSQL writes them."""

from __future__ import annotations

import random

import pytest

from grass.ledger.leafcopy import REPORT_EVERY, LeafCopy
from grass.ledger.merkle import InvalidMerkleInput, leaf_data

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _stream(rows: list[bytes | None], extension: bytes = b"") -> bytes:
    header = SIGNATURE + bytes(4) + len(extension).to_bytes(4, "big") + extension
    body = b"".join(
        b"\x00\x01" + (b"\xff\xff\xff\xff" if r is None else len(r).to_bytes(4, "big") + r)
        for r in rows
    )
    return header + body + b"\xff\xff"


def _chunks(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 40)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def _parse(data: bytes) -> list[bytes]:
    copy = LeafCopy(lambda *_: None)
    copy.feed(data)
    return copy.finish()


def _leaves(n: int) -> list[bytes]:
    return [leaf_data(i.to_bytes(20, "big"), i * 7 + 1) for i in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_rows_come_out_whatever_the_chunking(seed):
    rng = random.Random(seed)
    leaves = _leaves(rng.randrange(0, 300))
    seen = []
    copy = LeafCopy(lambda phase, done, total: seen.append((phase, done, total)))
    for chunk in _chunks(_stream(leaves, extension=b"x" * seed), rng):
        copy.feed(chunk)
    assert copy.finish() == leaves
    assert seen[-1] == ("read", len(leaves), len(leaves))


def test_progress_is_reported_every_so_many_rows():
    leaves = _leaves(REPORT_EVERY * 3 + 5)
    seen = []
    copy = LeafCopy(lambda phase, done, total: seen.append((phase, done, total)))
    data = _stream(leaves)
    for i in range(0, len(data), 1 << 16):
        copy.feed(data[i : i + (1 << 16)])
    assert len(copy.finish()) == len(leaves)
    reported = [done for _, done, total in seen if total is None]
    assert len(reported) == 2  # at most one per REPORT_EVERY rows, and no fewer
    assert reported[0] >= REPORT_EVERY
    assert reported[1] - reported[0] >= REPORT_EVERY


@pytest.mark.parametrize("at", [0, 3, 9])
def test_a_null_leaf_is_an_amount_beyond_uint256(at):
    rows: list[bytes | None] = list(_leaves(10))
    rows[at] = None
    # Mid-stream it is found by feed(), as the last row (shorter than a row) by finish().
    with pytest.raises(InvalidMerkleInput, match="beyond uint256"):
        _parse(_stream(rows))


def test_a_cut_stream_or_another_format_is_refused():
    data = _stream(_leaves(4))
    copy = LeafCopy(lambda *_: None)
    copy.feed(data[:-30])
    with pytest.raises(ValueError, match="ended early"):
        copy.finish()
    with pytest.raises(ValueError, match="not a binary COPY"):
        LeafCopy(lambda *_: None).feed(b"key\tvalue\n" * 10)
    other = _stream([b"\x00" * 20, *_leaves(2)])  # a row of another size
    with pytest.raises(ValueError, match="unexpected row"):
        LeafCopy(lambda *_: None).feed(other)

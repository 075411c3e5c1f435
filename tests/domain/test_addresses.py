"""One IP parser: every place that reads an address spells it the same way."""

from __future__ import annotations

import pytest

from grass.domain.addresses import address_key, canonical, parse_address
from grass.nodes import token
from grass.services import accounts, admin

MAPPED = "::ffff:10.0.0.1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", "10.0.0.1"),
        (MAPPED, "10.0.0.1"),
        (" 2001:DB8::1 ", "2001:db8::1"),
        ("not an address", None),
        ("", None),
    ],
)
def test_canonical_spelling(text: str, expected: str | None) -> None:
    assert canonical(text) == expected
    assert (parse_address(text) is None) is (expected is None)


def test_every_reader_maps_an_ipv4_mapped_address_to_ipv4() -> None:
    # Login sessions and audit entries kept "::ffff:10.0.0.1" apart from "10.0.0.1" before.
    assert accounts._ip_or_none(MAPPED) == "10.0.0.1"
    assert admin._address(MAPPED) == "10.0.0.1"
    assert address_key(MAPPED) == "10.0.0.1"
    assert token._canonical_ip(MAPPED) == "10.0.0.1"
    assert accounts._ip_or_none("nonsense") is None
    with pytest.raises(ValueError, match="not an IP address"):
        token._canonical_ip("nonsense")
    assert token._canonical_ip("nonsense", strict=False) == "nonsense"

"""The inet codec (grass.postgres.codecs) against the server's own parser of the text."""

from __future__ import annotations

import ipaddress

import pytest
import triopg.exceptions as driver

from grass.errors import StorageError
from grass.postgres.codecs import decode_inet, encode_inet

TEXTS = [
    "192.0.2.7",
    "0.0.0.0",
    "255.255.255.255",
    "2001:db8::1",
    "::",
    "::ffff:192.0.2.7",
    "fe80::1:2:3:4",
    "10.1.2.3/8",
    "2001:db8::5/64",
]


@pytest.mark.parametrize("text", TEXTS)
async def test_encoded_like_the_server_parses_the_text(pg_db, text):
    # The same value bound through the codec and cast by the server from text.
    query = "SELECT $1::inet = $2::text::inet AS same, $1::inet::text AS ours, $2::text::inet::text"
    for value in (text, ipaddress.ip_interface(text)):
        row = await pg_db.read(lambda c, v=value: c.fetchrow(query, v, text))
        assert row["same"], (value, row)


@pytest.mark.parametrize("text", TEXTS)
async def test_decoded_as_asyncpg_decodes(pg_db, text):
    value = await pg_db.read(lambda c: c.fetchval("SELECT $1::text::inet", text))
    expected = ipaddress.ip_interface(text)
    if expected.network.prefixlen == expected.max_prefixlen:
        assert value == expected.ip
    else:
        assert value == expected


def test_round_trip_without_a_server():
    for text in TEXTS:
        value = ipaddress.ip_interface(text)
        decoded = decode_inet(encode_inet(text))
        assert decoded == (value.ip if value.network.prefixlen == value.max_prefixlen else value)
    network = ipaddress.ip_network("198.51.100.0/24")
    assert decode_inet(encode_inet(network)) == ipaddress.ip_interface("198.51.100.0/24")


@pytest.mark.parametrize("bad", ["", "300.1.2.3", "1.2.3", "not an address", "1.2.3.4/33"])
def test_a_malformed_address_is_a_value_error(bad):
    with pytest.raises(ValueError):
        encode_inet(bad)


async def test_a_malformed_address_fails_the_statement_and_nothing_else(pg_db):
    # Domain models validate addresses first: one reaching the driver is a bug in our code,
    # which propagates unmapped (grass.postgres.errors); the connection stays usable.
    with pytest.raises(BaseException) as failure:
        await pg_db.read(lambda c: c.fetchval("SELECT $1::inet", "300.1.2.3"))
    error = failure.value
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    assert isinstance(error, driver.DataError)
    assert not isinstance(error, StorageError)
    assert "is not an IP address" in str(error)
    assert await pg_db.read(lambda c: c.fetchval("SELECT $1::inet", "192.0.2.1")) == (
        ipaddress.ip_address("192.0.2.1")
    )

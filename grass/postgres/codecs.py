"""Type codecs set on every connection (asyncpg calls :func:`init_connection` for each one).

- json and jsonb in and out as Python values, so stores never serialize by hand;
- inet in binary through :mod:`socket` instead of :mod:`ipaddress`: asyncpg's own encoder
  parses every address with ``ipaddress.ip_address`` in Python, about 5 µs a value, which was
  a tenth of the bucket closer's time (125 000 entries and 100 000 frozen lines a bucket, each
  with an address). Values come back as asyncpg gives them (``ipaddress`` objects).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from typing import Any

# PostgreSQL's inet wire format: family, prefix bits, is_cidr, address length, address.
_PG_AF_INET, _PG_AF_INET6 = 2, 3
_V4_HEAD = bytes((_PG_AF_INET, 32, 0, 4))
_V6_HEAD = bytes((_PG_AF_INET6, 128, 0, 16))

Address = (
    ipaddress.IPv4Address
    | ipaddress.IPv6Address
    | ipaddress.IPv4Interface
    | ipaddress.IPv6Interface
    | ipaddress.IPv4Network
    | ipaddress.IPv6Network
)


def encode_inet(value: str | Address) -> bytes:
    if isinstance(value, str) and "/" not in value:
        try:
            return _V4_HEAD + socket.inet_pton(socket.AF_INET, value)
        except OSError:
            pass
        try:
            return _V6_HEAD + socket.inet_pton(socket.AF_INET6, value)
        except OSError:
            raise ValueError(f"{value!r} is not an IP address") from None
    parsed = ipaddress.ip_interface(value) if isinstance(value, str) else value
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    bits: int
    # Interfaces first: IPv4Interface is a subclass of IPv4Address.
    if isinstance(parsed, ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        address, bits = parsed.ip, parsed.network.prefixlen
    elif isinstance(parsed, ipaddress.IPv4Network | ipaddress.IPv6Network):
        address, bits = parsed.network_address, parsed.prefixlen
    else:
        address, bits = parsed, parsed.max_prefixlen
    family = _PG_AF_INET if address.version == 4 else _PG_AF_INET6
    packed = address.packed
    return bytes((family, bits, 0, len(packed))) + packed


def decode_inet(data: bytes) -> Address:
    bits, length = data[1], data[3]
    packed = data[4 : 4 + length]
    if bits == length * 8:
        return ipaddress.ip_address(packed)
    return ipaddress.ip_interface((packed, bits))


def encode_json(value: Any) -> str:
    # Not escaped to ASCII: a lone surrogate then fails to encode as the driver sends it,
    # which grass.postgres.errors maps to InvalidValue like in any text column
    # (escaped, PostgreSQL refused "\\udfff" with the same code as a malformed literal).
    return json.dumps(value, ensure_ascii=False)


async def init_connection(conn: Any) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=encode_json, decoder=json.loads, schema="pg_catalog"
        )
    await conn.set_type_codec(
        "inet", encoder=encode_inet, decoder=decode_inet, schema="pg_catalog", format="binary"
    )

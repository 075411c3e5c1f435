"""The one place ids are made.

Short ids are nanoid-style: 21 characters from a URL-safe alphabet of 64 symbols (126 bits),
drawn from the operating system's random source. UUIDs are used where a protocol asks for them
(the node protocol's message ids; a device id is the node's own ``browser_id`` UUID).
"""

from __future__ import annotations

import functools
import re
import secrets
import uuid

ALPHABET = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
SHORT_ID_LENGTH = 21
_SHORT_ID = re.compile(rf"^[{re.escape(ALPHABET)}]{{{SHORT_ID_LENGTH}}}$")


def short_id(size: int = SHORT_ID_LENGTH) -> str:
    """A random nanoid-style id; 64 symbols is a power of two, so masking keeps it unbiased."""
    return "".join(ALPHABET[b & 63] for b in secrets.token_bytes(size))


_SYMBOL_OF_BYTE = bytes(ord(ALPHABET[b & 63]) for b in range(256))


def short_ids(count: int, size: int = SHORT_ID_LENGTH) -> list[str]:
    """``count`` ids as :func:`short_id` makes them, in one draw (a bulk write makes 100 000:
    one at a time they cost a fifth of a second)."""
    text = secrets.token_bytes(count * size).translate(_SYMBOL_OF_BYTE).decode("ascii")
    return [text[i : i + size] for i in range(0, count * size, size)]


def is_short_id(value: str) -> bool:
    return bool(_SHORT_ID.match(value))


def new_uuid() -> str:
    return str(uuid.uuid4())


def is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    return _is_canonical_uuid(value)


@functools.lru_cache(maxsize=1 << 17)
def _is_canonical_uuid(value: str) -> bool:
    # Cached: device ids are checked again by every model built per flush and per message.
    try:
        return str(uuid.UUID(value)) == value  # the canonical form only: one spelling per id
    except ValueError:
        return False


def token(nbytes: int = 32) -> str:
    """An opaque secret token (sessions, resets, API keys): store only its hash."""
    return secrets.token_urlsafe(nbytes)

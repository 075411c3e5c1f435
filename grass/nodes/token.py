"""The v5 check-in token: short-lived, signed, bound to one user, device and IP address.

``POST /checkin`` issues it; the node presents it on the WebSocket URL (``?token=...``) and the
gateway verifies it at the upgrade. Format (URL-safe, no padding)::

    v1.<base64url(payload)>.<base64url(HMAC-SHA256(secret, "grass-checkin.v1." + payload part))>

with payload the compact JSON array ``[user_id, device_id, ip, issued_ms, expires_ms]``. Times
are integer milliseconds, so a token verifies the same on every instance. Pure functions: the
clock is an argument. Every failure is a :class:`TokenError` (close 1008, HTTP 401)::

    TokenError (ProtocolError, Unauthenticated)
    ├── MalformedToken
    ├── BadSignature
    ├── TokenExpired
    └── TokenIpMismatch
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Final

import attrs

from grass import jsontext
from grass.domain.addresses import canonical
from grass.errors import InvalidInput, ProtocolError, Unauthenticated

VERSION: Final = "v1"
MAX_TOKEN_LENGTH: Final = 1024
MIN_SECRET_LENGTH: Final = 16
_DOMAIN: Final = b"grass-checkin.v1."


class TokenError(ProtocolError, Unauthenticated):
    code = "invalid_token"
    ws_close_code = 1008


class MalformedToken(TokenError):
    code = "malformed_token"


class BadSignature(TokenError):
    code = "bad_token_signature"


class TokenExpired(TokenError):
    code = "token_expired"


class TokenIpMismatch(TokenError):
    code = "token_ip_mismatch"


@attrs.frozen(kw_only=True)
class TokenClaims:
    user_id: str
    device_id: str
    ip: str
    issued_at: float
    expires_at: float


def issue(secret: bytes, user_id: str, device_id: str, ip: str, now: float, ttl: float) -> str:
    """A token for ``user_id``'s device ``device_id`` connecting from ``ip``, valid ``ttl`` s."""
    _check_secret(secret)
    if ttl < 0.001:
        raise ValueError("ttl must be at least 1 ms")
    if not user_id or not device_id:
        raise ValueError("user_id and device_id must not be empty")
    issued_ms = int(now * 1000)
    claims = [user_id, device_id, _canonical_ip(ip), issued_ms, issued_ms + int(ttl * 1000)]
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    token = f"{VERSION}.{payload}.{_b64encode(_mac(secret, payload))}"
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError("claims too long for a token")
    return token


def verify(secret: bytes, token: str, ip: str, now: float) -> TokenClaims:
    """The claims of a valid token presented from ``ip`` at ``now``, or a TokenError."""
    _check_secret(secret)
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii() or token.count(".") != 2:
        raise MalformedToken("malformed token")
    version, payload, signature = token.split(".")
    if version != VERSION:
        raise MalformedToken("unknown token version")
    try:
        given = _b64decode(signature)
    except ValueError:
        given = b""
    if len(given) != hashlib.sha256().digest_size:
        raise MalformedToken("malformed token signature")
    # The signature is checked before the payload is parsed: unsigned input is never decoded.
    if not hmac.compare_digest(given, _mac(secret, payload)):
        raise BadSignature("token signature does not match")
    claims = _parse_claims(payload)
    if claims.ip != _canonical_ip(ip, strict=False):
        raise TokenIpMismatch("token was issued for another address")
    if now >= claims.expires_at:
        raise TokenExpired("token expired")
    return claims


def _parse_claims(payload: str) -> TokenClaims:
    try:
        raw = jsontext.loads(_b64decode(payload), what="claims")
    except (ValueError, InvalidInput):
        raw = None
    valid = (
        type(raw) is list
        and len(raw) == 5
        and all(type(v) is str for v in raw[:3])
        and all(type(v) is int for v in raw[3:])
    )
    if not valid:
        raise MalformedToken("malformed token claims")
    user_id, device_id, ip, issued_ms, expires_ms = raw
    return TokenClaims(
        user_id=user_id,
        device_id=device_id,
        ip=ip,
        issued_at=issued_ms / 1000,
        expires_at=expires_ms / 1000,
    )


def _mac(secret: bytes, payload: str) -> bytes:
    return hmac.digest(secret, _DOMAIN + payload.encode("ascii"), hashlib.sha256)


def _canonical_ip(ip: str, *, strict: bool = True) -> str:
    # One spelling per address: "::ffff:10.0.0.1" (a dual-stack socket) is 10.0.0.1.
    address = canonical(ip)
    if address is None:
        if strict:
            raise ValueError(f"not an IP address: {ip!r}")
        return ip
    return address


def _check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"the token secret needs at least {MIN_SECRET_LENGTH} bytes")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        data = None
    # The decoder skips stray characters; one spelling per token keeps tokens non-malleable.
    if data is None or _b64encode(data) != text:
        raise ValueError("not canonical base64url")
    return data

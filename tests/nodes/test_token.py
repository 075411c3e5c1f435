"""The v5 check-in token: issue, verify, and every way a token is refused."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grass.errors import ProtocolError, Unauthenticated, ws_error
from grass.nodes import token as tokens
from grass.nodes.token import (
    BadSignature,
    MalformedToken,
    TokenClaims,
    TokenError,
    TokenExpired,
    TokenIpMismatch,
    issue,
    verify,
)

SECRET = b"s" * 32
USER = "V1StGXR8_Z5jdHi6B-myT"
DEVICE = "5f3c2a1e-1b2c-4d5e-8f90-123456789abc"
NOW = 1_717_000_000.0


def make(ip: str = "203.0.113.7", ttl: float = 60.0) -> str:
    return issue(SECRET, USER, DEVICE, ip, now=NOW, ttl=ttl)


def test_round_trip() -> None:
    token = make()
    assert verify(SECRET, token, "203.0.113.7", now=NOW + 59.9) == TokenClaims(
        user_id=USER, device_id=DEVICE, ip="203.0.113.7", issued_at=NOW, expires_at=NOW + 60
    )


def test_token_is_url_safe_and_compact() -> None:
    token = make(ip="2001:db8::1")
    assert set(token) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    assert token.startswith("v1.")
    assert len(token) < 250


def test_expired() -> None:
    token = make(ttl=30)
    verify(SECRET, token, "203.0.113.7", now=NOW + 29.999)
    with pytest.raises(TokenExpired):
        verify(SECRET, token, "203.0.113.7", now=NOW + 30)
    with pytest.raises(TokenExpired):
        verify(SECRET, token, "203.0.113.7", now=NOW + 3600)


def test_wrong_ip() -> None:
    with pytest.raises(TokenIpMismatch):
        verify(SECRET, make(), "203.0.113.8", now=NOW)
    with pytest.raises(TokenIpMismatch):
        verify(SECRET, make(), "not an address", now=NOW)


def test_ipv4_mapped_address_is_the_same_address() -> None:
    assert verify(SECRET, make("203.0.113.7"), "::ffff:203.0.113.7", now=NOW).ip == "203.0.113.7"
    assert verify(SECRET, make("2001:DB8::0:1"), "2001:db8::1", now=NOW).ip == "2001:db8::1"


def test_wrong_secret() -> None:
    with pytest.raises(BadSignature):
        verify(b"t" * 32, make(), "203.0.113.7", now=NOW)


def _forge(claims: list[object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()


def test_tampered_claims_are_refused() -> None:
    version, _, signature = make().split(".")
    for claims in (
        ["someone-else", DEVICE, "203.0.113.7", int(NOW * 1000), int(NOW * 1000) + 60_000],
        [USER, DEVICE, "203.0.113.7", int(NOW * 1000), int(NOW * 1000) + 10**9],
        [USER, DEVICE, "198.51.100.1", int(NOW * 1000), int(NOW * 1000) + 60_000],
    ):
        with pytest.raises(BadSignature):
            verify(SECRET, f"{version}.{_forge(claims)}.{signature}", claims[2], now=NOW)  # type: ignore[arg-type]


def test_every_flipped_character_is_refused() -> None:
    token = make()
    for i, char in enumerate(token):
        if char == ".":
            continue
        flipped = token[:i] + ("A" if char != "A" else "B") + token[i + 1 :]
        with pytest.raises(TokenError):
            verify(SECRET, flipped, "203.0.113.7", now=NOW)


@pytest.mark.parametrize(
    "bad",
    ["", "v1", "v1..", "v1.a.b.c", "v2.abc.def", "v1.abc.!!!", "v1.é.abc", "x" * 5000],
)
def test_malformed(bad: str) -> None:
    with pytest.raises(MalformedToken):
        verify(SECRET, bad, "203.0.113.7", now=NOW)


def test_non_canonical_signature_is_malformed() -> None:
    version, payload, signature = make().split(".")
    with pytest.raises(MalformedToken):
        verify(SECRET, f"{version}.{payload}.{signature}=", "203.0.113.7", now=NOW)
    with pytest.raises(MalformedToken):
        verify(
            SECRET, f"{version}.{payload}.{signature[:10]}*{signature[10:]}", "203.0.113.7", now=NOW
        )


def test_signed_but_malformed_claims() -> None:
    # Only a holder of the secret can produce these; they are still refused, not crashed on.
    for claims in (
        [USER, DEVICE, "203.0.113.7"],
        {"user": USER},
        [USER, DEVICE, "1.2.3.4", True, 1],
    ):
        payload = _forge(claims)  # type: ignore[arg-type]
        signature = base64.urlsafe_b64encode(tokens._mac(SECRET, payload)).rstrip(b"=").decode()
        with pytest.raises(MalformedToken):
            verify(SECRET, f"v1.{payload}.{signature}", "1.2.3.4", now=NOW)


def test_errors_close_1008_and_map_to_401() -> None:
    for cls in (MalformedToken, BadSignature, TokenExpired, TokenIpMismatch):
        error = cls("x")
        assert isinstance(error, ProtocolError)
        assert isinstance(error, Unauthenticated)
        assert error.http_status == 401
        assert ws_error(error).close_code == 1008
    assert TokenExpired("x").code == "token_expired"


def test_issue_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="secret"):
        issue(b"short", USER, DEVICE, "203.0.113.7", now=NOW, ttl=60)
    with pytest.raises(ValueError, match="secret"):
        verify(b"short", make(), "203.0.113.7", now=NOW)
    with pytest.raises(ValueError, match="ttl"):
        issue(SECRET, USER, DEVICE, "203.0.113.7", now=NOW, ttl=0)
    with pytest.raises(ValueError, match="IP"):
        issue(SECRET, USER, DEVICE, "example.com", now=NOW, ttl=60)
    with pytest.raises(ValueError, match="empty"):
        issue(SECRET, "", DEVICE, "203.0.113.7", now=NOW, ttl=60)
    with pytest.raises(ValueError, match="too long"):
        issue(SECRET, "u" * 2000, DEVICE, "203.0.113.7", now=NOW, ttl=60)


@given(st.text(max_size=300))
def test_any_string_is_refused_with_a_token_error(text: str) -> None:
    with pytest.raises(TokenError):
        verify(SECRET, text, "203.0.113.7", now=NOW)


@given(
    user=st.text(min_size=1, max_size=40),
    device=st.text(min_size=1, max_size=40),
    ip=st.ip_addresses().map(str),
    now=st.floats(min_value=0, max_value=4e9),
    ttl=st.floats(min_value=0.001, max_value=1e6),
)
def test_round_trip_property(user: str, device: str, ip: str, now: float, ttl: float) -> None:
    token = issue(SECRET, user, device, ip, now=now, ttl=ttl)
    claims = verify(SECRET, token, ip, now=now)
    assert (claims.user_id, claims.device_id) == (user, device)

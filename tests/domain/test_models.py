"""Domain models validate on construction."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from grass.domain import InvalidModel
from grass.domain.devices import Device, DeviceType
from grass.domain.earnings import EarningEntry, EarningSource
from grass.domain.epochs import Epoch, EpochStatus, EpochTotals
from grass.domain.notifications import Notification, NotificationType
from grass.domain.referrals import Referral
from grass.domain.score import NetworkScore, ScoreComponents
from grass.domain.uptime import UptimeDelta, UptimeStats
from grass.domain.users import (
    ApiKey,
    ApiScope,
    Credentials,
    Preferences,
    Profile,
    QuietHours,
    Session,
    User,
    WalletLink,
)
from grass.errors import ValidationFailed
from grass.ids import new_uuid, short_id

T0 = dt.datetime(2024, 3, 4, tzinfo=dt.UTC)
UID = short_id()


def user(**overrides):
    fields = {
        "id": UID,
        "email": "a@example.com",
        "referral_code": "CODE1",
        "credentials": Credentials(password_hash="h", changed_at=T0),
        "created_at": T0,
    }
    return User(**(fields | overrides))


def test_user_defaults_and_email_folding():
    u = user(email="  Alice@Example.COM ")
    assert u.email == "alice@example.com"
    assert u.profile == Profile()
    assert u.preferences.quiet_hours is None
    assert u.role == "user"
    assert u.status == "active"


@pytest.mark.parametrize(
    "overrides",
    [
        {"id": "short"},
        {"email": "not-an-email"},
        {"referral_code": "a b"},
        {"created_at": dt.datetime(2024, 3, 4)},
        {"created_at": dt.datetime(2024, 3, 4, tzinfo=dt.timezone(dt.timedelta(hours=1)))},
        {"role": "root"},
    ],
    ids=lambda o: next(iter(o)),
)
def test_user_rejects(overrides):
    with pytest.raises(InvalidModel) as caught:
        user(**overrides)
    assert isinstance(caught.value, ValidationFailed)
    assert isinstance(caught.value, ValueError)
    assert caught.value.http_status == 422
    assert caught.value.details["field"] in overrides


def test_profile_and_preferences():
    with pytest.raises(InvalidModel):
        Profile(country="fr")
    with pytest.raises(InvalidModel):
        Profile(timezone="Mars/Olympus")
    with pytest.raises(InvalidModel):
        Profile(display_name="x" * 65)
    with pytest.raises(InvalidModel):
        Preferences(channels=frozenset({"email"}))
    wrap = QuietHours(start=dt.time(22), end=dt.time(7))
    assert wrap.contains(dt.time(23))
    assert wrap.contains(dt.time(6, 59))
    assert not wrap.contains(dt.time(7))
    day = QuietHours(start=dt.time(9), end=dt.time(17))
    assert day.contains(dt.time(9))
    assert not day.contains(dt.time(17))
    with pytest.raises(InvalidModel):
        QuietHours(start=dt.time(9), end=dt.time(9))
    with pytest.raises(InvalidModel):
        QuietHours(start=dt.time(9, tzinfo=dt.UTC), end=dt.time(10))


def test_session_and_api_key():
    s = Session(
        token_hash="a" * 64, user_id=UID, created_at=T0, expires_at=T0 + dt.timedelta(hours=1)
    )
    assert s.is_active(T0)
    assert not s.is_active(T0 + dt.timedelta(hours=1))
    assert not attrs.evolve(s, revoked_at=T0).is_active(T0)
    assert "a" * 64 not in repr(s)
    with pytest.raises(InvalidModel):
        attrs.evolve(s, expires_at=T0 - dt.timedelta(seconds=1))
    with pytest.raises(InvalidModel):
        attrs.evolve(s, token_hash="A" * 64)
    with pytest.raises(InvalidModel):
        attrs.evolve(s, ip="10.0.0.01")
    key = ApiKey(
        id=short_id(),
        user_id=UID,
        name="n",
        key_hash="b" * 64,
        prefix="gk_1",
        scopes=frozenset({ApiScope.STATS_READ}),
        created_at=T0,
    )
    with pytest.raises(InvalidModel):
        attrs.evolve(key, scopes=frozenset())


def test_wallet_address_is_lower_cased():
    link = WalletLink(user_id=UID, address="0x" + "AB" * 20, linked_at=T0)
    assert link.address == "0x" + "ab" * 20
    with pytest.raises(InvalidModel):
        WalletLink(user_id=UID, address="0x1234", linked_at=T0)


def test_device_rules():
    d = Device(
        device_id=new_uuid(), user_id=UID, type=DeviceType.ANDROID, first_seen=T0, last_seen=T0
    )
    with pytest.raises(InvalidModel):
        attrs.evolve(d, device_id="not-a-uuid")
    with pytest.raises(InvalidModel):
        attrs.evolve(d, device_id=d.device_id.upper())
    with pytest.raises(InvalidModel):
        attrs.evolve(d, last_seen=T0 - dt.timedelta(seconds=1))
    with pytest.raises(InvalidModel):
        attrs.evolve(d, type="phone")


def test_score_bounds():
    parts = ScoreComponents(availability=100, stability=0, latency=50, ip_quality=75)
    NetworkScore(value=100, components=parts, computed_at=T0)
    with pytest.raises(InvalidModel):
        NetworkScore(value=101, components=parts, computed_at=T0)
    with pytest.raises(InvalidModel):
        attrs.evolve(parts, latency=-1)


def test_uptime_stats_add():
    a = UptimeStats(seconds=10, rtt_count=2, rtt_sum_ms=30, rtt_max_ms=20, reconnects=1)
    b = UptimeStats(seconds=5, rtt_count=1, rtt_sum_ms=50, rtt_max_ms=50)
    assert a + b == UptimeStats(seconds=15, rtt_count=3, rtt_sum_ms=80, rtt_max_ms=50, reconnects=1)
    assert (a + b).rtt_mean_ms == pytest.approx(80 / 3)
    assert UptimeStats().rtt_mean_ms is None
    with pytest.raises(InvalidModel):
        UptimeStats(seconds=-1)
    with pytest.raises(InvalidModel):
        UptimeDelta(device_id=new_uuid(), user_id=UID, ip="nope", bucket_start=T0, stats=a)


def entry(**overrides):
    fields = {
        "id": short_id(),
        "user_id": UID,
        "source": EarningSource.UPTIME,
        "amount": 5,
        "idempotency_key": "k",
        "accrued_at": T0,
        "created_at": T0,
    }
    return EarningEntry(**(fields | overrides))


def test_earning_rules():
    with pytest.raises(InvalidModel):
        entry(amount=-1)
    assert entry(source=EarningSource.ADJUSTMENT, amount=-1).amount == -1
    with pytest.raises(InvalidModel):
        entry(source=EarningSource.REFERRAL)
    with pytest.raises(InvalidModel):
        entry(referral_level=1)
    with pytest.raises(InvalidModel):
        entry(source=EarningSource.REFERRAL, referee_id=short_id(), referral_level=4)
    with pytest.raises(InvalidModel):
        entry(amount=1.5)
    with pytest.raises(InvalidModel):
        entry(idempotency_key="")
    a = entry()
    assert (
        attrs.evolve(a, id=short_id(), created_at=T0 + dt.timedelta(days=1)).content()
        == a.content()
    )
    assert attrs.evolve(a, amount=6).content() != a.content()


def test_referral_and_notification():
    with pytest.raises(InvalidModel):
        Referral(referrer_id=UID, referee_id=UID, level=1, code="CODE1", created_at=T0)
    with pytest.raises(InvalidModel):
        Referral(referrer_id=UID, referee_id=short_id(), level=0, code="CODE1", created_at=T0)
    n = Notification(id=short_id(), user_id=UID, type=NotificationType.SECURITY, created_at=T0)
    assert n.payload == {}
    with pytest.raises(InvalidModel):
        attrs.evolve(n, payload={"x": object()})
    with pytest.raises(InvalidModel):
        attrs.evolve(n, payload={"x": float("nan")})


def test_epoch_lifecycle():
    e = Epoch(number=1, name="One", start=T0, end=T0 + dt.timedelta(days=7))
    assert e.contains(T0)
    assert not e.contains(e.end)
    totals = EpochTotals(points=1, uptime_seconds=2, users=3)
    closing = e.close(totals)
    assert (closing.status, closing.totals) == (EpochStatus.CLOSING, totals)
    assert closing.settle().status is EpochStatus.SETTLED
    with pytest.raises(InvalidModel):
        closing.close(totals)
    with pytest.raises(InvalidModel):
        e.settle()
    with pytest.raises(InvalidModel):
        Epoch(number=1, name="x", start=T0, end=T0)
    with pytest.raises(InvalidModel):
        Epoch(number=1, name="x", start=T0, end=e.end, status=EpochStatus.SETTLED)

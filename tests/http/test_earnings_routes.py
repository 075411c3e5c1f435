"""The earnings, epochs and referrals routes over the app as ``grass serve`` builds it."""

from __future__ import annotations

import base64
import datetime as dt
import time

from grass.domain import periods
from grass.domain.earnings import EarningSource
from grass.domain.referrals import referral_ref
from grass.services.earnings import MAX_POINTS
from tests.http.conftest import make_actor
from tests.http.helpers import bearer
from tests.storage.conftest import make_entry, make_referral


async def test_totals_history_referrals_and_epochs(full_app):
    me = await make_actor(full_app.storage)
    friend = await make_actor(full_app.storage)
    await full_app.storage.referrals.add_referrals(
        [make_referral(me.user, friend.user, 1, created_at=dt.datetime.now(dt.UTC))]
    )
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    await full_app.storage.earnings.insert_earnings(
        [
            make_entry(me.user, amount=1_000_000, accrued_at=hour, bucket_start=hour),
            make_entry(
                me.user,
                source=EarningSource.REFERRAL,
                amount=200_000,
                accrued_at=hour,
                referee_id=friend.id,
                referral_level=1,
            ),
        ]
    )
    client = full_app.client()
    auth = bearer(me.session_token)

    totals = await (await client.get("/api/v1/earnings/totals", headers=auth)).get_json()
    assert totals["all_time"] == {
        "total": 1_200_000,
        "by_source": {"uptime": 1_000_000, "referral": 200_000, "milestone": 0}
        | {"network": 0, "adjustment": 0},
    }
    assert totals["today"]["total"] == 1_200_000
    assert totals["timezone"] == "UTC"

    response = await client.get(
        "/api/v1/earnings/history", headers=auth, query_string={"period": "hour"}
    )
    series = await response.get_json()
    assert len(series) in (24, 25)  # zero-filled hours of the last day
    assert sum(p["points"] for p in series) == 1_200_000
    assert sorted(p["points"] for p in series)[-1] == 1_200_000

    bad = await client.get(
        "/api/v1/earnings/history", headers=auth, query_string={"tz": "Mars/Olympus"}
    )
    assert bad.status_code == 422

    levels = await (await client.get("/api/v1/earnings/referrals", headers=auth)).get_json()
    assert levels[0] == {"level": 1, "amount": 200_000, "referees": 1}

    referees = await (await client.get("/api/v1/referrals", headers=auth)).get_json()
    assert [(r["ref"], r["status"], r["rewards"]) for r in referees["items"]] == [
        (referral_ref(me.id, friend.id), "pending", 200_000)
    ]
    summary = await (await client.get("/api/v1/referrals/summary", headers=auth)).get_json()
    assert (summary["counts"], summary["rank"]["name"]) == ({"1": 1, "2": 0, "3": 0}, "Bronze")

    epochs = await (await client.get("/api/v1/epochs", headers=auth)).get_json()
    assert epochs["items"][0]["status"] == "open"
    assert epochs["items"][0]["points"] == 1_200_000


async def test_history_refuses_an_empty_range_for_every_period(full_app):
    me = await make_actor(full_app.storage)
    client = full_app.client()
    since = "2026-03-02T00:00:00+00:00"
    for period in ("hour", "day", "week", "month", "epoch"):
        for until in (since, "2026-03-01T00:00:00+00:00"):
            response = await client.get(
                "/api/v1/earnings/history",
                headers=bearer(me.session_token),
                query_string={"period": period, "since": since, "until": until},
            )
            assert response.status_code == 400, (period, until)
            assert (await response.get_json())["error"]["code"] == "invalid_range"


async def test_a_century_of_hours_is_refused_at_once(full_app, monkeypatch):
    """Hardening #13, finding 4: this request answered its 400 after 11.7 s of one CPU, the
    whole server frozen meanwhile (the axis was built before the point limit was checked)."""
    walked = [0]
    real = periods.next_period_start

    def counted(*args, **kwargs):
        walked[0] += 1
        assert walked[0] <= MAX_POINTS + 2, "the axis is being walked"
        return real(*args, **kwargs)

    monkeypatch.setattr(periods, "next_period_start", counted)
    me = await make_actor(full_app.storage)
    client = full_app.client()
    started = time.perf_counter()
    for since in ("1900-01-01T00:00:00Z", "1971-01-01T00:00:00Z"):
        response = await client.get(
            "/api/v1/earnings/history",
            headers=bearer(me.session_token),
            query_string={"period": "hour", "since": since},
        )
        assert response.status_code == 400, since
        assert (await response.get_json())["error"]["code"] == "invalid_range"
    assert walked[0] == 0
    assert time.perf_counter() - started < 5.0  # generous: the old code took over 10 s


async def test_a_referrer_never_sees_its_referees_user_ids(full_app):
    """Hardening #13, finding 6: GET /api/v1/referrals showed each referee's user id, which
    (with legacy node auth) was enough to connect devices under it. Neither the items nor the
    cursors name one now."""
    me = await make_actor(full_app.storage)
    referees = [await make_actor(full_app.storage) for _ in range(5)]
    at = dt.datetime.now(dt.UTC)
    await full_app.storage.referrals.add_referrals(
        [make_referral(me.user, r.user, 1, created_at=at) for r in referees]
    )
    client = full_app.client()
    seen, bodies, cursor = [], [], None
    while True:
        query = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        response = await client.get(
            "/api/v1/referrals", headers=bearer(me.session_token), query_string=query
        )
        assert response.status_code == 200
        page = await response.get_json()
        bodies.append(await response.get_data(as_text=True))
        seen.extend(item["ref"] for item in page["items"])
        if (cursor := page["next_cursor"]) is None:
            break
        bodies.append(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    assert sorted(seen) == sorted(referral_ref(me.id, r.id) for r in referees)
    everything = "".join(bodies)
    assert not any(r.id in everything for r in referees)

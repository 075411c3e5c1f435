"""The account routes through the Quart test client, on the app ``grass serve`` builds."""

from __future__ import annotations

import re

import pytest
import structlog.testing

from grass.storage.abc import Storage
from tests.http.conftest import PASSWORD, make_actor, open_full_app, quick_config
from tests.http.helpers import bearer

FROM = {"client": ("203.0.113.7", 40000)}
PW = "a fine password"


async def error_of(response) -> dict:
    body = await response.get_json()
    assert set(body) == {"error"}
    return body["error"]


async def mailed_token(storage: Storage) -> str:
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    mails = await storage.accounts.claim_mail(now, now + dt.timedelta(hours=1), 100)
    return re.search(r"token: (\S+)", mails[-1].body).group(1)


async def register_and_login(client, storage, email="ann@example.com") -> str:
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PW}, scope_base=FROM
    )
    assert response.status_code == 201, await response.get_data()
    response = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": PW}, scope_base=FROM
    )
    assert response.status_code == 200
    return (await response.get_json())["token"]


async def test_register_verify_login_and_read_my_account(full_app):
    client = full_app.client()
    with structlog.testing.capture_logs() as events:
        await a_full_account_flow(client, full_app.storage)
    # Request logs carry neither the password nor any token.
    logged = repr(events)
    assert PW not in logged
    assert "gs_" not in logged
    assert {"path": "/api/v1/auth/login", "status": 200} in [
        {k: e.get(k) for k in ("path", "status")} for e in events if e["event"] == "request"
    ]


async def a_full_account_flow(client, storage) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"email": "Ann@Example.com", "password": PW}, scope_base=FROM
    )
    assert response.status_code == 201
    user = await response.get_json()
    assert user["email"] == "ann@example.com"
    assert user["email_verified"] is False
    assert "credentials" not in user
    assert "password" not in str(user)
    token = await mailed_token(storage)
    verified = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert (await verified.get_json())["email_verified"] is True
    again = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert again.status_code == 400
    assert (await error_of(again))["code"] == "token_rejected"
    login = await client.post(
        "/api/v1/auth/login", json={"email": "ann@example.com", "password": PW}, scope_base=FROM
    )
    body = await login.get_json()
    assert body["user"]["id"] == user["id"]
    me = await client.get("/api/v1/me", headers=bearer(body["token"]))
    assert (await me.get_json())["email_verified"] is True


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"email": "not-an-email", "password": PW}, 422, "validation_failed", "email"),
        ({"email": "b@example.com", "password": "short"}, 422, "validation_failed", "password"),
        (
            {"email": "b@example.com", "password": PW, "admin": True},
            422,
            "validation_failed",
            "admin",
        ),
        (
            {"email": "b@example.com", "password": PW, "referral_code": "NOPE1234"},
            422,
            "unknown_referral_code",
            "referral_code",
        ),
        ({"email": "taken@example.com", "password": PW}, 409, "email_taken", None),
    ],
)
async def test_registration_errors(full_app, body, status, code, field):
    client = full_app.client()
    await client.post("/api/v1/auth/register", json={"email": "taken@example.com", "password": PW})
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == status
    error = await error_of(response)
    assert error["code"] == code
    if field:
        assert field in error["details"]["fields"]


async def test_a_referral_code_links_the_new_user(full_app):
    client = full_app.client()
    referrer = await make_actor(full_app.storage)
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "email": "new@example.com",
            "password": PW,
            "referral_code": referrer.user.referral_code,
        },
    )
    new_id = (await response.get_json())["id"]
    links = await full_app.storage.referrals.referrers_of([new_id])
    assert [(r.referrer_id, r.level) for r in links[new_id]] == [(referrer.id, 1)]


async def test_repeated_wrong_passwords_get_429_with_retry_after():
    config = quick_config(accounts={"max_failures_per_account": 2})
    async with open_full_app(config) as full:
        client = full.client()
        await register_and_login(client, full.storage)
        wrong = {"email": "ann@example.com", "password": "not the password"}
        for _ in range(2):
            response = await client.post("/api/v1/auth/login", json=wrong, scope_base=FROM)
            assert response.status_code == 401
            assert (await error_of(response))["code"] == "invalid_credentials"
        right = {"email": "ann@example.com", "password": PW}
        locked = await client.post("/api/v1/auth/login", json=right, scope_base=FROM)
        assert locked.status_code == 429
        assert (await error_of(locked))["code"] == "login_locked"
        assert int(locked.headers["Retry-After"]) > 0


async def test_auth_routes_are_rate_limited_per_address():
    config = quick_config(limits={"auth_requests_per_minute": 3})
    async with open_full_app(config) as full:
        client = full.client()
        body = {"email": "nobody@example.com"}
        statuses = [
            (
                await client.post("/api/v1/auth/password-reset", json=body, scope_base=FROM)
            ).status_code
            for _ in range(4)
        ]
        assert statuses == [202, 202, 202, 429]
        elsewhere = {"client": ("198.51.100.2", 1)}
        response = await client.post("/api/v1/auth/password-reset", json=body, scope_base=elsewhere)
        assert response.status_code == 202


async def test_an_ended_token_is_refused_without_spending_the_auth_budget():
    config = quick_config(limits={"auth_requests_per_minute": 3})
    async with open_full_app(config) as full:
        client = full.client()
        token = await register_and_login(client, full.storage)  # two of FROM's three
        assert (await client.post("/api/v1/auth/logout", headers=bearer(token))).status_code == 204
        # A tab still polling with the ended session: refused, but it is no guess.
        for _ in range(5):
            stale = await client.get("/api/v1/me", headers=bearer(token), scope_base=FROM)
            assert stale.status_code == 401
            assert (await error_of(stale))["code"] == "invalid_token"
        login = {"email": "ann@example.com", "password": PW}
        again = await client.post("/api/v1/auth/login", json=login, scope_base=FROM)
        assert again.status_code == 200
        # A token nobody was given is a guess: it spends the budget, here already spent.
        guess = await client.get("/api/v1/me", headers=bearer("gs_" + "x" * 40), scope_base=FROM)
        assert guess.status_code == 429


async def test_logout_ends_the_session(full_app):
    client = full_app.client()
    token = await register_and_login(client, full_app.storage)
    assert (await client.post("/api/v1/auth/logout", headers=bearer(token))).status_code == 204
    after = await client.get("/api/v1/me", headers=bearer(token))
    assert after.status_code == 401
    assert (await error_of(after))["code"] == "invalid_token"


async def test_sessions_list_marks_the_current_one_and_others_can_be_ended(full_app):
    client = full_app.client()
    first = await register_and_login(client, full_app.storage)
    login = await client.post(
        "/api/v1/auth/login", json={"email": "ann@example.com", "password": PW}, scope_base=FROM
    )
    second = (await login.get_json())["token"]
    page = await (await client.get("/api/v1/me/sessions", headers=bearer(second))).get_json()
    assert [s["current"] for s in page["items"]] == [True, False]
    assert page["next_cursor"] is None
    other_id = page["items"][1]["id"]
    ended = await client.delete(f"/api/v1/me/sessions/{other_id}", headers=bearer(second))
    assert ended.status_code == 204
    assert (await client.get("/api/v1/me", headers=bearer(first))).status_code == 401
    assert (await client.get("/api/v1/me", headers=bearer(second))).status_code == 200
    again = await client.delete(f"/api/v1/me/sessions/{other_id}", headers=bearer(second))
    assert again.status_code == 404


async def test_api_keys_are_shown_once_and_die_when_revoked(full_app):
    client = full_app.client()
    token = await register_and_login(client, full_app.storage)
    created = await client.post(
        "/api/v1/me/api-keys",
        json={"name": "grafana", "scopes": ["stats:read", "earnings:read"]},
        headers=bearer(token),
    )
    assert created.status_code == 201
    body = await created.get_json()
    key = body["key"]
    assert key.startswith("gk_")
    assert body["api_key"]["scopes"] == ["earnings:read", "stats:read"]
    listed = await client.get("/api/v1/me/api-keys", headers=bearer(token))
    listed_text = (await listed.get_data()).decode()
    assert key not in listed_text
    assert body["api_key"]["prefix"] in listed_text
    # A key is read-only: the account routes refuse it.
    refused = await client.get("/api/v1/me", headers=bearer(key))
    assert refused.status_code == 403
    assert (await error_of(refused))["code"] == "api_key_not_allowed"
    key_id = body["api_key"]["id"]
    assert (
        await client.delete(f"/api/v1/me/api-keys/{key_id}", headers=bearer(token))
    ).status_code == 204
    dead = await client.get("/api/v1/me", headers=bearer(key))
    assert dead.status_code == 401
    empty_scopes = await client.post(
        "/api/v1/me/api-keys", json={"name": "x", "scopes": []}, headers=bearer(token)
    )
    assert empty_scopes.status_code == 422
    assert "scopes" in (await error_of(empty_scopes))["details"]["fields"]


async def test_profile_and_preferences_validate_each_field(full_app):
    client = full_app.client()
    token = await register_and_login(client, full_app.storage)
    bad = await client.put(
        "/api/v1/me/profile",
        json={"country": "fr", "timezone": "Mars/Olympus"},
        headers=bearer(token),
    )
    assert bad.status_code == 422
    assert set((await error_of(bad))["details"]["fields"]) >= {"country"}
    good = await client.put(
        "/api/v1/me/profile",
        json={"display_name": "Ann", "country": "FR", "timezone": "Europe/Paris"},
        headers=bearer(token),
    )
    assert (await good.get_json())["profile"] == {
        "display_name": "Ann",
        "country": "FR",
        "timezone": "Europe/Paris",
    }
    same = await client.put(
        "/api/v1/me/preferences",
        json={"channels": ["email"], "quiet_hours": {"start": "07:00", "end": "07:00"}},
        headers=bearer(token),
    )
    assert same.status_code == 422
    prefs = await client.put(
        "/api/v1/me/preferences",
        json={"channels": ["email"], "quiet_hours": {"start": "22:30", "end": "07:00"}},
        headers=bearer(token),
    )
    assert (await prefs.get_json())["preferences"] == {
        "channels": ["email"],
        "quiet_hours": {"start": "22:30", "end": "07:00"},
    }


async def test_password_reset_and_change_over_http(full_app):
    client = full_app.client()
    await register_and_login(client, full_app.storage)
    await mailed_token(full_app.storage)  # the verification mail
    requested = await client.post("/api/v1/auth/password-reset", json={"email": "ann@example.com"})
    assert requested.status_code == 202
    token = await mailed_token(full_app.storage)
    confirm = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "password": "new password 1"}
    )
    assert confirm.status_code == 204
    login = await client.post(
        "/api/v1/auth/login", json={"email": "ann@example.com", "password": "new password 1"}
    )
    session = (await login.get_json())["token"]
    wrong = await client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "new password 2"},
        headers=bearer(session),
    )
    assert wrong.status_code == 422
    assert (await error_of(wrong))["code"] == "wrong_password"
    changed = await client.post(
        "/api/v1/me/password",
        json={"current_password": "new password 1", "new_password": "new password 2"},
        headers=bearer(session),
    )
    assert changed.status_code == 204
    assert (await client.get("/api/v1/me", headers=bearer(session))).status_code == 200


async def test_deleting_my_account(full_app):
    client = full_app.client()
    token = await register_and_login(client, full_app.storage)
    deleted = await client.delete("/api/v1/me", json={"password": PW}, headers=bearer(token))
    assert deleted.status_code == 204
    assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 401
    login = await client.post(
        "/api/v1/auth/login", json={"email": "ann@example.com", "password": PW}
    )
    assert login.status_code == 401

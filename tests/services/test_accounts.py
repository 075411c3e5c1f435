"""The accounts service on every storage backend: registration and referral links, email
verification, login lockout, sessions and their revocation events, passwords, deletion."""

from __future__ import annotations

import datetime as dt
import json
import re

import attrs
import pytest
import trio

from grass.config import Config
from grass.domain.accounts import TokenPurpose
from grass.domain.users import ApiScope, UserStatus
from grass.errors import StorageNotFound
from grass.services.account_settings import AccountSettings, ApiKeyNotFound, TooManyApiKeys
from grass.services.accounts import (
    AccountInactive,
    Accounts,
    AlreadyVerified,
    EmailTaken,
    InvalidCredentials,
    LoginLocked,
    SessionNotFound,
    TokenRejected,
    UnknownReferralCode,
    WrongPassword,
)
from grass.services.live import LiveEvents
from grass.services.passwords import Passwords
from grass.storage.inprocess import InProcessPubSub
from grass.storage.inprocess.event_log import InProcessEventLog
from grass.storage.shared_state import unframe, user_channel
from tests.http.conftest import quick_config
from tests.services.test_network_admin import Control

T0 = dt.datetime(2025, 1, 6, 12, tzinfo=dt.UTC)
PW = "a fine password"


@attrs.define
class Clock:
    now: dt.datetime = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@attrs.define
class Env:
    accounts: Accounts
    settings: AccountSettings
    storage: object
    pubsub: InProcessPubSub
    clock: Clock
    config: Config
    mails: list[int]
    nodes: Control


@pytest.fixture
async def env(storage) -> Env:
    config = quick_config(
        accounts={"max_failures_per_account": 3, "max_failures_per_ip": 5, "lockout_seconds": 600}
    )
    clock = Clock()
    pubsub = InProcessPubSub()
    events = LiveEvents(InProcessEventLog(pubsub), pubsub)
    passwords = Passwords(time_cost=1, memory_kib=1024)
    notified: list[int] = []
    nodes = Control()
    accounts = Accounts(
        storage,
        events,
        passwords,
        lambda: config,
        clock,
        nodes=nodes,
        on_mail=lambda: notified.append(1),
    )
    settings = AccountSettings(storage, lambda: config, clock, events)
    return Env(accounts, settings, storage, pubsub, clock, config, notified, nodes)


async def pending_mails(env: Env) -> list:
    return await env.storage.accounts.claim_mail(
        env.clock(), env.clock() + dt.timedelta(hours=9), 100
    )


def token_in(body: str) -> str:
    return re.search(r"token: (\S+)", body).group(1)


async def test_register_links_referrers_up_to_three_levels(env):
    chain = [await env.accounts.register("u0@example.com", PW, None)]
    for n in range(1, 5):
        chain.append(await env.accounts.register(f"u{n}@example.com", PW, chain[-1].referral_code))
    links = (await env.storage.referrals.referrers_of([chain[4].id]))[chain[4].id]
    assert [(r.referrer_id, r.level) for r in links] == [
        (chain[3].id, 1),
        (chain[2].id, 2),
        (chain[1].id, 3),
    ]
    assert {r.code for r in links} == {chain[3].referral_code}
    assert await env.storage.referrals.count_referrals(chain[0].id) == {1: 1, 2: 1, 3: 1}


async def test_an_unknown_referral_code_writes_nothing(env):
    with pytest.raises(UnknownReferralCode) as caught:
        await env.accounts.register("x@example.com", PW, "NOPE1234")
    assert caught.value.details == {"fields": {"referral_code": "unknown referral code"}}
    assert await env.storage.users.find_user_by_email("x@example.com") is None
    assert await pending_mails(env) == []


async def test_an_email_registers_once_whatever_its_case(env):
    await env.accounts.register("Ann@Example.com", PW, None)
    with pytest.raises(EmailTaken):
        await env.accounts.register("ann@example.COM", PW, None)


async def test_registration_mails_a_single_use_verification_token(env):
    user = await env.accounts.register("ann@example.com", PW, None)
    assert env.mails == [1]
    (mail,) = await pending_mails(env)
    assert mail.recipient == "ann@example.com"
    token = token_in(mail.body)
    assert f"/verify-email?token={token}" in mail.body
    assert (await env.accounts.verify_email(token)).email_verified
    assert (await env.storage.users.get_user(user.id)).email_verified
    with pytest.raises(TokenRejected):
        await env.accounts.verify_email(token)
    with pytest.raises(AlreadyVerified):
        await env.accounts.resend_verification(user.id)


async def test_a_resent_verification_kills_the_previous_token(env):
    user = await env.accounts.register("ann@example.com", PW, None)
    (first,) = await pending_mails(env)
    await env.accounts.resend_verification(user.id)
    (second,) = await pending_mails(env)
    with pytest.raises(TokenRejected):
        await env.accounts.verify_email(token_in(first.body))
    env.clock.advance(env.config.accounts.verify_token_ttl)
    with pytest.raises(TokenRejected):  # expired
        await env.accounts.verify_email(token_in(second.body))


async def test_login_gives_a_session_and_wrong_passwords_lock_the_account(env):
    user = await env.accounts.register("ann@example.com", PW, None)
    done = await env.accounts.login("ANN@example.com", PW, "203.0.113.5", "tests")
    assert done.user.id == user.id
    assert done.token.startswith("gs_")
    assert done.session.ip == "203.0.113.5"
    assert done.session.expires_at == T0 + dt.timedelta(seconds=env.config.accounts.session_ttl)
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            await env.accounts.login("ann@example.com", "wrong password", "203.0.113.5", None)
        env.clock.advance(60)
    with pytest.raises(LoginLocked) as locked:  # even with the right password
        await env.accounts.login("ann@example.com", PW, "198.51.100.1", None)
    # Locked until the first of the three failures leaves the 600 s window.
    assert locked.value.retry_after == pytest.approx(600 - 180)
    env.clock.advance(600 - 180)
    assert (
        await env.accounts.login("ann@example.com", PW, "198.51.100.1", None)
    ).user.id == user.id


async def test_attempts_at_the_same_time_count_each_other(env):
    await env.accounts.register("ann@example.com", PW, None)
    outcomes: list[str] = []

    async def attempt(n: int) -> None:
        try:
            await env.accounts.login("ann@example.com", "wrong password", f"203.0.113.{n}", None)
        except (InvalidCredentials, LoginLocked) as exc:
            outcomes.append(type(exc).__name__)

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(attempt, n)
    # At most the limit's worth reach the password check (before, all 20 did); the others are
    # locked out, and a locked attempt is not a failure. (Which ones get through depends on
    # how the attempts interleave: all 20 may see each other and none get through.)
    tried = outcomes.count("InvalidCredentials")
    assert tried <= 3
    assert outcomes.count("LoginLocked") == 20 - tried
    failures = env.storage.accounts
    assert len(await failures.login_failures("account:ann@example.com", T0, 100)) == tried
    ips = [f"ip:203.0.113.{n}" for n in range(20)]
    assert sum([len(await failures.login_failures(ip, T0, 9)) for ip in ips]) == tried
    env.clock.advance(600)
    await env.accounts.login("ann@example.com", PW, "203.0.113.5", None)
    assert await failures.login_failures("account:ann@example.com", T0, 100) == []
    assert await failures.login_failures("ip:203.0.113.5", T0 + dt.timedelta(seconds=1), 9) == []


async def test_a_success_forgets_the_accounts_failures(env):
    await env.accounts.register("ann@example.com", PW, None)
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await env.accounts.login("ann@example.com", "wrong password", "203.0.113.5", None)
    await env.accounts.login("ann@example.com", PW, "203.0.113.5", None)
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await env.accounts.login("ann@example.com", "wrong password", "203.0.113.5", None)
    await env.accounts.login("ann@example.com", PW, "203.0.113.5", None)


async def test_one_address_guessing_many_accounts_is_locked_out(env):
    await env.accounts.register("ann@example.com", PW, None)
    for n in range(5):
        with pytest.raises(InvalidCredentials):
            await env.accounts.login(f"nobody{n}@example.com", PW, "203.0.113.9", None)
    with pytest.raises(LoginLocked):
        await env.accounts.login("ann@example.com", PW, "203.0.113.9", None)
    await env.accounts.login("ann@example.com", PW, "203.0.113.10", None)


async def test_a_suspended_account_cannot_log_in(env):
    user = await env.accounts.register("ann@example.com", PW, None)
    await env.storage.users.update_user(attrs.evolve(user, status=UserStatus.SUSPENDED))
    with pytest.raises(AccountInactive):
        await env.accounts.login("ann@example.com", PW, "203.0.113.5", None)


async def events_while(env: Env, user_id: str, action) -> list[dict]:
    """The control events published on the user's channel while ``action`` runs."""
    seen: list[dict] = []
    async with env.pubsub.subscribe(user_channel(user_id)) as messages:
        await action()
        with trio.move_on_after(0.05):
            async for message in messages:
                event_id, payload = unframe(message)
                assert event_id is None  # revocations are never kept for replay
                seen.append(json.loads(payload))
    return seen


async def test_logout_revokes_the_session_and_announces_it(env):
    user = await env.accounts.register("ann@example.com", PW, None)
    done = await env.accounts.login("ann@example.com", PW, "203.0.113.5", None)
    events = await events_while(
        env, user.id, lambda: env.accounts.logout(user.id, done.session.token_hash)
    )
    assert events == [{"type": "session_revoked", "session": done.session.token_hash}]
    stored = await env.storage.users.get_session(done.session.token_hash)
    assert not stored.is_active(env.clock())


async def test_sessions_are_listed_and_revoked_only_by_their_owner(env):
    ann = await env.accounts.register("ann@example.com", PW, None)
    bob = await env.accounts.register("bob@example.com", PW, None)
    first = await env.accounts.login("ann@example.com", PW, "203.0.113.5", None)
    env.clock.advance(1)
    second = await env.accounts.login("ann@example.com", PW, "203.0.113.5", None)
    page = await env.accounts.sessions(ann.id)
    assert [s.token_hash for s in page.items] == [
        second.session.token_hash,
        first.session.token_hash,
    ]
    with pytest.raises(SessionNotFound):
        await env.accounts.revoke_session(bob.id, first.session.token_hash)
    await env.accounts.revoke_session(ann.id, first.session.token_hash)
    assert [s.token_hash for s in (await env.accounts.sessions(ann.id)).items] == [
        second.session.token_hash
    ]
    with pytest.raises(SessionNotFound):  # already ended
        await env.accounts.revoke_session(ann.id, first.session.token_hash)


async def test_password_reset_is_single_use_and_ends_every_session(env):
    user = await env.accounts.register("ann@example.com", PW, None)
    await pending_mails(env)  # the verification mail
    session = (await env.accounts.login("ann@example.com", PW, "203.0.113.5", None)).session
    await env.accounts.request_password_reset("nobody@example.com")
    assert await pending_mails(env) == []
    await env.accounts.request_password_reset("ann@example.com")
    (mail,) = await pending_mails(env)
    token = token_in(mail.body)
    events = await events_while(
        env, user.id, lambda: env.accounts.reset_password(token, "a brand new password")
    )
    assert events == [{"type": "session_revoked", "session": session.token_hash}]
    with pytest.raises(InvalidCredentials):
        await env.accounts.login("ann@example.com", PW, "203.0.113.5", None)
    await env.accounts.login("ann@example.com", "a brand new password", "203.0.113.5", None)
    with pytest.raises(TokenRejected):
        await env.accounts.reset_password(token, "yet another password")


async def test_an_expired_reset_token_is_refused(env):
    await env.accounts.register("ann@example.com", PW, None)
    await pending_mails(env)
    await env.accounts.request_password_reset("ann@example.com")
    (mail,) = await pending_mails(env)
    env.clock.advance(env.config.accounts.reset_token_ttl)
    with pytest.raises(TokenRejected):
        await env.accounts.reset_password(token_in(mail.body), "a brand new password")


async def test_changing_the_password_keeps_only_the_current_session(env):
    user = await env.accounts.register("ann@example.com", PW, None)
    here = (await env.accounts.login("ann@example.com", PW, "203.0.113.5", None)).session
    there = (await env.accounts.login("ann@example.com", PW, "203.0.113.6", None)).session
    with pytest.raises(WrongPassword):
        await env.accounts.change_password(user.id, here.token_hash, "not it", "a new password")
    events = await events_while(
        env,
        user.id,
        lambda: env.accounts.change_password(user.id, here.token_hash, PW, "a new password"),
    )
    assert events == [{"type": "session_revoked", "session": there.token_hash}]
    assert [s.token_hash for s in (await env.accounts.sessions(user.id)).items] == [here.token_hash]


async def test_a_re_entered_password_counts_against_the_accounts_lockout(env):
    """A stolen session cannot guess the password through change or delete either."""
    user = await env.accounts.register("ann@example.com", PW, None)
    here = (await env.accounts.login("ann@example.com", PW, "203.0.113.5", None)).session
    with pytest.raises(WrongPassword):
        await env.accounts.change_password(user.id, here.token_hash, "guess 1", "a new password")
    with pytest.raises(WrongPassword):
        await env.accounts.delete_account(user.id, "guess 2")
    with pytest.raises(InvalidCredentials):
        await env.accounts.login("ann@example.com", "guess 3", "198.51.100.1", None)
    for attempt in (
        lambda: env.accounts.change_password(user.id, here.token_hash, PW, "a new password"),
        lambda: env.accounts.delete_account(user.id, PW),
        lambda: env.accounts.login("ann@example.com", PW, "198.51.100.2", None),
    ):
        with pytest.raises(LoginLocked):  # even with the right password
            await attempt()
    env.clock.advance(600)
    await env.accounts.change_password(user.id, here.token_hash, PW, "a new password")
    # A success forgets the account's failures, as a login does.
    failures = await env.storage.accounts.login_failures("account:ann@example.com", T0, 9)
    assert failures == []


async def test_deleting_the_account_needs_the_password_and_removes_it(env):
    user = await env.accounts.register("ann@example.com", PW, None)
    session = (await env.accounts.login("ann@example.com", PW, "203.0.113.5", None)).session
    with pytest.raises(WrongPassword):
        await env.accounts.delete_account(user.id, "not it")
    assert env.nodes.calls == []
    events = await events_while(env, user.id, lambda: env.accounts.delete_account(user.id, PW))
    assert events == [
        {"type": "session_revoked", "session": session.token_hash},
        {"type": "account_closed"},
    ]
    assert env.nodes.calls == [("disconnect_user", user.id)]
    with pytest.raises(StorageNotFound):
        await env.storage.users.get_user(user.id)
    with pytest.raises(InvalidCredentials):
        await env.accounts.login("ann@example.com", PW, "203.0.113.5", None)


async def test_deleting_the_account_drops_its_pending_mails_only(env):
    user = await env.accounts.register("ann@example.com", PW, None)  # a verification mail
    await env.accounts.register("bob@example.com", PW, None)
    await env.accounts.request_password_reset("ann@example.com")
    await env.accounts.delete_account(user.id, PW)
    assert [m.recipient for m in await pending_mails(env)] == ["bob@example.com"]


async def test_api_keys_are_hashed_limited_and_revoked_by_their_owner(env):
    ann = await env.accounts.register("ann@example.com", PW, None)
    bob = await env.accounts.register("bob@example.com", PW, None)
    created = await env.settings.create_api_key(ann.id, "stats", {ApiScope.STATS_READ})
    assert created.secret.startswith("gk_")
    assert created.secret not in repr(await env.storage.users.list_api_keys(ann.id))
    assert created.key.prefix == created.secret[:10]
    with pytest.raises(ApiKeyNotFound):
        await env.settings.revoke_api_key(bob.id, created.key.id)
    revoked = await env.settings.revoke_api_key(ann.id, created.key.id)
    assert revoked.revoked_at == T0
    for n in range(env.config.accounts.max_api_keys):
        await env.settings.create_api_key(ann.id, f"k{n}", {ApiScope.DEVICES_READ})
    with pytest.raises(TooManyApiKeys):
        await env.settings.create_api_key(ann.id, "one too many", {ApiScope.DEVICES_READ})


async def test_api_keys_created_at_the_same_time_stay_within_the_cap(env):
    ann = await env.accounts.register("ann@example.com", PW, None)
    most = env.config.accounts.max_api_keys
    outcomes: list[str] = []

    async def create(n: int) -> None:
        try:
            await env.settings.create_api_key(ann.id, f"k{n}", {ApiScope.DEVICES_READ})
            outcomes.append("created")
        except TooManyApiKeys:
            outcomes.append("refused")

    async with trio.open_nursery() as nursery:
        for n in range(most + 5):
            nursery.start_soon(create, n)
    assert outcomes.count("created") == most
    assert await env.storage.users.count_live_api_keys(ann.id) == most


async def test_profile_and_preferences_round_trip(env):
    from grass.domain.users import NotificationChannel, Preferences, Profile, QuietHours

    user = await env.accounts.register("ann@example.com", PW, None)
    profile = Profile(display_name="Ann", country="FR", timezone="Europe/Paris")
    assert (await env.settings.set_profile(user.id, profile)).profile == profile
    prefs = Preferences(
        channels=frozenset({NotificationChannel.EMAIL}),
        quiet_hours=QuietHours(start=dt.time(22), end=dt.time(7)),
    )
    assert (await env.settings.set_preferences(user.id, prefs)).preferences == prefs
    stored = await env.settings.user(user.id)
    assert (stored.profile, stored.preferences) == (profile, prefs)


async def test_tokens_of_the_other_purpose_are_refused(env):
    await env.accounts.register("ann@example.com", PW, None)
    (mail,) = await pending_mails(env)
    with pytest.raises(TokenRejected):
        await env.accounts.reset_password(token_in(mail.body), "a brand new password")
    assert TokenPurpose.VERIFY_EMAIL in TokenPurpose


async def test_housekeeping_drops_expired_sessions_and_old_failures(env):
    await env.accounts.register("ann@example.com", PW, None)
    await env.accounts.login("ann@example.com", PW, "203.0.113.5", None)
    with pytest.raises(InvalidCredentials):
        await env.accounts.login("ann@example.com", "wrong password", "203.0.113.5", None)
    assert await env.accounts.housekeeping() == (0, 0)
    env.clock.advance(env.config.accounts.session_ttl + 1)
    assert await env.accounts.housekeeping() == (
        1,
        2,
    )  # the session; the account's and IP's failures


async def test_login_and_reset_run_one_verification_whether_or_not_the_account_exists(
    env, monkeypatch
):
    """The work behind an answer must not depend on the account's existence (hardening #13,
    finding 5: an unknown email skipped the decoy hash and answered 30x sooner)."""
    await env.accounts.register("ann@example.com", PW, None)
    await env.storage.users.update_user(
        attrs.evolve(
            await env.storage.users.find_user_by_email("ann@example.com"),
            status=UserStatus.SUSPENDED,
        )
    )
    await env.accounts.register("bob@example.com", PW, None)
    hashed: list[str] = []
    real = env.accounts._passwords._hasher

    class Counting:
        def verify(self, stored: str, password: str) -> bool:
            hashed.append(stored)
            return real.verify(stored, password)

        def __getattr__(self, name: str):
            return getattr(real, name)

    monkeypatch.setattr(env.accounts._passwords, "_hasher", Counting())
    for email in ("bob@example.com", "ann@example.com", "nobody@example.com"):
        hashed.clear()
        with pytest.raises(InvalidCredentials):
            await env.accounts.login(email, "a wrong password", f"203.0.113.{len(email)}", None)
        assert len(hashed) == 1, email
        hashed.clear()
        await env.accounts.request_password_reset(email)
        assert len(hashed) == 1, email
    # Only the active account got a reset mail (the verification mails aside).
    resets = [m for m in await pending_mails(env) if m.subject == "Reset your password"]
    assert [m.recipient for m in resets] == ["bob@example.com"]

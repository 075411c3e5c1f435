"""AccountStore: single-use tokens, the mail outbox's leases, failed-login records."""

from __future__ import annotations

import datetime as dt

import pytest
import trio

from grass.domain.accounts import AccountToken, Mail, MailState, TokenPurpose
from grass.errors import IntegrityViolation, StorageConflict, StorageNotFound
from grass.ids import short_id
from tests.storage.conftest import T0, add_user, at, sha

MINUTE = dt.timedelta(minutes=1)


def token(user_id: str, purpose=TokenPurpose.VERIFY_EMAIL, **overrides) -> AccountToken:
    fields = {
        "token_hash": sha(),
        "user_id": user_id,
        "purpose": purpose,
        "created_at": T0,
        "expires_at": T0 + dt.timedelta(hours=1),
    }
    return AccountToken(**(fields | overrides))


def mail(**overrides) -> Mail:
    fields = {
        "id": short_id(),
        "recipient": "someone@example.com",
        "subject": "Hello",
        "body": "Body",
        "created_at": T0,
        "next_attempt_at": T0,
    }
    return Mail(**(fields | overrides))


async def test_a_token_is_used_once(storage):
    user = await add_user(storage)
    issued = token(user.id)
    await storage.accounts.create_token(issued)
    used = await storage.accounts.use_token(issued.token_hash, issued.purpose, at(0.5))
    assert used.used_at == at(0.5)
    assert used.user_id == user.id
    with pytest.raises(StorageNotFound):
        await storage.accounts.use_token(issued.token_hash, issued.purpose, at(0.6))


async def test_a_token_does_not_serve_another_purpose_nor_after_expiry(storage):
    user = await add_user(storage)
    issued = token(user.id)
    await storage.accounts.create_token(issued)
    with pytest.raises(StorageNotFound):
        await storage.accounts.use_token(issued.token_hash, TokenPurpose.RESET_PASSWORD, at(0.1))
    with pytest.raises(StorageNotFound):
        await storage.accounts.use_token(issued.token_hash, issued.purpose, at(1))
    with pytest.raises(StorageNotFound):
        await storage.accounts.use_token(sha(), issued.purpose, at(0.1))


async def test_concurrent_uses_of_one_token_let_exactly_one_win(storage):
    user = await add_user(storage)
    issued = token(user.id)
    await storage.accounts.create_token(issued)
    outcomes: list[str] = []

    async def use() -> None:
        try:
            await storage.accounts.use_token(issued.token_hash, issued.purpose, at(0.1))
            outcomes.append("used")
        except StorageNotFound:
            outcomes.append("refused")

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(use)
    assert sorted(outcomes) == ["refused", "refused", "refused", "used"]


async def test_token_rules(storage):
    user = await add_user(storage)
    with pytest.raises(IntegrityViolation):
        await storage.accounts.create_token(token(short_id()))
    issued = token(user.id)
    await storage.accounts.create_token(issued)
    with pytest.raises(StorageConflict):
        await storage.accounts.create_token(issued)


async def test_revoking_kills_only_unused_tokens_of_that_purpose(storage):
    user = await add_user(storage)
    reset_a = token(user.id, TokenPurpose.RESET_PASSWORD)
    reset_b = token(user.id, TokenPurpose.RESET_PASSWORD)
    verify = token(user.id)
    for t in (reset_a, reset_b, verify):
        await storage.accounts.create_token(t)
    await storage.accounts.use_token(reset_a.token_hash, reset_a.purpose, at(0.1))
    assert await storage.accounts.revoke_tokens(user.id, TokenPurpose.RESET_PASSWORD, at(0.2)) == 1
    with pytest.raises(StorageNotFound):
        await storage.accounts.use_token(reset_b.token_hash, reset_b.purpose, at(0.3))
    assert (await storage.accounts.use_token(verify.token_hash, verify.purpose, at(0.3))).used_at


async def test_deleting_the_user_deletes_its_tokens(storage):
    user = await add_user(storage)
    issued = token(user.id)
    await storage.accounts.create_token(issued)
    await storage.users.delete_user(user.id)
    with pytest.raises(StorageNotFound):
        await storage.accounts.use_token(issued.token_hash, issued.purpose, at(0.1))


async def test_claims_lease_due_mails_oldest_first(storage):
    late = mail(next_attempt_at=T0 + 2 * MINUTE)
    first = mail(next_attempt_at=T0 - MINUTE)
    second = mail(next_attempt_at=T0)
    for m in (late, first, second):
        await storage.accounts.enqueue_mail(m)
    lease = T0 + 5 * MINUTE
    claimed = await storage.accounts.claim_mail(T0, lease, limit=1)
    assert [m.id for m in claimed] == [first.id]
    assert claimed[0].next_attempt_at == lease
    claimed = await storage.accounts.claim_mail(T0, lease, limit=10)
    assert [m.id for m in claimed] == [second.id]
    assert await storage.accounts.claim_mail(T0 + MINUTE, lease, limit=10) == []
    # A sender that died: its lease ends and the mail comes back (with the one due meanwhile).
    back = await storage.accounts.claim_mail(lease, lease + MINUTE, limit=10)
    assert {m.id for m in back} == {first.id, second.id, late.id}


async def test_sent_and_failed_mails_leave_the_queue(storage):
    ok, flaky = mail(), mail()
    for m in (ok, flaky):
        await storage.accounts.enqueue_mail(m)
    await storage.accounts.claim_mail(T0, T0 + MINUTE, limit=10)
    sent = await storage.accounts.mail_sent(ok.id, T0 + dt.timedelta(seconds=1))
    assert (sent.state, sent.attempts) == (MailState.SENT, 1)
    retry = await storage.accounts.mail_attempt_failed(flaky.id, T0, "421 busy", T0 + 2 * MINUTE)
    assert (retry.state, retry.attempts, retry.last_error) == (MailState.PENDING, 1, "421 busy")
    assert retry.next_attempt_at == T0 + 2 * MINUTE
    assert await storage.accounts.claim_mail(T0 + MINUTE, T0 + 9 * MINUTE, limit=10) == []
    assert [
        m.id for m in await storage.accounts.claim_mail(T0 + 2 * MINUTE, T0 + 9 * MINUTE, 10)
    ] == [flaky.id]
    gave_up = await storage.accounts.mail_attempt_failed(flaky.id, T0 + 3 * MINUTE, "550 no", None)
    assert (gave_up.state, gave_up.attempts, gave_up.failed_at) == (
        MailState.FAILED,
        2,
        T0 + 3 * MINUTE,
    )
    assert (
        await storage.accounts.claim_mail(T0 + dt.timedelta(days=1), T0 + dt.timedelta(days=2), 10)
        == []
    )
    assert await storage.accounts.get_mail(flaky.id) == gave_up
    with pytest.raises(StorageNotFound):
        await storage.accounts.mail_sent(short_id(), T0)
    with pytest.raises(StorageNotFound):
        await storage.accounts.get_mail(short_id())


async def test_a_mail_enqueued_in_a_rolled_back_unit_of_work_is_gone(storage):
    queued = mail()

    async def enqueue_then_fail() -> None:
        async with storage.transaction() as tx:
            await tx.accounts.enqueue_mail(queued)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await enqueue_then_fail()
    with pytest.raises(StorageNotFound):
        await storage.accounts.get_mail(queued.id)


async def test_login_failures_are_counted_per_key_in_a_window(storage):
    for minutes in (0, 1, 1, 5):
        await storage.accounts.add_login_failure("account:a@example.com", T0 + minutes * MINUTE)
    await storage.accounts.add_login_failure("ip:203.0.113.1", T0)
    recent = await storage.accounts.login_failures("account:a@example.com", T0 + MINUTE, limit=10)
    assert recent == [T0 + 5 * MINUTE, T0 + MINUTE, T0 + MINUTE]
    assert len(await storage.accounts.login_failures("account:a@example.com", T0, limit=2)) == 2
    # Taking one back removes one of the failures at that time, and nothing else.
    await storage.accounts.add_login_failure("ip:203.0.113.1", T0)
    await storage.accounts.remove_login_failure("ip:203.0.113.1", T0)
    await storage.accounts.remove_login_failure("ip:203.0.113.1", T0 + MINUTE)
    assert await storage.accounts.login_failures("ip:203.0.113.1", T0, limit=10) == [T0]
    await storage.accounts.clear_login_failures("account:a@example.com")
    assert await storage.accounts.login_failures("account:a@example.com", T0, limit=10) == []
    assert await storage.accounts.login_failures("ip:203.0.113.1", T0, limit=10) == [T0]
    assert await storage.accounts.delete_login_failures_before(T0 + MINUTE) == 1
    assert await storage.accounts.login_failures("ip:203.0.113.1", T0, limit=10) == []


async def test_pending_mails_to_an_address_can_be_dropped(storage):
    mine = [mail(recipient="gone@example.com") for _ in range(2)]
    sent = mail(recipient="gone@example.com")
    other = mail(recipient="stays@example.com")
    for m in (*mine, sent, other):
        await storage.accounts.enqueue_mail(m)
    await storage.accounts.mail_sent(sent.id, T0)
    assert await storage.accounts.delete_pending_mail("gone@example.com") == 2
    assert await storage.accounts.delete_pending_mail("gone@example.com") == 0
    for m in mine:
        with pytest.raises(StorageNotFound):
            await storage.accounts.get_mail(m.id)
    assert (await storage.accounts.get_mail(sent.id)).state is MailState.SENT
    claimed = await storage.accounts.claim_mail(T0, T0 + MINUTE, limit=10)
    assert [m.id for m in claimed] == [other.id]

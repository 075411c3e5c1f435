"""Mail delivery from the outbox: retries with back-off, giving up, leases after a crash, and
the SMTP sender against a small SMTP server on loopback."""

from __future__ import annotations

import datetime as dt
from functools import partial

import attrs
import pytest
import trio

from grass.config import MailConfig, MailTransport, Secret
from grass.domain.accounts import Mail, MailState
from grass.services.mail import (
    BATCH,
    LogMailSender,
    MailDelivery,
    MailRejected,
    SmtpMailSender,
    mail_sender_for,
    new_mail,
)
from grass.storage.memory import MemoryStorage

T0 = dt.datetime(2025, 1, 6, tzinfo=dt.UTC)
SETTINGS = MailConfig(max_attempts=3, retry_base=10.0, poll_interval=5.0)


@pytest.fixture
def memory() -> MemoryStorage:
    """Virtual-time tests run on the memory backend: a PostgreSQL driver's own timeouts do not
    survive autojump_clock. The outbox's semantics are pinned on both backends by
    tests/storage/test_accounts.py, and the SMTP test below runs on both."""
    return MemoryStorage()


def virtual_now() -> dt.datetime:
    """Wall-clock time that follows Trio's (virtual, under autojump_clock) clock."""
    return T0 + dt.timedelta(seconds=trio.current_time())


@attrs.define
class ScriptedSender:
    """Fails with the given errors in turn, then delivers."""

    errors: list[Exception] = attrs.field(factory=list)
    sent: list[tuple[str, float]] = attrs.field(factory=list)

    async def send(self, mail: Mail) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append((mail.id, trio.current_time()))


async def enqueue(storage, n: int = 1) -> list[Mail]:
    mails = [new_mail(f"u{i}@example.com", "Hi", "Body", virtual_now()) for i in range(n)]
    for mail in mails:
        await storage.accounts.enqueue_mail(mail)
    return mails


async def test_temporary_failures_are_retried_with_back_off(memory, autojump_clock):
    storage = memory
    sender = ScriptedSender([OSError("connection refused"), TimeoutError("slow")])
    delivery = MailDelivery(storage.accounts, sender, lambda: SETTINGS, virtual_now)
    (mail,) = await enqueue(storage)
    async with trio.open_nursery() as nursery:
        await nursery.start(delivery.run)
        await trio.sleep(100)
        nursery.cancel_scope.cancel()
    # Tried at 0, then 10 s later (retry_base), then 20 s after that; polls every 5 s.
    assert len(sender.sent) == 1
    assert sender.sent[0][1] == pytest.approx(30, abs=5.01)
    stored = await storage.accounts.get_mail(mail.id)
    assert (stored.state, stored.attempts) == (MailState.SENT, 3)


async def test_it_gives_up_after_the_configured_attempts(memory, autojump_clock):
    storage = memory
    sender = ScriptedSender([OSError("down")] * 5)
    delivery = MailDelivery(storage.accounts, sender, lambda: SETTINGS, virtual_now)
    (mail,) = await enqueue(storage)
    for _ in range(10):
        await delivery.deliver_due()
        await trio.sleep(60)
    stored = await storage.accounts.get_mail(mail.id)
    assert (stored.state, stored.attempts) == (MailState.FAILED, 3)
    assert stored.last_error == "OSError: down"


async def test_a_permanent_refusal_is_not_retried(memory, autojump_clock):
    storage = memory
    sender = ScriptedSender([MailRejected("550 no such user")])
    delivery = MailDelivery(storage.accounts, sender, lambda: SETTINGS, virtual_now)
    (mail,) = await enqueue(storage)
    await delivery.deliver_due()
    stored = await storage.accounts.get_mail(mail.id)
    assert (stored.state, stored.attempts) == (MailState.FAILED, 1)


async def test_mails_claimed_by_a_crashed_sender_are_sent_when_the_lease_ends(
    memory, autojump_clock
):
    storage = memory
    (mail,) = await enqueue(storage)
    # A sender claimed it, then died before recording anything.
    lease_end = virtual_now() + dt.timedelta(minutes=5)
    assert [m.id for m in await storage.accounts.claim_mail(virtual_now(), lease_end, 10)] == [
        mail.id
    ]
    sender = ScriptedSender()
    delivery = MailDelivery(storage.accounts, sender, lambda: SETTINGS, virtual_now)
    async with trio.open_nursery() as nursery:
        await nursery.start(delivery.run)
        await trio.sleep(299)
        assert sender.sent == []
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert [m for m, _ in sender.sent] == [mail.id]


async def test_a_notify_sends_at_once_and_big_queues_drain_in_one_round(memory, autojump_clock):
    storage = memory
    sender = ScriptedSender()
    delivery = MailDelivery(storage.accounts, sender, lambda: SETTINGS, virtual_now)
    async with trio.open_nursery() as nursery:
        await nursery.start(delivery.run)
        await trio.sleep(1)
        await enqueue(storage, BATCH + 3)
        delivery.notify()
        await trio.sleep(0.5)
        assert len(sender.sent) == BATCH + 3
        assert all(at == pytest.approx(1) for _, at in sender.sent)
        nursery.cancel_scope.cancel()


@attrs.define
class SlowSender:
    """A server that takes ``seconds`` per mail."""

    seconds: float
    sent: list[str] = attrs.field(factory=list)

    async def send(self, mail: Mail) -> None:
        await trio.sleep(self.seconds)
        self.sent.append(mail.id)


async def test_two_instances_behind_a_slow_server_send_each_mail_once(memory, autojump_clock):
    storage = memory
    settings = attrs.evolve(SETTINGS, smtp_timeout=10.0)  # a lease of 50 s per claim
    sender = SlowSender(seconds=15)
    first, second = (
        MailDelivery(storage.accounts, sender, lambda: settings, virtual_now) for _ in range(2)
    )
    mails = await enqueue(storage, BATCH)
    async with trio.open_nursery() as nursery:
        await nursery.start(first.run)
        await trio.sleep(60)  # more than a lease: one claim of the whole batch had expired
        await nursery.start(second.run)
        await trio.sleep(15 * BATCH)
        nursery.cancel_scope.cancel()
    assert sorted(sender.sent) == sorted(m.id for m in mails)


def test_the_sender_follows_the_config():
    assert isinstance(mail_sender_for(MailConfig()), LogMailSender)
    assert isinstance(mail_sender_for(MailConfig(transport=MailTransport.SMTP)), SmtpMailSender)


# --- SMTP against a minimal server on loopback ------------------------------------------------


async def smtp_server(received: list[dict], refuse: str | None, stream: trio.SocketStream) -> None:
    """Enough of RFC 5321 for smtplib: EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT."""
    buffer = b""

    async def line() -> str:
        nonlocal buffer
        while b"\r\n" not in buffer:
            chunk = await stream.receive_some(4096)
            if not chunk:
                raise EOFError
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n")
        return head.decode()

    async def say(text: str) -> None:
        await stream.send_all(text.encode() + b"\r\n")

    message: dict = {"rcpt": []}
    await say("220 test ESMTP")
    try:
        while True:
            command = await line()
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                await say("250-test\r\n250 AUTH PLAIN")
            elif verb == "AUTH":
                message["auth"] = command
                await say("235 ok")
            elif verb == "MAIL":
                await say("250 ok")
            elif verb == "RCPT":
                if refuse and refuse in command:
                    await say("550 no such user")
                else:
                    message["rcpt"].append(command)
                    await say("250 ok")
            elif verb == "DATA":
                await say("354 go on")
                lines = []
                while (text := await line()) != ".":
                    lines.append(text)
                message["data"] = "\n".join(lines)
                received.append(message)
                await say("250 queued")
            elif verb == "QUIT":
                await say("221 bye")
                return
            else:
                await say("250 ok")
    except EOFError:
        return


@pytest.mark.parametrize("refuse", [None, "nobody@"])
async def test_smtp_delivers_or_reports_a_refusal(storage, refuse):
    received: list[dict] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, partial(smtp_server, received, refuse), 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        settings = MailConfig(
            transport=MailTransport.SMTP,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_starttls=False,
            smtp_username="mailer",
            smtp_password=Secret("pw"),
            smtp_timeout=5.0,
        )
        delivery = MailDelivery(
            storage.accounts, SmtpMailSender(settings), lambda: settings, virtual_now
        )
        to = "nobody@example.com" if refuse else "ann@example.com"
        mail = new_mail(to, "Confirm", "Open the link", virtual_now())
        await storage.accounts.enqueue_mail(mail)
        await delivery.deliver_due()
        nursery.cancel_scope.cancel()
    stored = await storage.accounts.get_mail(mail.id)
    if refuse:
        assert stored.state is MailState.FAILED
        assert received == []
        return
    assert stored.state is MailState.SENT
    (got,) = received
    assert got["auth"].startswith("AUTH PLAIN")
    assert [r.upper() for r in got["rcpt"]] == ["RCPT TO:<ANN@EXAMPLE.COM>"]
    assert "Subject: Confirm" in got["data"]
    assert f"Message-ID: <{mail.id}@grass>" in got["data"]
    assert "Open the link" in got["data"]

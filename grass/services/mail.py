"""Mail: its senders (log, SMTP; ``mail.transport`` chooses) and the delivery task that drains
the outbox.

Mails are written to the outbox (``storage.accounts``) in the same unit of work as what they
announce; :class:`MailDelivery` sends them later, with retries and exponential back-off, and
leases each claimed mail so a crashed sender's mails are taken up again (at-least-once: a
crash after sending and before recording it sends that mail twice, never zero times).
"""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from typing import Protocol

import trio

from grass import logs
from grass.config import MailConfig, MailTransport
from grass.domain.accounts import Mail
from grass.errors import GrassError
from grass.ids import short_id
from grass.storage.accounts import AccountStore

log = logs.get("grass.mail")

#: Mails taken per claim; the rest wait for the next round.
BATCH = 20


class MailRejected(GrassError):
    """The server refused the mail for good (a 5xx answer): retrying cannot help."""

    code = "mail_rejected"


class MailSender(Protocol):
    async def send(self, mail: Mail) -> None:
        """Deliver or raise: MailRejected for a permanent refusal, anything else to retry."""
        ...


def new_mail(recipient: str, subject: str, body: str, now: dt.datetime) -> Mail:
    return Mail(
        id=short_id(),
        recipient=recipient,
        subject=subject,
        body=body,
        created_at=now,
        next_attempt_at=now,
    )


class LogMailSender:
    """Development: the mail goes to the log (with its links: never use it in production)."""

    async def send(self, mail: Mail) -> None:
        log.info("mail", to=mail.recipient, subject=mail.subject, body=mail.body)


class SmtpMailSender:
    def __init__(self, settings: MailConfig) -> None:
        self._settings = settings

    async def send(self, mail: Mail) -> None:
        await trio.to_thread.run_sync(self._send_blocking, mail)

    def _send_blocking(self, mail: Mail) -> None:
        s = self._settings
        message = EmailMessage()
        message["From"] = s.sender
        message["To"] = mail.recipient
        message["Subject"] = mail.subject
        message["Message-ID"] = f"<{mail.id}@grass>"  # the same on a retry: receivers dedupe
        message.set_content(mail.body)
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout) as smtp:
                if s.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if s.smtp_username:
                    smtp.login(s.smtp_username, s.smtp_password.reveal())
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise MailRejected(f"recipient refused: {exc.recipients}") from exc
        except smtplib.SMTPResponseException as exc:
            if 500 <= exc.smtp_code < 600:
                raise MailRejected(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
            raise


def mail_sender_for(settings: MailConfig) -> MailSender:
    if settings.transport is MailTransport.SMTP:
        return SmtpMailSender(settings)
    return LogMailSender()


class MailDelivery:
    def __init__(
        self,
        store: AccountStore,
        sender: MailSender,
        settings: Callable[[], MailConfig],
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._store = store
        self._sender = sender
        self._settings = settings
        self._clock = clock
        self._wake = trio.Event()

    def notify(self) -> None:
        """A mail was just committed: send it now rather than at the next poll."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                while await self.deliver_due() == BATCH:
                    pass
            except GrassError as exc:  # the store is down: try again at the next round
                log.warning("mail delivery round failed", error=str(exc))
            with trio.move_on_after(self._settings().poll_interval):
                await self._wake.wait()
            self._wake = trio.Event()

    async def deliver_due(self) -> int:
        """One round: up to BATCH due mails, each tried once. Returns how many were claimed.

        Each mail is claimed just before it is tried, with a lease long enough for one send:
        a batch claimed at once outlived its lease behind a slow server, and another instance
        claimed and sent the mails not yet reached."""
        for claimed in range(BATCH):
            settings = self._settings()
            now = self._clock()
            lease = now + dt.timedelta(seconds=2 * settings.smtp_timeout + 30)
            mails = await self._store.claim_mail(now, lease, 1)
            if not mails:
                return claimed
            await self._attempt(mails[0], settings)
        return BATCH

    async def _attempt(self, mail: Mail, settings: MailConfig) -> None:
        try:
            await self._sender.send(mail)
        except MailRejected as exc:
            await self._store.mail_attempt_failed(mail.id, self._clock(), str(exc), None)
            log.warning("mail rejected", mail=mail.id, error=str(exc))
            return
        except Exception as exc:  # a sending error of any kind: retried later
            attempts = mail.attempts + 1
            retry_at = None
            if attempts < settings.max_attempts:
                delay = settings.retry_base * 2 ** (attempts - 1)
                retry_at = self._clock() + dt.timedelta(seconds=delay)
            await self._store.mail_attempt_failed(
                mail.id, self._clock(), f"{type(exc).__name__}: {exc}", retry_at
            )
            log.warning("mail not sent", mail=mail.id, attempts=attempts, retry=bool(retry_at))
            return
        await self._store.mail_sent(mail.id, self._clock())

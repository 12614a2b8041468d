"""The SMTP side of outgoing e-mail: the server's settings, a message as it is sent, and
one connection that sends messages one after another and says how each went.

Nothing here touches the database. ``kopilka.mail.sender`` takes messages from the
outbox and hands them to ``SmtpSession.send``, which answers with a ``SendOutcome``:

* **sent**: the server took the message (250 after DATA);
* **refused for good** (``permanent``): a 5xx answer to the recipient or to the message
  itself, or an address the server cannot carry (an international address without
  SMTPUTF8): trying again would change nothing;
* **not now**: no connection, a timeout, a dropped connection, a 4xx answer, a refused
  sign-in or sender (the server's settings are wrong: once they are put right, the
  message goes). ``server_down`` says there was no connection at all, so the worker
  leaves the rest of its batch for later rather than waiting out a timeout for each.

The password is given to ``smtplib.SMTP.login`` and to nothing else: it is not in a
``repr``, a log line or an error text (``describe`` removes it should a server ever echo
it back).
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from types import TracebackType

from kopilka.core.settings import Settings, get_settings

MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to send (``KOPILKA_SMTP_*``, ``KOPILKA_MAIL_FROM``)."""

    host: str = "127.0.0.1"
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    ssl: bool = False
    timeout_seconds: float = 30.0
    mail_from: str = "Kopilka <no-reply@localhost>"

    def __post_init__(self) -> None:
        assert not (self.ssl and self.starttls), "SSL or STARTTLS, not both"
        assert 1 <= self.port <= 65535 and self.timeout_seconds > 0

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> SmtpConfig:
        s = settings or get_settings()
        return cls(
            host=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username or None,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            starttls=s.smtp_starttls,
            ssl=s.smtp_ssl,
            timeout_seconds=s.smtp_timeout_seconds,
            mail_from=s.mail_from,
        )

    @property
    def envelope_from(self) -> str:
        """The sender's bare address, for ``MAIL FROM`` (bounces come back to it)."""
        return ascii_address(parseaddr(self.mail_from)[1])

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def ascii_address(address: str) -> str:
    """``address`` with an international domain in its ASCII form (почта.рф ->
    xn--80a1acny.xn--p1ai), which every server takes; a non-ASCII local part stays (it
    needs a server with SMTPUTF8)."""
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    return f"{local}@{domain.encode('idna').decode('ascii')}"


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message of the outbox, as it is handed to the server."""

    mail_id: int
    tenant_id: int
    to_addr: str
    subject: str
    body_text: str = field(repr=False)
    body_html: str | None = field(repr=False)
    created_at: datetime


def _cte(text: str) -> str | None:
    """Plain ASCII as it is (or quoted-printable for long lines: the library decides);
    anything else in base64, which every server carries, 8BITMIME or not."""
    return None if text.isascii() else "base64"


def build_message(out: Outgoing, config: SmtpConfig) -> EmailMessage:
    """The message as it goes out: UTF-8, the text with the HTML as its alternative, a
    Message-ID that stays the same however often it is tried (a client that gets it
    twice can tell), the date it was queued."""
    sender_domain = config.envelope_from.rpartition("@")[2]
    message = EmailMessage()
    message["From"] = config.mail_from
    message["To"] = ascii_address(out.to_addr)
    message["Subject"] = out.subject
    message["Date"] = format_datetime(out.created_at)
    stamp = int(out.created_at.timestamp() * 1_000_000)
    message["Message-ID"] = f"<kopilka.{out.tenant_id}.{out.mail_id}.{stamp}@{sender_domain}>"
    # RFC 3834: no out-of-office answers to a machine's message.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(out.body_text, subtype="plain", charset="utf-8", cte=_cte(out.body_text))
    if out.body_html is not None:
        message.add_alternative(
            out.body_html, subtype="html", charset="utf-8", cte=_cte(out.body_html)
        )
    assert message["Message-ID"] and message.get_content_type().startswith(("text/", "multi"))
    return message


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True, slots=True)
class SendOutcome:
    sent: bool
    error: str = ""  # for people, no secrets: what the server said, or what went wrong
    permanent: bool = False  # refused for good: never tried again
    server_down: bool = False  # no connection at all

    def __post_init__(self) -> None:
        assert self.sent != bool(self.error), "sent, or an error saying why not"
        assert not (self.sent and (self.permanent or self.server_down))


def _answer(code: int, text: bytes | str) -> str:
    said = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(said.split())}".strip()


def describe(what: str, error: BaseException, config: SmtpConfig) -> str:
    """One line for ``last_error``: what was being done and what happened."""
    if isinstance(error, smtplib.SMTPResponseException):
        text = f"{what}: {_answer(error.smtp_code, error.smtp_error)}"
    elif isinstance(error, TimeoutError):
        text = f"{what}: no answer from {config.where} within {config.timeout_seconds:g} s"
    else:
        text = f"{what}: {type(error).__name__}: {' '.join(str(error).split())}"
    return scrub(text, config)


def scrub(text: str, config: SmtpConfig) -> str:
    """``text`` cut to ``MAX_ERROR_CHARS``, the password masked should it be in it."""
    if config.password:
        text = text.replace(config.password, "***")
    return text[:MAX_ERROR_CHARS]


class SmtpSession:
    """One connection to the server, opened at the first message and again after it
    drops; closed at the end of the ``with`` block."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpSession:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if c.ssl:
            smtp = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout_seconds, context=context)
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_seconds)
        try:
            smtp.ehlo_or_helo_if_needed()
            if c.starttls:
                smtp.starttls(context=context)
                smtp.ehlo()
            if c.username:
                smtp.login(c.username, c.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, message: EmailMessage, to_addr: str) -> SendOutcome:
        """Hand one message for one recipient (the envelope names only ``to_addr``, so
        nothing in the headers can add another)."""
        if self._smtp is None:
            try:
                self._smtp = self._connect()
            except (OSError, smtplib.SMTPException) as error:
                what = (
                    f"{self.config.where} refused the sign-in"
                    if isinstance(error, smtplib.SMTPAuthenticationError)
                    else f"could not connect to {self.config.where}"
                )
                return SendOutcome(False, describe(what, error, self.config), server_down=True)
        try:
            self._smtp.send_message(
                message, from_addr=self.config.envelope_from, to_addrs=[ascii_address(to_addr)]
            )
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            return self._refused("recipient refused", code, text)
        except smtplib.SMTPSenderRefused as error:
            # The server will not take mail from KOPILKA_MAIL_FROM: its settings, not the
            # message, are wrong; it goes once they are put right.
            return self._refused("sender refused", error.smtp_code, error.smtp_error, ours=True)
        except smtplib.SMTPDataError as error:
            return self._refused("message refused", error.smtp_code, error.smtp_error)
        except smtplib.SMTPNotSupportedError as error:
            return SendOutcome(False, describe("cannot be sent", error, self.config), True)
        except (OSError, smtplib.SMTPException) as error:
            self._drop()
            return SendOutcome(False, describe("the exchange failed", error, self.config))
        return SendOutcome(True)

    def _refused(
        self, what: str, code: int, text: bytes | str, *, ours: bool = False
    ) -> SendOutcome:
        if code == 421:  # the server is closing the connection (smtplib has closed it)
            self._drop()
        permanent = 500 <= code <= 599 and not ours
        error = scrub(f"{what}: {_answer(code, text)}", self.config)
        return SendOutcome(False, error, permanent)

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

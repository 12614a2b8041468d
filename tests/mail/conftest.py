"""Outgoing e-mail against a real SMTP server on 127.0.0.1 (aiosmtpd), and the outbox on
the real databases.

``smtp_server`` starts an SMTP server of its own for the test, on a free port, and points
Kopilka's settings at it (``KOPILKA_SMTP_HOST``/``KOPILKA_SMTP_PORT`` set, the settings'
cache cleared before and after), so anything that sends mail the way the server does
(``deliver_due_mail``, ``MailScheduler``, ``kopilka mail send``) sends it there. Other
test folders import it for their end-to-end tests::

    from tests.mail.conftest import smtp_server  # noqa: F401  (the fixture)

    def test_the_client_gets_the_code(engine: Engine, smtp_server: SmtpServer) -> None:
        ...  # the sale, which queues the message in its transaction
        deliver_due_mail(engine, tenant_id=tenant.id)
        (message,) = smtp_server.messages  # email.message.EmailMessage
        assert "Код активации" in message.get_body(("plain",)).get_content()

What the server knows and can be told:

* ``.host``, ``.port``; ``.messages``: every message it took, parsed
  (``email.policy.default``, lines ending in LF), in order; ``.envelopes``: the
  (MAIL FROM, [RCPT TO, ...]) of each;
  ``.wait_for(n)`` waits until it has taken ``n`` (for a server's own clock).
* ``.fail_next(reply, count=1)``: the next ``count`` messages are refused:
  ``"451"`` (not now) or ``"550"`` (never) to the recipient, ``"554"`` to the message
  after DATA, or ``"drop"``: the connection is closed after the message, unanswered.
* ``.require_login(user, password)``: AUTH is then needed, with these.
* ``.smtputf8 = False``: the server no longer offers SMTPUTF8 (international mailboxes).
* ``.config()``: a ``SmtpConfig`` for it, for tests that hand one over directly.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, TypeVar

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from sqlalchemy import Connection, Engine

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.settings import get_settings
from kopilka.ledger.posting import run_transaction
from kopilka.mail import outbox
from kopilka.mail.sender import MailCounts, deliver_due_mail
from kopilka.mail.smtp import SmtpConfig
from kopilka.tenancy.actions import Tenant, create_tenant
from tests.web.conftest import _dispose_web_apps, web  # noqa: F401  (the screens' fixtures)

T = TypeVar("T")
FAULTS = ("451", "550", "554", "drop")
_REPLIES = {
    "451": "451 4.3.0 Try again later",
    "550": "550 5.1.1 No such mailbox here",
    "554": "554 5.7.1 Message refused",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class SmtpServer:
    """The aiosmtpd handler, and what the test reads from it."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    _faults: deque[str] = field(default_factory=deque)
    smtputf8: bool = True  # offered to the next connection
    _credentials: tuple[str, str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ----------------------------------------------------------------- for the test

    def fail_next(self, reply: str, count: int = 1) -> None:
        assert reply in FAULTS, reply
        with self._lock:
            self._faults.extend([reply] * count)

    def require_login(self, user: str, password: str) -> None:
        self._credentials = (user, password)

    def config(self, **overrides: Any) -> SmtpConfig:
        return SmtpConfig(
            **{"host": self.host, "port": self.port, "timeout_seconds": 5.0, **overrides}
        )

    def wait_for(self, count: int, seconds: float = 10.0) -> list[EmailMessage]:
        deadline = time.monotonic() + seconds
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.messages) >= count, f"{len(self.messages)} of {count} messages arrived"
        return self.messages

    # ----------------------------------------------------------------- aiosmtpd hooks

    def _fault(self, stage: str) -> str | None:
        """The fault waiting for the message at ``stage`` (rcpt or data), taken."""
        with self._lock:
            if self._faults and (self._faults[0] in ("451", "550")) == (stage == "rcpt"):
                return self._faults.popleft()
        return None

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        fault = self._fault("rcpt")
        if fault is not None:
            return _REPLIES[fault]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        fault = self._fault("data")
        if fault == "drop":
            assert server.transport is not None
            server.transport.close()
            return "451 never heard"
        if fault is not None:
            return _REPLIES[fault]
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        # As a mail client stores it: lines end in LF, not the wire's CRLF.
        parsed = email.message_from_bytes(
            content.replace(b"\r\n", b"\n"), policy=email.policy.default
        )
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self.messages.append(parsed)
            self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK: queued"

    def _authenticate(
        self, server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        self.logins.append(login)
        return AuthResult(success=self._credentials == (login, password), handled=False)


class _Controller(Controller):
    """Asks for AUTH, and offers SMTPUTF8, as the test says."""

    def __init__(self, handler: SmtpServer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.smtp_handler = handler

    def factory(self) -> SMTPServer:
        server = super().factory()
        server._auth_required = self.smtp_handler._credentials is not None
        server.enable_SMTPUTF8 = self.smtp_handler.smtputf8
        return server


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on 127.0.0.1 for this test, with Kopilka's settings pointed at it."""
    handler = SmtpServer(port=free_port())
    controller = _Controller(
        handler,
        hostname=handler.host,
        port=handler.port,
        server_hostname="smtp.test",
        authenticator=handler._authenticate,
        auth_require_tls=False,
        enable_SMTPUTF8=True,
        ready_timeout=10.0,
    )
    controller.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("KOPILKA_SMTP_HOST", handler.host)
            patch.setenv("KOPILKA_SMTP_PORT", str(handler.port))
            patch.setenv("KOPILKA_SMTP_TIMEOUT_SECONDS", "5")
            get_settings.cache_clear()
            yield handler
    finally:
        get_settings.cache_clear()
        controller.stop()


# --------------------------------------------------------------------------- the outbox


STEP = timedelta(days=1)  # longer than the longest wait between tries, jitter included


@dataclass
class Mail:
    """A tenant's outbox in a test: ``queue`` writes as a domain does (its own
    transaction), ``run`` is one pass of the worker for this tenant only, ``at(n)`` a
    moment ``n`` steps ahead, each longer than the longest wait between tries."""

    engine: Engine
    tenant: Tenant
    start: datetime

    def tx(self, work: Callable[[Connection], T]) -> T:
        return run_transaction(self.engine, work)

    def read(self, work: Callable[[Connection], T]) -> T:
        with read_only(self.engine) as conn:
            return work(conn)

    def at(self, steps: int) -> datetime:
        return self.start + steps * STEP

    def queue(self, **fields: Any) -> int:
        """Queue a message (``now=None``: due at the wall clock's now, for a server's own
        clock or the command line)."""
        moment = fields.pop("now", self.start)
        values: dict[str, Any] = {
            "kind": "test",
            "ref": f"r-{uuid.uuid4().hex[:8]}",
            "to_addr": "anna@example.ru",
            "subject": "Ваш абонемент",
            "body_text": "Здравствуйте!\nКод активации: 4F7K-22QX",
            **fields,
        }
        return self.tx(
            lambda conn: outbox.queue_mail(conn, tenant_id=self.tenant.id, now=moment, **values)
        )

    def run(self, steps: int = 0, **options: Any) -> MailCounts:
        return deliver_due_mail(
            self.engine, now=self.at(steps), tenant_id=self.tenant.id, **options
        )

    def get(self, mail_id: int) -> outbox.MailView:
        return self.read(lambda conn: outbox.get_mail(conn, self.tenant.id, mail_id))

    def all(self, **filters: Any) -> list[outbox.MailView]:
        return self.read(lambda conn: outbox.list_mail(conn, self.tenant.id, **filters))


@pytest.fixture
def mail(engine: Engine, tenant: Tenant) -> Mail:
    # A minute ahead: what the test queues is due at step 0 however long the test takes.
    return Mail(engine, tenant, utcnow() + timedelta(minutes=1))


@pytest.fixture
def staff() -> Actor:
    return Actor.cli("tests")


@pytest.fixture
def tenant_b(engine: Engine, staff: Actor) -> int:
    """Another tenant's id, for isolation tests."""
    with engine.begin() as conn:
        return create_tenant(
            conn, slug=f"o-{uuid.uuid4().hex[:12]}", name="Other tenant", actor=staff
        ).id

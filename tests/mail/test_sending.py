"""Sending the outbox to a real SMTP server on 127.0.0.1: what arrives, how a server that is
down or says "not now" is tried again with back-off, how a refusal for good is failed at
once and shown, and how two workers never send one message twice."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pytest

from kopilka.core.actor import Actor
from kopilka.core.settings import get_settings
from kopilka.mail import sender
from kopilka.mail.outbox import retry_now
from kopilka.mail.schema import mail_outbox
from kopilka.mail.sender import (
    MAX_ATTEMPTS,
    RETRY_DELAYS,
    MailCounts,
    MailScheduler,
    deliver_due_mail,
    lease,
)
from kopilka.mail.smtp import SendOutcome, SmtpConfig
from tests.mail.conftest import Mail, SmtpServer, free_port

CODE = "4F7K-22QX"


def down() -> SmtpConfig:
    """A server that is down: nothing listens on the port."""
    return SmtpConfig(host="127.0.0.1", port=free_port(), timeout_seconds=2.0)


# --------------------------------------------------------------------------- arriving


def test_a_queued_message_arrives_in_utf8_with_text_and_html(
    mail: Mail, smtp_server: SmtpServer
) -> None:
    mail_id = mail.queue(
        kind="membership_sold",
        to_addr="anna@example.ru",
        subject="Ваш абонемент «8 занятий» в студии «Ромашка»",
        body_text=f"Здравствуйте, Анна!\n\nКод активации: {CODE}\n",
        body_html=f"<p>Здравствуйте, Анна!</p><p>Код активации: <b>{CODE}</b></p>",
    )
    counts = mail.run()
    assert (counts.claimed, counts.sent, counts.server_down) == (1, 1, 0)

    (message,) = smtp_server.messages
    assert smtp_server.envelopes == [("no-reply@localhost", ["anna@example.ru"])]
    assert message["Subject"] == "Ваш абонемент «8 занятий» в студии «Ромашка»"
    assert message["From"] == "Kopilka <no-reply@localhost>"
    assert message["To"] == "anna@example.ru"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@localhost>")
    assert f".{mail_id}." in message["Message-ID"]
    assert message["Date"].datetime == mail.start.replace(microsecond=0)
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content_charset() == "utf-8" and html.get_content_charset() == "utf-8"
    assert text["Content-Transfer-Encoding"] == "base64"  # any server carries it
    assert text.get_content() == f"Здравствуйте, Анна!\n\nКод активации: {CODE}\n"
    assert f"<b>{CODE}</b>" in html.get_content()

    sent = mail.get(mail_id)
    assert (sent.status, sent.attempts, sent.last_error) == ("sent", 1, "")
    assert sent.sent_at == mail.at(0) and sent.next_attempt_at is None
    assert mail.run(1).claimed == 0  # sent once, never again


def test_a_text_only_message_is_one_plain_part(mail: Mail, smtp_server: SmtpServer) -> None:
    mail.queue(subject="Plain", body_text="Hello, Anna.\nYour code: 1234\n")
    mail.run()
    (message,) = smtp_server.messages
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "Hello, Anna.\nYour code: 1234\n"


def test_international_addresses_arrive(mail: Mail, smtp_server: SmtpServer) -> None:
    mail.queue(to_addr="anna@почта.рф")
    mail.queue(to_addr="иван@почта.рф")  # needs SMTPUTF8, which this server offers
    assert mail.run().sent == 2
    assert [rcpt for _, rcpt in smtp_server.envelopes] == [
        ["anna@xn--80a1acny.xn--p1ai"],
        ["иван@xn--80a1acny.xn--p1ai"],
    ]


def test_the_settings_name_the_server_and_the_sender(
    mail: Mail, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOPILKA_MAIL_FROM", "Студия «Ромашка» <hello@romashka.example>")
    get_settings.cache_clear()
    mail.queue()
    assert mail.run().sent == 1
    (message,) = smtp_server.messages
    assert smtp_server.envelopes[0][0] == "hello@romashka.example"
    assert message["From"].addresses[0].display_name == "Студия «Ромашка»"
    assert message["Message-ID"].endswith("@romashka.example>")
    get_settings.cache_clear()


# --------------------------------------------------------------------------- trying again


def test_a_server_that_is_down_is_tried_again_with_back_off_until_it_answers(
    mail: Mail, smtp_server: SmtpServer
) -> None:
    mail_id = mail.queue()
    counts = mail.run(config=down())
    assert (counts.claimed, counts.retrying, counts.server_down) == (1, 1, 1)
    waiting = mail.get(mail_id)
    assert (waiting.status, waiting.attempts) == ("pending", 1)
    assert waiting.last_error.startswith("could not connect to 127.0.0.1:")
    assert "Connection refused" in waiting.last_error or "ConnectionRefused" in waiting.last_error
    assert waiting.next_attempt_at is not None
    wait = waiting.next_attempt_at - mail.at(0)
    assert timedelta(seconds=54) <= wait <= timedelta(seconds=66)  # 1 minute ± 10 %

    assert mail.run().claimed == 0  # not due yet
    assert smtp_server.messages == []
    later = deliver_due_mail(
        mail.engine, now=mail.at(0) + timedelta(minutes=2), tenant_id=mail.tenant.id
    )
    assert later.sent == 1
    arrived = mail.get(mail_id)
    assert (arrived.status, arrived.attempts, arrived.last_error) == ("sent", 2, "")
    assert len(smtp_server.messages) == 1


def test_the_back_off_runs_1_5_30_minutes_2_and_12_hours_then_the_message_fails(
    mail: Mail,
) -> None:
    assert MAX_ATTEMPTS == 6
    mail_id = mail.queue()
    config = down()
    for attempt, delay in enumerate(RETRY_DELAYS, start=1):
        counts = mail.run(attempt - 1, config=config)
        assert counts.retrying == 1, attempt
        m = mail.get(mail_id)
        assert (m.status, m.attempts) == ("pending", attempt)
        assert m.next_attempt_at is not None
        wait = m.next_attempt_at - mail.at(attempt - 1)
        assert delay * 0.9 <= wait <= delay * 1.1, (attempt, wait)
    last = mail.run(len(RETRY_DELAYS), config=config)
    assert (last.failed, last.retrying) == (1, 0)
    failed = mail.get(mail_id)
    assert (failed.status, failed.attempts, failed.next_attempt_at) == ("failed", 6, None)
    assert failed.last_error.startswith("could not connect") and failed.retryable
    assert mail.run(30, config=config).claimed == 0  # failed stays failed


def test_a_server_that_says_not_now_gets_the_message_later(
    mail: Mail, smtp_server: SmtpServer
) -> None:
    mail_id = mail.queue()
    smtp_server.fail_next("451")
    assert mail.run().retrying == 1
    m = mail.get(mail_id)
    assert m.status == "pending" and m.attempts == 1
    assert m.last_error == "recipient refused: 451 4.3.0 Try again later"
    assert mail.run(1).sent == 1
    assert len(smtp_server.messages) == 1


def test_a_dropped_connection_is_tried_again_and_the_next_message_still_goes(
    mail: Mail, smtp_server: SmtpServer
) -> None:
    first, second = mail.queue(subject="Первое"), mail.queue(subject="Второе")
    smtp_server.fail_next("drop")
    counts = mail.run()
    assert (counts.claimed, counts.retrying, counts.sent) == (2, 1, 1)
    assert mail.get(first).status == "pending"
    assert "the exchange failed" in mail.get(first).last_error
    assert mail.get(second).status == "sent"
    assert mail.run(1).sent == 1
    assert sorted(m["Subject"] for m in smtp_server.messages) == ["Второе", "Первое"]


def test_a_server_that_is_down_ends_the_run_and_the_rest_wait_untouched(mail: Mail) -> None:
    ids = [mail.queue(subject=f"Письмо {n}") for n in range(3)]
    counts = mail.run(config=down())
    assert counts.as_dict() == {
        "claimed": 1,
        "sent": 0,
        "retrying": 1,
        "failed": 0,
        "errors": 0,
        "server_down": 1,
    }
    assert [mail.get(i).attempts for i in ids] == [1, 0, 0]
    assert all(mail.get(i).next_attempt_at == mail.start for i in ids[1:])


# --------------------------------------------------------------------------- failing for good


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("550", "recipient refused: 550 5.1.1 No such mailbox here"),
        ("554", "message refused: 554 5.7.1 Message refused"),
    ],
)
def test_a_refusal_for_good_fails_at_once_is_shown_and_may_be_sent_again(
    mail: Mail, smtp_server: SmtpServer, fault: str, error: str
) -> None:
    mail_id = mail.queue()
    smtp_server.fail_next(fault)
    counts = mail.run()
    assert (counts.failed, counts.retrying) == (1, 0)
    failed = mail.get(mail_id)
    assert (failed.status, failed.attempts, failed.last_error) == ("failed", 1, error)
    assert failed.next_attempt_at is None and failed.sent_at is None
    assert [m.id for m in mail.all(status="failed")] == [mail_id]
    assert mail.run(10).claimed == 0
    assert smtp_server.messages == []

    mail.tx(
        lambda conn: retry_now(
            conn, tenant_id=mail.tenant.id, mail_id=mail_id, actor=Actor.cli("t"), now=mail.at(11)
        )
    )
    assert mail.run(11).sent == 1
    assert mail.get(mail_id).status == "sent"


def test_an_address_the_server_cannot_carry_fails_at_once(
    mail: Mail, smtp_server: SmtpServer
) -> None:
    """A non-Latin mailbox name needs SMTPUTF8; this server does not offer it."""
    smtp_server.smtputf8 = False
    mail_id = mail.queue(to_addr="иван@почта.рф")
    assert mail.run().failed == 1
    failed = mail.get(mail_id)
    assert failed.status == "failed" and "SMTPUTF8" in failed.last_error
    assert smtp_server.messages == []


def test_a_refused_sign_in_keeps_the_password_out_of_the_error_and_the_log(
    mail: Mail, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    password = "pa55-w0rd-very-secret"
    smtp_server.require_login("kopilka", password)
    mail_id = mail.queue()
    with caplog.at_level(logging.DEBUG):
        wrong = mail.run(
            config=smtp_server.config(username="kopilka", password="wrong-" + password)
        )
        assert (wrong.retrying, wrong.server_down) == (1, 1)
        m = mail.get(mail_id)
        assert "refused the sign-in" in m.last_error and "535" in m.last_error
        assert password not in m.last_error
        right = mail.run(1, config=smtp_server.config(username="kopilka", password=password))
    assert right.sent == 1
    assert set(smtp_server.logins) == {"kopilka"}  # smtplib tries PLAIN, then LOGIN
    assert password not in caplog.text
    assert repr(smtp_server.config(password=password)).count(password) == 0


def test_the_password_comes_from_the_settings_and_is_never_shown(
    mail: Mail, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.require_login("studio", "s3cr3t-from-env")
    monkeypatch.setenv("KOPILKA_SMTP_USERNAME", "studio")
    monkeypatch.setenv("KOPILKA_SMTP_PASSWORD", "s3cr3t-from-env")
    get_settings.cache_clear()
    try:
        assert "s3cr3t-from-env" not in repr(get_settings())
        mail.queue()
        assert mail.run().sent == 1
    finally:
        monkeypatch.delenv("KOPILKA_SMTP_USERNAME")
        monkeypatch.delenv("KOPILKA_SMTP_PASSWORD")
        get_settings.cache_clear()


def test_a_row_that_cannot_become_a_message_fails_at_once(mail: Mail) -> None:
    mail_id = mail.queue()
    mail.tx(  # written past queue_mail's checks
        lambda conn: conn.execute(
            mail_outbox.update()
            .where(mail_outbox.c.id == mail_id)
            .values(subject="Тема\r\nBcc: victim@example.ru")
        )
    )
    counts = mail.run(config=down())
    assert counts.failed == 1 and counts.server_down == 0
    assert mail.get(mail_id).last_error.startswith("cannot be built: ValueError")


# --------------------------------------------------------------------------- workers


def test_a_claimed_message_is_left_alone_until_its_lease_runs_out(
    mail: Mail, smtp_server: SmtpServer
) -> None:
    """A worker that took a message and died: nobody sends it while the lease holds,
    and it goes once the lease runs out."""
    mail_id = mail.queue()
    held_for = lease(5.0)
    claimed = sender._claim(mail.engine, mail.at(0), held_for, mail.tenant.id)
    assert claimed is not None and claimed.outgoing.mail_id == mail_id
    assert mail.run().claimed == 0
    during = deliver_due_mail(
        mail.engine, now=mail.at(0) + held_for - timedelta(seconds=1), tenant_id=mail.tenant.id
    )
    assert during.claimed == 0
    after = deliver_due_mail(mail.engine, now=mail.at(0) + held_for, tenant_id=mail.tenant.id)
    assert after.sent == 1 and mail.get(mail_id).attempts == 1


def test_a_late_answer_from_an_overtaken_worker_changes_nothing(
    mail: Mail, smtp_server: SmtpServer
) -> None:
    mail_id = mail.queue()
    job = sender._claim(mail.engine, mail.at(0), lease(5.0), mail.tenant.id)
    assert job is not None
    assert mail.run(1).sent == 1  # the lease ran out; another worker sent it
    late = sender._record(mail.engine, job, SendOutcome(False, "451 later"), mail.at(1))
    assert late == "sent"
    assert (mail.get(mail_id).status, mail.get(mail_id).last_error) == ("sent", "")


def test_two_workers_never_send_one_message_twice(mail: Mail, smtp_server: SmtpServer) -> None:
    if mail.engine.dialect.name != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite writes one at a time anyway")
    ids = {mail.queue(subject=f"Письмо {n}") for n in range(24)}
    results: list[MailCounts] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        results.append(
            deliver_due_mail(mail.engine, now=mail.at(0), tenant_id=mail.tenant.id, limit=100)
        )

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(c.sent for c in results) == 24
    assert sum(c.claimed for c in results) == 24
    assert sum(1 for c in results if c.claimed) >= 2, "the workers shared the work"
    message_ids = [m["Message-ID"] for m in smtp_server.messages]
    assert len(message_ids) == 24 and len(set(message_ids)) == 24
    assert {m.id for m in mail.all(status="sent")} == ids


def test_the_servers_clock_sends_mail_by_itself(mail: Mail, smtp_server: SmtpServer) -> None:
    mail_id = mail.queue(now=None, subject="По часам")  # due now: the clock runs on time
    clock = MailScheduler(mail.engine, every_seconds=0.05)
    clock.start()
    try:
        deadline = time.monotonic() + 20
        while mail.get(mail_id).status == "pending" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        clock.stop()
    assert mail.get(mail_id).status == "sent"
    assert any(m["Subject"] == "По часам" for m in smtp_server.messages)

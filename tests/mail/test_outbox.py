"""The outbox: a message is written in the caller's transaction or not at all, every field
is checked first (no header can be injected through the address or the subject), and
the screens read it by tenant, by status and page by page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Connection, func, select

from kopilka.core.actor import Actor
from kopilka.core.errors import InvalidInput, KopilkaError, NotFound, Refused
from kopilka.loyalty.cards import normalise_email
from kopilka.mail import outbox
from kopilka.mail.schema import mail_outbox
from kopilka.tenancy.schema import audit_events
from tests.mail.conftest import Mail


def test_a_queued_message_is_pending_and_due_at_once(mail: Mail) -> None:
    mail_id = mail.queue(
        kind="membership_sold",
        ref="order-17",
        to_addr="  Anna.Petrova@Example.RU ",
        subject="  Ваш абонемент «8 занятий»  ",
        body_text="Код активации: 4F7K-22QX",
        body_html="<p>Код активации: <b>4F7K-22QX</b></p>",
    )
    m = mail.get(mail_id)
    assert (m.status, m.attempts, m.last_error, m.sent_at) == ("pending", 0, "", None)
    assert m.to_addr == "Anna.Petrova@example.ru"  # the domain in lower case, trimmed
    assert m.subject == "Ваш абонемент «8 занятий»"
    assert (m.kind, m.ref) == ("membership_sold", "order-17")
    assert m.body_html == "<p>Код активации: <b>4F7K-22QX</b></p>"
    assert m.next_attempt_at == m.created_at == mail.start
    assert not m.retryable


def test_a_rolled_back_transaction_queues_nothing(mail: Mail) -> None:
    class SaleFailed(Exception):
        pass

    def sale(conn: Connection) -> None:
        outbox.queue_mail(
            conn,
            tenant_id=mail.tenant.id,
            kind="membership_sold",
            ref="order-1",
            to_addr="anna@example.ru",
            subject="Ваш абонемент",
            body_text="Код активации: 1234",
        )
        raise SaleFailed

    with pytest.raises(SaleFailed):
        mail.tx(sale)
    assert mail.all() == []
    assert mail.run().claimed == 0


@pytest.mark.parametrize(
    "subject",
    [
        "Ваш абонемент\r\nBcc: victim@example.ru",
        "Ваш абонемент\nBcc: victim@example.ru",
        "Ваш абонемент\rBcc: victim@example.ru",
        "Ваш\tабонемент",
        "Ваш абонемент\x00",
        "Ваш абонемент\u2028Bcc: victim@example.ru",
        "Ваш абонемент\x85",
        "",
        "   ",
        "я" * 201,
        None,
    ],
)
def test_a_subject_that_could_inject_a_header_is_refused(mail: Mail, subject: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        mail.queue(subject=subject)
    assert refused.value.code == "invalid_mail_subject"
    assert refused.value.params["field"] == "subject"
    assert mail.all() == []


def test_a_subject_of_200_characters_is_taken() -> None:
    assert outbox.clean_subject("я" * 200) == "я" * 200


@pytest.mark.parametrize(
    "address",
    [
        "anna@example.ru\r\nBcc: victim@example.ru",
        "anna@example.ru\nBcc: victim@example.ru",
        "anna@example.ru, victim@example.ru",
        "anna@example.ru; victim@example.ru",
        "Anna <anna@example.ru>",
        "<anna@example.ru>",
        '"anna"@example.ru',
        "anna(comment)@example.ru",
        "anna\x01@example.ru",
        "anna@localhost",
        "anna",
        "anna@@example.ru",
        "a" * 190 + "@example.ru",
        "",
        None,
    ],
)
def test_anything_but_one_plain_address_is_refused(mail: Mail, address: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        mail.queue(to_addr=address)
    assert refused.value.code == "invalid_mail_address"
    assert mail.all() == []


@pytest.mark.parametrize(
    "address",
    [
        "anna@example.ru",
        " Anna.Petrova+studio@Mail.Example.RU ",
        "иван@почта.рф",
        "o'brien@example.com",
        "x@a.b.c.d",
        "anna@example.ru,",  # a trailing comma: the card rule takes it, a header must not
        "anna@exa(mple.ru",
        "(a)@b.ru",
    ],
)
def test_the_address_rule_is_the_card_holders_rule_and_no_header_specials(address: str) -> None:
    """Where the loyalty rule takes an address, the outbox takes it as the same string,
    unless it holds a character that means something in a header."""
    card = normalise_email(address)
    specials = any(ch in card for ch in ',;<>()[]:\\"')
    if specials:
        with pytest.raises(InvalidInput):
            outbox.clean_address(address)
    else:
        assert outbox.clean_address(address) == card


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("kind", "Membership Sold", "invalid_mail"),
        ("kind", "", "invalid_mail"),
        ("kind", "k" * 33, "invalid_mail"),
        ("ref", "r" * 65, "invalid_mail"),
        ("ref", "order\r\n1", "invalid_mail"),
        ("body_text", "", "invalid_mail"),
        ("body_text", "  \n ", "invalid_mail"),
        ("body_text", "nul\x00", "invalid_mail"),
        ("body_text", None, "invalid_mail"),
        ("body_html", 5, "invalid_mail"),
        ("body_html", "x" * (outbox.MAX_BODY_CHARS + 1), "invalid_mail"),
    ],
)
def test_other_fields_are_checked_before_anything_is_written(
    mail: Mail, field: str, value: object, code: str
) -> None:
    with pytest.raises(KopilkaError) as refused:
        mail.queue(**{field: value})
    assert refused.value.code == code and refused.value.params["field"] == field
    assert mail.all() == []


def test_the_log_reads_newest_first_by_status_and_page_by_page(mail: Mail, tenant_b: int) -> None:
    ids = [mail.queue(subject=f"Письмо {n}") for n in range(5)]
    mail.tx(
        lambda conn: conn.execute(
            mail_outbox.update().where(mail_outbox.c.id == ids[1]).values(status="failed")
        )
    )
    # Another tenant's message is never seen.
    other = mail.tx(
        lambda conn: outbox.queue_mail(
            conn,
            tenant_id=tenant_b,
            kind="test",
            ref="",
            to_addr="b@example.ru",
            subject="Чужое",
            body_text="Чужое",
        )
    )
    assert [m.id for m in mail.all()] == ids[::-1]
    first = mail.all(limit=2)
    assert [m.id for m in first] == [ids[4], ids[3]]
    assert all(m.body_text == "" and m.body_html is None for m in first)  # no bodies in a list
    assert [m.id for m in mail.all(before_id=first[-1].id, limit=2)] == [ids[2], ids[1]]
    assert [m.id for m in mail.all(status="failed")] == [ids[1]]
    counts = mail.read(lambda conn: outbox.count_mail(conn, mail.tenant.id))
    assert counts == {"pending": 4, "sent": 0, "failed": 1}
    with pytest.raises(NotFound) as missing:
        mail.get(other)
    assert missing.value.code == "mail_not_found"


def test_send_again_makes_a_failed_message_due_with_a_new_round(mail: Mail, staff: Actor) -> None:
    mail_id = mail.queue()
    mail.tx(
        lambda conn: conn.execute(
            mail_outbox.update()
            .where(mail_outbox.c.id == mail_id)
            .values(status="failed", attempts=6, next_attempt_at=None, last_error="550 no")
        )
    )
    assert mail.get(mail_id).retryable
    later = mail.at(1)
    again = mail.tx(
        lambda conn: outbox.retry_now(
            conn, tenant_id=mail.tenant.id, mail_id=mail_id, actor=staff, now=later
        )
    )
    assert (again.status, again.attempts, again.next_attempt_at) == ("pending", 0, later)
    assert again.last_error == "550 no"  # shown until the next try says otherwise
    audited = mail.read(
        lambda conn: conn.execute(
            select(func.count()).where(
                audit_events.c.tenant_id == mail.tenant.id,
                audit_events.c.action == "mail.retry",
                audit_events.c.object_id == str(mail_id),
            )
        ).scalar_one()
    )
    assert audited == 1

    with pytest.raises(Refused) as refused:
        mail.tx(
            lambda conn: outbox.retry_now(
                conn, tenant_id=mail.tenant.id, mail_id=mail_id, actor=staff
            )
        )
    assert refused.value.code == "mail_not_retryable"
    with pytest.raises(NotFound):
        mail.tx(
            lambda conn: outbox.retry_now(
                conn, tenant_id=mail.tenant.id + 10_000_000, mail_id=mail_id, actor=staff
            )
        )


def test_queued_at_names_the_moment(mail: Mail) -> None:
    moment = mail.start + timedelta(hours=3)
    mail_id = mail.tx(
        lambda conn: outbox.queue_mail(
            conn,
            tenant_id=mail.tenant.id,
            kind="test",
            ref="",
            to_addr="a@example.ru",
            subject="s",
            body_text="t",
            now=moment,
        )
    )
    assert mail.get(mail_id).created_at == moment

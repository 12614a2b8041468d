"""Settings -> E-mail on screen: owners and administrators read the log in Russian, see
why a message was not sent, read what it says, and send a failed one again (a POST with
the CSRF token); nobody else gets in, and another tenant's messages do not exist."""

from __future__ import annotations

import re
from typing import Any

from kopilka.core.db import read_only
from kopilka.ledger.posting import run_transaction
from kopilka.mail import outbox
from kopilka.mail.sender import deliver_due_mail
from tests.mail.conftest import SmtpServer
from tests.web.conftest import Visitor, Web, text_of

HOME = "/settings/mail"


def queue(web: Web, tenant_id: int | None = None, **fields: Any) -> int:
    values: dict[str, Any] = {
        "kind": "membership_sold",
        "ref": "order-17",
        "to_addr": "anna@example.ru",
        "subject": "Ваш абонемент «8 занятий»",
        "body_text": "Код активации: 4F7K-22QX",
        **fields,
    }
    return run_transaction(
        web.engine,
        lambda conn: outbox.queue_mail(conn, tenant_id=tenant_id or web.tenant.id, **values),
    )


def send(web: Web) -> None:
    deliver_due_mail(web.engine, tenant_id=web.tenant.id)


def status_of(web: Web, mail_id: int) -> str:
    with read_only(web.engine) as conn:
        return outbox.get_mail(conn, web.tenant.id, mail_id).status


def row_of(page: str, mail_id: int) -> str:
    match = re.search(rf'<tr id="mail-{mail_id}".*?</tr>', page, re.S)
    assert match, f"message {mail_id} is in the log"
    return text_of(match.group(0))


def flash_of(visitor: Visitor, reply: Any) -> str:
    return text_of(visitor.follow(reply).text)


def test_owners_and_administrators_read_the_log_in_russian(
    web: Web, smtp_server: SmtpServer
) -> None:
    sent = queue(web, to_addr="sent@example.ru", subject="Отправленное")
    send(web)
    smtp_server.fail_next("550")
    refused = queue(web, to_addr="nobody@example.ru", subject="Отклонённое")
    send(web)
    waiting = queue(web, to_addr="later@example.ru", subject="В очереди", kind="other_kind")

    for role in ("owner", "administrator"):
        visitor = web.sign_in(role)
        page = visitor.get(HOME)
        assert page.status_code == 200
        assert 'data-testid="tab-mail" aria-current="page"' in page.text
        shown = text_of(page.text)
        assert "Эл. почта" in shown and "Почтовый сервер: 127.0.0.1:" in shown
        assert "Отправлено: 1" in shown and "Не отправлено: 1" in shown
        assert "Ожидает отправки: 1" in shown

        assert row_of(page.text, sent).count("sent@example.ru") == 1
        assert "Отправленное" in row_of(page.text, sent)
        assert "Продан абонемент order-17" in row_of(page.text, sent)
        assert "Отправлено" in row_of(page.text, sent)
        failed_row = row_of(page.text, refused)
        assert "Не отправлено" in failed_row and "Попыток: 1" in failed_row
        assert "recipient refused: 550 5.1.1 No such mailbox here" in failed_row
        assert "Отправить ещё раз" in failed_row
        waiting_row = row_of(page.text, waiting)
        assert "Ожидает отправки" in waiting_row and "other_kind" in waiting_row
        assert "Отправить ещё раз" not in row_of(page.text, sent)

    assert re.findall(r'data-testid="mail-(\d+)"', page.text) == [
        str(waiting),
        str(refused),
        str(sent),
    ]
    only_failed = web.sign_in("owner").get(HOME + "?status=failed")
    assert re.findall(r'data-testid="mail-(\d+)"', only_failed.text) == [str(refused)]


def test_nobody_else_gets_in(web: Web) -> None:
    mail_id = queue(web)
    for role in ("cashier", "front_desk"):
        visitor = web.sign_in(role)
        assert visitor.get(HOME).status_code == 403
        assert visitor.get(f"{HOME}/{mail_id}").status_code == 403
        assert visitor.post(f"{HOME}/{mail_id}/retry").status_code == 403
        assert 'data-testid="tab-mail"' not in visitor.get("/settings/users").text


def test_a_messages_page_shows_what_it_says(web: Web, smtp_server: SmtpServer) -> None:
    mail_id = queue(
        web,
        body_text="Здравствуйте, Анна!\nКод активации: 4F7K-22QX",
        body_html="<p>Код: <b>4F7K-22QX</b></p><script>alert(1)</script>",
    )
    smtp_server.fail_next("451")
    send(web)
    owner = web.sign_in("owner")
    page = owner.get(f"{HOME}/{mail_id}")
    assert page.status_code == 200
    shown = text_of(page.text)
    assert f"Письмо № {mail_id}" in shown
    assert "anna@example.ru" in shown and "Ваш абонемент «8 занятий»" in shown
    assert "Код активации: 4F7K-22QX" in shown
    assert "Попыток 1 из 6" in shown
    assert "Последний ответ сервера recipient refused: 451 4.3.0 Try again later" in shown
    assert "Следующая попытка" in shown
    # The HTML is shown as its source, never run.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>alert(1)</script>" not in page.text
    assert 'data-testid="retry"' not in page.text  # pending: nothing to send again


def test_another_tenants_message_does_not_exist(web: Web, tenant_b: int) -> None:
    theirs = queue(web, tenant_id=tenant_b)
    owner = web.sign_in("owner")
    assert owner.get(f"{HOME}/{theirs}").status_code == 404
    assert owner.post(f"{HOME}/{theirs}/retry").status_code == 404
    assert f'data-testid="mail-{theirs}"' not in owner.get(HOME).text


def test_send_again_with_the_csrf_token_sends_a_failed_message(
    web: Web, smtp_server: SmtpServer
) -> None:
    mail_id = queue(web)
    smtp_server.fail_next("550")
    send(web)
    assert status_of(web, mail_id) == "failed"
    owner = web.sign_in("owner")

    forged = owner.client.post(f"{HOME}/{mail_id}/retry", data={"csrf_token": "not-the-token"})
    assert forged.status_code == 403
    assert owner.client.post(f"{HOME}/{mail_id}/retry").status_code == 403
    assert status_of(web, mail_id) == "failed"

    again = owner.post(f"{HOME}/{mail_id}/retry", headers={"referer": f"{HOME}/{mail_id}"})
    assert again.status_code == 303 and again.headers["location"] == f"{HOME}/{mail_id}"
    assert f"Письмо № {mail_id} будет отправлено снова через несколько секунд." in flash_of(
        owner, again
    )
    assert status_of(web, mail_id) == "pending"
    send(web)
    assert status_of(web, mail_id) == "sent"
    assert len(smtp_server.messages) == 1

    late = owner.post(f"{HOME}/{mail_id}/retry")
    assert late.headers["location"] == HOME
    assert f"Письмо № {mail_id} уже не среди неотправленных." in flash_of(owner, late)


def test_send_again_from_the_log_swaps_the_row_in_place(web: Web, smtp_server: SmtpServer) -> None:
    mail_id = queue(web)
    smtp_server.fail_next("554")
    send(web)
    owner = web.sign_in("owner")
    row = owner.post(f"{HOME}/{mail_id}/retry", headers={"HX-Request": "true"})
    assert row.status_code == 200
    assert f'<tr id="mail-{mail_id}"' in row.text and "<html" not in row.text
    assert 'data-status="pending"' in row.text and "Ожидает отправки" in text_of(row.text)


def test_older_messages_are_a_page_further(web: Web) -> None:
    ids = [queue(web, subject=f"Письмо {n}") for n in range(53)]
    owner = web.sign_in("owner")
    first = owner.get(HOME)
    shown = [int(i) for i in re.findall(r'data-testid="mail-(\d+)"', first.text)]
    assert shown == ids[::-1][:50]
    older = re.search(r'href="([^"]+)" rel="next" data-testid="older"', first.text)
    assert older, "a link to older messages"
    second = owner.get(older.group(1).replace("&amp;", "&"))
    assert [int(i) for i in re.findall(r'data-testid="mail-(\d+)"', second.text)] == ids[2::-1]
    assert 'data-testid="older"' not in second.text and 'data-testid="newest"' in second.text
    assert owner.get(HOME + "?before=nonsense").status_code == 200

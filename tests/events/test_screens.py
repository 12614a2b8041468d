"""Settings -> Webhooks on screen (SPEC X-3, X-4): an owner adds an endpoint and sees its
secret once, mistakes are shown by their fields in Russian, the delivery log shows what
happened with each try, and Redeliver sends a failed delivery again."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.events import webhooks as wh
from kopilka.events.delivery import MAX_ATTEMPTS, deliver_due
from kopilka.events.outbox import emit
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.actions import create_tenant
from tests.events.conftest import NOWHERE, STEP, TIMEOUT
from tests.events.receiver import Receiver
from tests.web.conftest import Visitor, Web, text_of
from tests.web.test_cards import field_error

HOME = "/settings/webhooks"
LOG = HOME + "/deliveries"


def endpoints_of(web: Web) -> list[wh.Endpoint]:
    with read_only(web.engine) as conn:
        return wh.list_endpoints(conn, web.tenant.id)


def deliveries_of(web: Web) -> list[wh.DeliveryView]:
    with read_only(web.engine) as conn:
        return wh.list_deliveries(conn, web.tenant.id)


def fire(web: Web, type: str = "promised_payment.taken") -> int:
    return run_transaction(
        web.engine,
        lambda conn: emit(
            conn,
            tenant_id=web.tenant.id,
            type=type,
            subject_type="subscriber",
            subject_id=5,
            payload={"subscriber_id": 5, "name": "Ирина"},
        ),
    )


def secret_on(page: str) -> str:
    match = re.search(r'data-testid="secret-value">([^<]+)<', page)
    assert match, "the page shows a secret"
    return html.unescape(match.group(1))


def flash_of(visitor: Visitor, reply: Any) -> str:
    return text_of(visitor.follow(reply).text)


def test_an_owner_adds_an_endpoint_and_sees_its_secret_once(web: Web) -> None:
    owner = web.sign_in("owner")
    home = owner.get(HOME)
    assert home.status_code == 200
    assert 'data-testid="tab-webhooks" aria-current="page"' in home.text
    shown = text_of(home.text)
    assert "Вебхуки" in shown and "Адресов для вебхуков пока нет." in shown
    assert "Изменился статус абонента" in shown  # the event types to tick

    added = owner.post(
        HOME,
        {
            "url": "https://crm.example.ru/hooks",
            "description": "CRM",
            "event_types": ["subscriber.status_changed", "promised_payment.taken"],
            "is_active": "y",
        },
    )
    assert added.status_code == 200
    page = text_of(added.text)
    assert "Адрес https://crm.example.ru/hooks добавлен" in page
    assert "Скопируйте его сейчас" in page or "не будет показан" in page, page
    (made,) = endpoints_of(web)
    assert secret_on(added.text) == made.secret
    assert made.event_types == ("subscriber.status_changed", "promised_payment.taken")

    listed = owner.get(HOME)
    assert made.secret not in listed.text
    assert "Изменился статус абонента, Взят обещанный платёж" in text_of(listed.text)
    edit = owner.get(f"{HOME}/{made.id}")
    assert made.secret not in edit.text and "Показать секрет" in text_of(edit.text)

    revealed = owner.post(f"{HOME}/{made.id}/reveal")
    assert secret_on(revealed.text) == made.secret
    rotated = owner.post(f"{HOME}/{made.id}/rotate")
    new_secret = secret_on(rotated.text)
    assert new_secret != made.secret and "в течение 24 часов" in text_of(rotated.text)
    assert endpoints_of(web)[0].secret == new_secret


def test_an_administrator_manages_endpoints_but_never_sees_a_secret_again(web: Web) -> None:
    admin = web.sign_in("administrator")
    added = admin.post(HOME, {"url": "https://crm.example.ru/hooks"})
    (made,) = endpoints_of(web)
    assert secret_on(added.text) == made.secret  # the one who adds it sees it, once
    assert made.event_types == ()  # nothing ticked: every type
    edit = admin.get(f"{HOME}/{made.id}")
    assert "Посмотреть или заменить секрет может только владелец." in text_of(edit.text)
    assert 'data-testid="reveal-secret"' not in edit.text
    assert admin.post(f"{HOME}/{made.id}/reveal").status_code == 403
    assert admin.post(f"{HOME}/{made.id}/rotate").status_code == 403
    for role in ("cashier", "front_desk"):
        visitor = web.sign_in(role)
        assert visitor.get(HOME).status_code == 403
        assert visitor.get(LOG).status_code == 403
        assert visitor.post(HOME, {"url": "https://x.ru/h"}).status_code == 403
    assert len(endpoints_of(web)) == 1


def test_mistakes_are_shown_by_their_fields_in_russian_and_nothing_is_written(web: Web) -> None:
    owner = web.sign_in("owner")
    credentials = owner.post(HOME, {"url": "https://user:pw@crm.example.ru/hooks"})
    assert credentials.status_code == 422
    assert field_error(credentials.text, "url") == html.escape(
        "Уберите из адреса имя пользователя и пароль: подлинность событий подтверждает подпись."
    )
    scheme = owner.post(HOME, {"url": "crm.example.ru/hooks"})
    assert "начинающийся с https://" in field_error(scheme.text, "url")
    empty = owner.post(HOME, {"url": ""})
    assert "error-url" in empty.text
    long_text = owner.post(HOME, {"url": "https://crm.example.ru/h", "description": "д" * 201})
    assert "error-description" in long_text.text
    unknown = owner.post(HOME, {"url": "https://crm.example.ru/h", "event_types": "card.sold"})
    assert unknown.status_code == 422 and "error-event_types" in unknown.text
    assert endpoints_of(web) == []


def test_an_endpoint_is_edited_switched_off_and_deleted(web: Web) -> None:
    owner = web.sign_in("owner")
    owner.post(HOME, {"url": "https://crm.example.ru/hooks", "is_active": "y"})
    (made,) = endpoints_of(web)
    saved = owner.post(
        f"{HOME}/{made.id}",
        {"url": "https://crm.example.ru/v2", "event_types": ["membership.sold"], "is_active": "y"},
    )
    assert "Адрес https://crm.example.ru/v2 сохранён." in flash_of(owner, saved)
    bad = owner.post(f"{HOME}/{made.id}", {"url": "ftp://crm.example.ru"})
    assert bad.status_code == 422 and "error-url" in bad.text
    off = owner.post(f"{HOME}/{made.id}/switch", {"is_active": "0"})
    assert "выключен" in flash_of(owner, off)
    assert endpoints_of(web)[0].is_active is False
    fire(web, "membership.sold")
    confirm = owner.get(f"{HOME}/{made.id}/delete")
    assert "Удалить адрес https://crm.example.ru/v2?" in text_of(confirm.text)
    assert "(0 доставок)" in text_of(confirm.text)
    deleted = owner.post(f"{HOME}/{made.id}/delete")
    assert "удалён" in flash_of(owner, deleted)
    assert endpoints_of(web) == []
    assert owner.get(f"{HOME}/{made.id}").status_code == 404
    assert owner.post(f"{HOME}/{made.id}/switch", {"is_active": "1"}).status_code == 404


def test_the_log_shows_each_try_and_a_failed_delivery_is_redelivered(
    web: Web, receiver: Receiver
) -> None:
    receiver.then = 500
    owner = web.sign_in("owner")
    owner.post(HOME, {"url": receiver.url, "is_active": "y"})
    (made,) = endpoints_of(web)
    event_id = fire(web)
    start = utcnow() + timedelta(minutes=1)
    for step in range(MAX_ATTEMPTS):
        deliver_due(
            web.engine, now=start + step * STEP, tenant_id=web.tenant.id, timeout_seconds=TIMEOUT
        )
    (delivery,) = deliveries_of(web)
    assert delivery.status == "failed"

    home = text_of(owner.get(HOME).text)
    assert "Не доставлено: 1" in home
    log = owner.get(LOG)
    assert log.status_code == 200
    row = text_of(log.text)
    assert "Взят обещанный платёж" in row and f"evt_{event_id}" in row
    assert "Не доставлено" in row and "HTTP 500" in row and "Отправить снова" in row
    assert f'data-testid="redeliver-{delivery.id}"' in log.text
    only_delivered = owner.get(LOG, params={"status": "delivered"})
    assert f"delivery-{delivery.id}" not in only_delivered.text

    one = owner.get(f"{LOG}/{delivery.id}")
    shown = text_of(one.text)
    assert f"{MAX_ATTEMPTS} из {MAX_ATTEMPTS}" in shown and shown.count("HTTP 500") >= MAX_ATTEMPTS
    assert "answer 500" in shown and "Ирина" in shown  # the answer, and the body as sent
    assert made.secret not in one.text

    row_html = owner.post(f"{LOG}/{delivery.id}/redeliver", headers={"HX-Request": "true"})
    assert row_html.status_code == 200 and "<html" not in row_html.text
    assert 'data-status="pending"' in row_html.text and "Доставляется" in text_of(row_html.text)
    receiver.then = 200
    deliver_due(web.engine, tenant_id=web.tenant.id, timeout_seconds=TIMEOUT)
    assert deliveries_of(web)[0].status == "delivered"
    back = f"{LOG}?status=failed&endpoint_id={made.id}"
    again = owner.post(
        f"{LOG}/{delivery.id}/redeliver", headers={"referer": f"http://testserver{back}"}
    )
    assert again.headers["location"] == back  # back to the log as it was filtered
    assert "уже доставлена" in flash_of(owner, again)
    elsewhere = owner.post(
        f"{LOG}/{delivery.id}/redeliver", headers={"referer": "https://evil.example/x"}
    )
    assert elsewhere.headers["location"] == LOG
    assert owner.post(f"{LOG}/{10**12}/redeliver").status_code == 404
    assert owner.get(f"{LOG}/{10**12}").status_code == 404


def test_the_screens_speak_english_too(web: Web) -> None:
    english = web.sign_in("owner")
    english.post("/language", {"locale": "en", "next": "/"})
    page = html.unescape(text_of(english.get(HOME).text))
    assert "Webhooks" in page and "No webhook endpoints yet." in page
    assert "Subscriber's status changed" in page
    bad = english.post(HOME, {"url": "https://u:p@crm.example.ru/h"})
    assert "Leave the user name and password out" in field_error(bad.text, "url")


def test_another_tenants_endpoint_and_deliveries_do_not_exist_here(web: Web) -> None:
    with web.engine.begin() as conn:
        other = create_tenant(conn, slug=f"x-{web.tenant.slug}", name="Other", actor=Actor.cli("t"))
    theirs = run_transaction(
        web.engine,
        lambda conn: wh.create_endpoint(
            conn, tenant_id=other.id, url=f"{NOWHERE}/other-tenant", actor=Actor.cli("t")
        ),
    )
    run_transaction(
        web.engine,
        lambda conn: emit(
            conn,
            tenant_id=other.id,
            type="subscriber.activated",
            subject_type="subscriber",
            subject_id=1,
            payload={},
        ),
    )
    with read_only(web.engine) as conn:
        (delivery,) = wh.list_deliveries(conn, other.id)
    owner = web.sign_in("owner")
    assert owner.get(f"{HOME}/{theirs.id}").status_code == 404
    assert owner.post(f"{HOME}/{theirs.id}/reveal").status_code == 404
    assert owner.post(f"{HOME}/{theirs.id}/rotate").status_code == 404
    assert owner.post(f"{HOME}/{theirs.id}/delete").status_code == 404
    assert owner.get(f"{LOG}/{delivery.id}").status_code == 404
    assert owner.post(f"{LOG}/{delivery.id}/redeliver").status_code == 404
    log = owner.get(LOG, params={"endpoint_id": theirs.id})
    assert "other-tenant" not in log.text and "Пока ничего не отправлялось." in text_of(log.text)
    with read_only(web.engine) as conn:
        assert wh.get_endpoint(conn, other.id, theirs.id).secret == theirs.secret

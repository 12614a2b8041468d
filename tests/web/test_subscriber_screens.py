"""Subscribers on screen (SPEC S-1 … S-6, X-1, X-2, X-4; seed 003): the list with its
search and filter, a new subscriber, the card with its figures, top-ups (a form sent
twice pays once), promised payments with what each service would cost or why it is
refused, the staff's own actions, and Settings → Subscribers with the tariffs' options in
the seed's words; every refusal by its form in the user's language, nothing written;
who may do what, and only in their own company."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.ledger.posting import run_transaction
from kopilka.subscribers import billing, tariffs
from kopilka.subscribers.error_codes import SubscriberErrorCode
from kopilka.subscribers.registry import SubscriberIn, SubscriberView, create_subscriber
from kopilka.subscribers.registry import get_subscriber as _get
from kopilka.subscribers.schema import sub_promised_payments, sub_topups
from kopilka.tenancy.actions import create_tenant, create_user
from kopilka.tenancy.roles import PERMISSIONS
from kopilka.web import i18n
from kopilka.web.routes.subscribers import refusal_text
from tests.web.conftest import PASSWORD, ROLES, Visitor, Web, text_of
from tests.web.test_front_desk import (
    block,
    field_error,
    form_error,
    form_of,
    submit,
    text_by_testid,
)

ACTOR = Actor.cli("tests")
HOME = "/subscribers"
SETTINGS = "/settings/subscribers"
NBSP = "\u00a0"


def flash(html: str) -> str:
    return " ".join(
        re.sub(r"\s+", " ", m).strip() for m in re.findall(r'class="flash[^"]*"[^>]*>(.*?)<', html)
    )


def shown(text: str) -> str:
    return text.replace(NBSP, " ").replace("\u202f", " ")


class Isp:
    """The staff's tenant as an internet provider: tariffs, services, subscribers made
    by the domain (what another screen, the API or the network did)."""

    def __init__(self, web: Web) -> None:
        self.web = web
        self.t = web.tenant.id

    def tx(self, work: Any) -> Any:
        return run_transaction(self.web.engine, work)

    def tariff(self, name: str = "Домашний 100", price: int = 600_00, **kw: Any) -> Any:
        data = tariffs.TariffIn(name, price, kw.pop("method", "monthly"), **kw)
        return self.tx(lambda c: tariffs.create_tariff(c, tenant_id=self.t, data=data, actor=ACTOR))

    def service(self, name: str = "Обещанный платёж 600", amount: int = 600_00, **kw: Any) -> Any:
        data = tariffs.ServiceIn(name, amount, kw.pop("days", 5), kw.pop("method", "daily"), **kw)
        return self.tx(
            lambda c: tariffs.create_service(c, tenant_id=self.t, data=data, actor=ACTOR)
        )

    def subscriber(self, tariff: Any, account_no: str = "100234", **kw: Any) -> SubscriberView:
        data = SubscriberIn(account_no, kw.pop("full_name", "Иван Абонентов"), tariff.id, **kw)
        return self.tx(lambda c: create_subscriber(c, tenant_id=self.t, data=data, actor=ACTOR))

    def activate(self, sub: SubscriberView) -> None:
        self.tx(lambda c: billing.activate(c, tenant_id=self.t, subscriber_id=sub.id, actor=ACTOR))

    def top_up(self, sub: SubscriberView, amount: int) -> None:
        self.tx(
            lambda c: billing.top_up(
                c,
                tenant_id=self.t,
                subscriber_id=sub.id,
                amount_minor=amount,
                operation_id=uuid.uuid4().hex,
                actor=ACTOR,
            )
        )

    def get(self, sub: SubscriberView) -> SubscriberView:
        with read_only(self.web.engine) as conn:
            return _get(conn, self.t, sub.id)

    def count(self, table: Any) -> int:
        query = select(func.count()).select_from(table).where(table.c.tenant_id == self.t)
        with read_only(self.web.engine) as conn:
            return int(conn.execute(query).scalar_one())


@pytest.fixture
def isp(web: Web) -> Isp:
    return Isp(web)


def card_url(sub: SubscriberView) -> str:
    return f"{HOME}/{sub.id}"


def english(web: Web, role: str = "cashier") -> Visitor:
    visitor = web.sign_in(role)
    visitor.post("/language", {"locale": "en", "next": "/"})
    return visitor


def other_tenant(web: Web) -> Visitor:
    """The owner of another company, on the same server."""
    with web.engine.begin() as conn:
        tenant = create_tenant(conn, slug=f"w-{uuid.uuid4().hex[:10]}", name="Другой", actor=ACTOR)
        user = create_user(
            conn,
            tenant_id=tenant.id,
            login="owner2",
            password=PASSWORD,
            role="owner",
            full_name="Owner Two",
            actor=ACTOR,
        )
    return Web(web.engine, tenant, {"owner": user}).sign_in("owner")


# --------------------------------------------------------------------------- who may


def test_who_may_serve_subscribers_and_who_sets_their_terms(web: Web, isp: Isp) -> None:
    """Read from the one table of permissions: the desk serves accounts, managers set
    credit terms; nobody else comes in."""
    sub = isp.subscriber(isp.tariff())
    desk_roles = sorted(PERMISSIONS["subscribers"] - PERMISSIONS["subscribers.manage"])
    outsiders = sorted(set(ROLES) - PERMISSIONS["subscribers"])
    assert desk_roles and PERMISSIONS["subscribers.manage"] == {"owner", "administrator"}
    for role in outsiders:
        visitor = web.sign_in(role)
        assert 'href="/subscribers"' not in visitor.get("/").text
        assert visitor.get(HOME).status_code == 403
        assert visitor.get(card_url(sub)).status_code == 403
        sent = visitor.post(f"{card_url(sub)}/top-up", {"topup-amount": "100"})
        assert sent.status_code == 403
        assert isp.count(sub_topups) == 0

    for role in desk_roles:
        desk = web.sign_in(role)
        home = desk.get("/")
        assert 'href="/subscribers"' in home.text and "Абоненты" in text_of(home.text)
        assert desk.get(HOME).status_code == 200
        card = desk.get(card_url(sub))
        assert card.status_code == 200
        # The desk serves the account but sets no credit terms.
        for hook in ("top-up-form", "promised-form", "password-panel", "contacts-panel"):
            assert f'data-testid="{hook}"' in card.text
        for hook in ("threshold-form", "tariff-form", 'data-testid="disable"', "pp-ignore_rules"):
            assert hook not in card.text
        assert desk.get(f"{HOME}/new").status_code == 403
        assert desk.get(SETTINGS).status_code == 403
        refused = desk.post(f"{card_url(sub)}/threshold", {"threshold-threshold": "-5000"})
        assert refused.status_code == 403
        assert desk.post(f"{card_url(sub)}/disable", {}).status_code == 403
        assert isp.get(sub).base_limit_minor == 0 and isp.get(sub).status == "new"

    for role in ("owner", "administrator"):
        manager = web.sign_in(role)
        assert manager.get(f"{HOME}/new").status_code == 200
        assert manager.get(SETTINGS).status_code == 200
        assert 'data-testid="threshold-form"' in manager.get(card_url(sub)).text
        assert 'data-testid="tab-subscribers"' in manager.get("/settings/users").text

    # Another company's staff: the subscriber does not exist for them.
    stranger = other_tenant(web)
    assert stranger.get(card_url(sub)).status_code == 404
    assert stranger.post(f"{card_url(sub)}/activate", {}).status_code == 404
    assert 'data-testid="subscriber-100234"' not in stranger.get(HOME, params={"q": "100234"}).text
    assert isp.get(sub).status == "new"


def test_a_form_without_the_csrf_token_is_refused_and_pays_nothing(web: Web, isp: Isp) -> None:
    sub = isp.subscriber(isp.tariff())
    cashier = web.sign_in("cashier")
    action, fields = form_of(cashier.get(card_url(sub)).text, "top-up-form")
    fields["topup-amount"] = "500"
    fields.pop("csrf_token")
    sent = cashier.client.post(action, data=fields, follow_redirects=False)
    assert sent.status_code == 403
    assert isp.count(sub_topups) == 0 and isp.get(sub).balance_minor == 0


# --------------------------------------------------------------------------- settings


def test_an_administrator_sets_up_a_tariff_with_the_seeds_options(web: Web, isp: Isp) -> None:
    admin = web.sign_in("administrator")
    tab = admin.get(SETTINGS)
    assert "Тарифы" in text_of(tab.text) and "Услуги обещанного платежа" in text_of(tab.text)
    page = admin.get(f"{SETTINGS}/tariffs/new").text
    words = text_of(page)
    for seed_words in (
        "Есть пополнение счета после предыдущего обещанного платежа",
        "Разрешать подключение обещанного платежа только один раз в текущий месяц",
        "Прошлый реал. платеж не старее n дней",
        "Прошлый не нулевой акт/абон. плата не старее n дней",
        "Максимальное количество обещанных платежей в месяц",
        "Новым абонентам дается n дней на оплату (при активации)",
    ):
        assert seed_words in words, seed_words

    wrong = submit(
        admin,
        page,
        "tariff-form",
        name="Домашний 100",
        price="abc",
        charge_method="monthly",
        grace_days="3",
        pp_payment_within_days="0",
        pp_max_per_month="40",
    )
    assert wrong.status_code == 422
    assert field_error(wrong.text, "price") == "Введите сумму: ноль или больше."
    assert "от 1 до 3660" in field_error(wrong.text, "pp_payment_within_days")
    assert "от 0 до 31" in field_error(wrong.text, "pp_max_per_month")
    assert 'value="Домашний 100"' in wrong.text and 'value="3"' in wrong.text  # kept
    assert not isp.tx(lambda c: tariffs.list_tariffs(c, isp.t))

    made = submit(
        admin,
        page,
        "tariff-form",
        name="Домашний 100",
        price="600,00",
        charge_method="daily",
        grace_days="3",
        pp_requires_topup="y",
        pp_once_a_month="y",
        pp_payment_within_days="30",
    )
    assert made.status_code == 303
    after = admin.follow(made)
    assert "Тариф «Домашний 100» добавлен." in flash(after.text)
    (tariff,) = isp.tx(lambda c: tariffs.list_tariffs(c, isp.t))
    assert (tariff.price_minor, tariff.charge_method, tariff.grace_days) == (600_00, "daily", 3)
    assert tariff.pp_requires_topup and tariff.pp_once_a_month
    assert (tariff.pp_payment_within_days, tariff.pp_charge_within_days) == (30, None)
    row = text_of(block(after.text, f"tariff-{tariff.id}"))
    assert "600,00 ₽" in row and "Ежедневно" in row

    # The same name again: refused by its field, in Russian, nothing written.
    again = submit(admin, page, "tariff-form", name="Домашний 100", price="10")
    assert again.status_code == 422
    assert field_error(again.text, "name") == "Тариф с таким названием уже есть."

    edit = admin.get(f"{SETTINGS}/tariffs/{tariff.id}").text
    assert 'value="600,00"' in edit and 'value="30"' in edit
    saved = submit(admin, edit, "tariff-form", price="650", pp_once_a_month=None)
    assert saved.status_code == 303
    changed = isp.tx(lambda c: tariffs.get_tariff(c, isp.t, tariff.id))
    assert changed.price_minor == 650_00 and not changed.pp_once_a_month
    assert changed.pp_requires_topup
    assert admin.get(f"{SETTINGS}/tariffs/999999999").status_code == 404


def test_an_administrator_sets_up_a_promised_payment_service(web: Web, isp: Isp) -> None:
    home = isp.tariff("Домашний 100")
    office = isp.tariff("Офис", price=1_500_00)
    admin = web.sign_in("administrator")
    page = admin.get(f"{SETTINGS}/services/new").text
    words = text_of(page)
    for label in (
        "Сумма обещанного платежа",
        "0 = рассчитывается автоматически",
        "Отключить через n дней",
        "Стоимость подключения услуги",
        "Комиссия за обещанный платеж (в %)",
        "Разрешить заказ через личный кабинет",
        "Активировать после первой сессии",
    ):
        assert label in words, label

    wrong = submit(
        admin, page, "service-form", name="Доверительный", amount="600", days="", commission="150"
    )
    assert wrong.status_code == 422
    assert field_error(wrong.text, "commission").startswith("Введите комиссию от 0 до 100 %")
    assert field_error(wrong.text, "days")
    assert 'value="Доверительный"' in wrong.text and 'value="150"' in wrong.text

    action, fields = form_of(page, "service-form")
    fields.update(
        name="Доверительный",
        amount="600,00",
        days="5",
        connection_price="200",
        commission="2,5",
        charge_method="monthly",
        self_service="y",
    )
    made = admin.post(action, {**fields, "tariff_ids": [str(home.id)]})
    assert made.status_code == 303
    assert "Услуга обещанного платежа «Доверительный» добавлена." in flash(admin.follow(made).text)
    (service,) = isp.tx(lambda c: tariffs.list_services(c, isp.t))
    assert (service.amount_minor, service.days, service.connection_price_minor) == (
        600_00,
        5,
        200_00,
    )
    assert service.commission_bp == 250 and service.charge_method == "monthly"
    assert service.self_service and not service.on_first_session
    assert service.tariff_ids == (home.id,)
    row = text_of(block(admin.get(SETTINGS).text, f"service-{service.id}"))
    assert "600,00 ₽" in row and "2,50 %" in row and "Домашний 100" in row and "Офис" not in row

    edit = admin.get(f"{SETTINGS}/services/{service.id}").text
    assert 'value="2,50"' in edit
    action, fields = form_of(edit, "service-form")
    fields.update(amount="0", self_service="")
    fields.pop("self_service")
    saved = admin.post(action, {**fields, "tariff_ids": [str(home.id), str(office.id)]})
    assert saved.status_code == 303
    changed = isp.tx(lambda c: tariffs.get_service(c, isp.t, service.id))
    assert changed.is_auto and not changed.self_service
    assert changed.tariff_ids == tuple(sorted((home.id, office.id)))
    assert "автоматически" in text_of(block(admin.get(SETTINGS).text, f"service-{service.id}"))


def test_the_operators_option_promised_payment_only_while_blocked(web: Web, isp: Isp) -> None:
    owner = web.sign_in("owner")
    page = owner.get(SETTINGS).text
    assert "Обещанный платеж доступен абоненту только при финансовой блокировке" in text_of(page)
    saved = submit(owner, page, "operator-form", pp_only_when_blocked="y")
    assert saved.status_code == 303
    assert isp.tx(lambda c: tariffs.get_settings(c, isp.t)).pp_only_when_blocked
    assert "checked" in block(owner.get(SETTINGS).text, "operator-form")
    submit(owner, owner.get(SETTINGS).text, "operator-form", pp_only_when_blocked=None)
    assert not isp.tx(lambda c: tariffs.get_settings(c, isp.t)).pp_only_when_blocked


# --------------------------------------------------------------------------- the list


def test_a_new_subscriber_is_made_and_found(web: Web, isp: Isp) -> None:
    tariff = isp.tariff()
    admin = web.sign_in("administrator")
    page = admin.get(f"{HOME}/new").text
    wrong = submit(
        admin,
        page,
        "new-subscriber-form",
        account_no="100 234",
        full_name="Пётр Сидоров",
        phone="12",
        threshold="300",
        password="short",
    )
    assert wrong.status_code == 422
    assert field_error(wrong.text, "threshold") == (
        "Введите порог как ноль или остаток ниже нуля, например -300,00."
    )
    assert field_error(wrong.text, "password")
    assert 'value="Пётр Сидоров"' in wrong.text and 'value="100 234"' in wrong.text
    assert 'value="short"' not in wrong.text  # a password is never sent back

    refused = submit(
        admin,
        wrong.text,
        "new-subscriber-form",
        account_no="100 234",
        full_name="Пётр Сидоров",
        phone="12",
        threshold="-300,00",
        password="",
    )
    assert refused.status_code == 422
    assert field_error(refused.text, "account_no").startswith("Номер лицевого счёта")
    fixed = submit(
        admin,
        refused.text,
        "new-subscriber-form",
        account_no="100234",
        full_name="Пётр Сидоров",
        phone="12",
        threshold="-300,00",
    )
    assert fixed.status_code == 422
    assert field_error(fixed.text, "phone") == "Введите номер телефона, например +7 916 123-45-67."

    made = submit(
        admin,
        fixed.text,
        "new-subscriber-form",
        account_no="100234",
        full_name="Пётр Сидоров",
        phone="8 916 123-45-67",
        email="petr@example.ru",
        threshold="−300,00",
        password="cabinet-secret",
        tariff_id=str(tariff.id),
    )
    assert made.status_code == 303
    card = admin.follow(made)
    assert "Абонент 100234 (Пётр Сидоров) добавлен." in flash(card.text)
    assert text_by_testid(card.text, "subscriber-threshold") == f"-300,00{NBSP}₽"
    assert "Новый, не активирован" in text_of(card.text)
    assert "пароль задан" in text_by_testid(card.text, "subscriber-cabinet")

    taken = submit(
        admin, page, "new-subscriber-form", account_no="100234", full_name="Другой", threshold="0"
    )
    assert field_error(taken.text, "account_no") == "Этот номер лицевого счёта уже занят."

    isp.subscriber(tariff, "100235", full_name="Анна Петрова", phone="+79031112233")
    cashier = web.sign_in("cashier")
    listed = cashier.get(HOME).text
    assert (
        'data-testid="subscriber-100234"' in listed and 'data-testid="subscriber-100235"' in listed
    )
    assert 'data-testid="new-subscriber"' not in listed
    for query, found, missing in (
        ("100235", "100235", "100234"),
        ("идоров", "100234", "100235"),  # SQLite folds the case of latin letters only
        ("903 111", "100235", "100234"),
    ):
        page_found = cashier.get(HOME, params={"q": query}).text
        assert f'data-testid="subscriber-{found}"' in page_found, query
        assert f'data-testid="subscriber-{missing}"' not in page_found, query
    nobody = cashier.get(HOME, params={"q": "Кузнецов"})
    assert "Ни один абонент не подходит под поиск." in text_of(nobody.text)

    # As one types, htmx asks for the table alone.
    live = cashier.get(
        HOME, params={"q": "етрова"}, headers={"HX-Request": "true", "HX-Target": "subscribers"}
    )
    assert "<html" not in live.text and 'data-testid="subscriber-100235"' in live.text


def test_the_list_filters_by_status_and_pages(web: Web, isp: Isp) -> None:
    tariff = isp.tariff(price=0)
    subs = [isp.subscriber(tariff, f"A{n:03d}") for n in range(30)]
    isp.activate(subs[0])
    cashier = web.sign_in("cashier")
    active = cashier.get(HOME, params={"status": "active"}).text
    assert (
        'data-testid="subscriber-A000"' in active and 'data-testid="subscriber-A001"' not in active
    )
    first = cashier.get(HOME).text
    assert first.count('data-testid="subscriber-A') == 25
    next_url = re.search(r'href="([^"]+)" rel="next"', first)
    assert next_url
    second = cashier.get(next_url.group(1).replace("&amp;", "&")).text
    assert second.count('data-testid="subscriber-A') == 5
    assert 'data-testid="subscriber-A029"' in second and 'rel="next"' not in second
    assert 'data-testid="first-page"' in second


def test_names_people_typed_are_shown_as_text(web: Web, isp: Isp) -> None:
    evil = '<script>alert("x")</script> & <b>Ко</b>'
    tariff = isp.tariff('Тариф <img src=x onerror="alert(1)">')
    sub = isp.subscriber(tariff, full_name=evil)
    isp.service("Услуга <i>ОП</i>")
    owner = web.sign_in("owner")
    for url in (HOME, card_url(sub), SETTINGS):
        html = owner.get(url).text
        assert "<script>alert" not in html and "<img src=x" not in html and "<i>ОП" not in html
    card = owner.get(card_url(sub)).text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;Ко&lt;/b&gt;" in card
    renamed = submit(owner, card, "contacts-form", contacts__full_name="<u>Новое</u> имя")
    assert renamed.status_code == 303
    after = owner.follow(renamed).text
    assert "&lt;u&gt;Новое&lt;/u&gt; имя" in after and "<u>Новое" not in after


# --------------------------------------------------------------------------- the card


def test_the_card_shows_the_account_and_speaks_english(web: Web, isp: Isp) -> None:
    tariff = isp.tariff(price=600_00)
    service = isp.service(amount=0)
    sub = isp.subscriber(tariff, base_limit_minor=300_00)
    isp.activate(sub)  # 600,00 cannot be charged within -300,00: blocked for debt
    cashier = web.sign_in("cashier")
    card = cashier.get(card_url(sub)).text
    assert text_by_testid(card, "subscriber-balance") == f"0,00{NBSP}₽"
    assert text_by_testid(card, "subscriber-threshold") == f"-300,00{NBSP}₽"
    assert text_by_testid(card, "subscriber-available") == f"300,00{NBSP}₽"
    assert 'data-status="blocked"' in card and "Заблокирован за долг" in text_of(card)
    assert "Домашний 100 · 600,00 ₽ · Ежемесячно" in shown(text_of(card))
    history = text_of(block(card, "subscriber-history"))
    assert "Состояние: Заблокирован за долг" in history and "Состояние: Активен" in history

    en = english(web).get(card_url(sub)).text
    words = shown(text_of(en))
    assert "Blocked for debt" in words and "Threshold now" in words
    assert text_by_testid(en, "subscriber-threshold") == "-₽300.00"
    assert "Top up the account" in words
    assert "Activate promised payment" in words
    # The automatic amount: what the charge due needs (600,00 - 300,00 available).
    offer = shown(text_of(block(en, f"offer-{service.id}")))
    assert "Lowers the threshold by ₽300.00 (calculated automatically)" in offer
    assert "May be taken" in offer


def test_a_top_up_sent_twice_pays_once_and_brings_the_service_back(web: Web, isp: Isp) -> None:
    tariff = isp.tariff(price=600_00)
    sub = isp.subscriber(tariff)
    isp.activate(sub)
    assert isp.get(sub).status == "blocked"
    cashier = web.sign_in("cashier")
    card = cashier.get(card_url(sub)).text

    wrong = submit(cashier, card, "top-up-form", topup__amount="-5")
    assert wrong.status_code == 422
    assert field_error(wrong.text, "topup-amount").startswith("Введите сумму больше нуля")
    assert 'value="-5"' in wrong.text

    first = submit(cashier, card, "top-up-form", topup__amount="1 000,00", topup__method="card")
    again = submit(cashier, card, "top-up-form", topup__amount="1 000,00", topup__method="card")
    assert first.status_code == 303 and again.status_code == 303
    assert isp.count(sub_topups) == 1
    now = isp.get(sub)
    assert now.status == "active" and now.balance_minor == 400_00  # 1000 in, 600 charged
    after = cashier.follow(again).text
    assert "Это пополнение уже проведено: форма отправлена дважды." in flash(after)
    fresh = cashier.get(card_url(sub)).text
    assert text_by_testid(fresh, "subscriber-balance") == f"400,00{NBSP}₽"
    history = text_of(block(fresh, "subscriber-history"))
    assert "Пополнение Банковская карта +1 000,00 ₽" in shown(history)
    assert "Списание по тарифу" in history

    # A new form (a new operation id) is a new top-up.
    done = submit(cashier, fresh, "top-up-form", topup__amount="100")
    assert "Пополнение на 100,00 ₽ проведено." in flash(cashier.follow(done).text)
    assert isp.count(sub_topups) == 2


def test_a_promised_payment_raises_the_threshold_and_a_second_is_refused_with_its_reason(
    web: Web, isp: Isp
) -> None:
    tariff = isp.tariff(price=20_00, method="daily", pp_once_a_month=True)
    service = isp.service(amount=600_00, days=5, connection_price_minor=200_00)
    sub = isp.subscriber(tariff)
    isp.activate(sub)
    cashier = web.sign_in("cashier")
    card = cashier.get(card_url(sub)).text
    offer = text_of(block(card, f"offer-{service.id}"))
    assert "600,00 ₽" in shown(offer) and "200,00 ₽" in shown(offer) and "Можно подключить" in offer

    taken = submit(cashier, card, "promised-form", pp__service_id=str(service.id))
    assert taken.status_code == 303
    again = submit(cashier, card, "promised-form", pp__service_id=str(service.id))
    assert again.status_code == 303  # the same form twice: one promised payment
    assert isp.count(sub_promised_payments) == 1
    after = cashier.follow(taken).text
    message = shown(flash(after))
    assert "Обещанный платёж на 600,00 ₽ подключён" in message
    assert "порог отключения теперь -600,00 ₽" in message
    assert "Абонент снова обслуживается." in message
    assert text_by_testid(after, "subscriber-threshold") == f"-600,00{NBSP}₽"
    assert text_by_testid(after, "subscriber-base-threshold") == f"0,00{NBSP}₽"
    assert 'data-status="active"' in block(after, "promised-table")
    history = text_of(block(after, "subscriber-history"))
    assert "Подключение обещанного платежа" in history and "Взят обещанный платёж" in history

    # The card says why another one is refused, and so does the form when sent anyway.
    verdict = text_by_testid(after, f"offer-verdict-{service.id}")
    assert "Обещанный платёж уже действует." in verdict
    refused = submit(cashier, after, "promised-form", pp__service_id=str(service.id))
    assert refused.status_code == 422
    assert field_error(refused.text, "pp-service_id") == "Обещанный платёж уже действует."
    assert isp.count(sub_promised_payments) == 1


def test_the_tariffs_rule_refuses_and_a_manager_may_set_it_aside(web: Web, isp: Isp) -> None:
    tariff = isp.tariff(price=20_00, method="daily", pp_payment_within_days=7)
    service = isp.service(amount=600_00, days=5)
    sub = isp.subscriber(tariff)
    isp.activate(sub)
    cashier = web.sign_in("cashier")
    card = cashier.get(card_url(sub)).text
    reason = "Не было ни одного платежа за последние 7 дней."
    assert text_by_testid(card, f"offer-verdict-{service.id}") == reason
    assert "disabled" in block(card, f"offer-{service.id}")  # the cashier cannot pick it
    # Even a hand-made post that asks to ignore the rules is refused for a cashier.
    refused = submit(
        cashier, card, "promised-form", pp__service_id=str(service.id), pp__ignore_rules="y"
    )
    assert refused.status_code == 422
    assert field_error(refused.text, "pp-service_id") == reason
    assert isp.count(sub_promised_payments) == 0

    admin = web.sign_in("administrator")
    card = admin.get(card_url(sub)).text
    assert "disabled" not in block(card, f"offer-{service.id}")
    assert "Не учитывать правила обещанного платежа тарифа" in text_of(card)
    plain = submit(admin, card, "promised-form", pp__service_id=str(service.id))
    assert field_error(plain.text, "pp-service_id") == reason
    given = submit(
        admin, card, "promised-form", pp__service_id=str(service.id), pp__ignore_rules="y"
    )
    assert given.status_code == 303
    assert isp.count(sub_promised_payments) == 1
    assert isp.get(sub).threshold_minor == -600_00


def test_the_staffs_own_actions_on_the_card(web: Web, isp: Isp) -> None:
    home, office = isp.tariff("Домашний 100"), isp.tariff("Офис", price=1_500_00)
    isp.service()
    sub = isp.subscriber(home)
    admin = web.sign_in("administrator")
    card = admin.get(card_url(sub)).text
    assert 'data-testid="activate"' in card

    enable = admin.post(f"{card_url(sub)}/enable", {})
    assert enable.status_code == 422
    assert form_error(enable.text) == "Невозможно, пока абонент «Новый, не активирован»."

    activated = admin.post(f"{card_url(sub)}/activate", {})
    assert activated.status_code == 303
    message = flash(admin.follow(activated).text)
    assert "Обслуживание начато." in message and "заблокирован за долг" in message
    assert isp.get(sub).status == "blocked"

    card = admin.get(card_url(sub)).text
    wrong = submit(admin, card, "threshold-form", threshold__threshold="500")
    assert wrong.status_code == 422
    assert field_error(wrong.text, "threshold-threshold").startswith("Введите порог")
    lowered = submit(admin, card, "threshold-form", threshold__threshold="-1000")
    assert lowered.status_code == 303
    message = shown(flash(admin.follow(lowered).text))
    assert "Порог отключения: -1 000,00 ₽." in message and "снова обслуживается" in message
    assert isp.get(sub).status == "active" and isp.get(sub).base_limit_minor == 1_000_00

    changed = submit(admin, card, "tariff-form", tariff__tariff_id=str(office.id))
    assert changed.status_code == 303
    assert isp.get(sub).tariff_id == office.id
    assert "Тариф теперь «Офис»" in flash(admin.follow(changed).text)

    short = submit(admin, card, "password-form", password__password="123")
    assert short.status_code == 422 and field_error(short.text, "password-password")
    assert submit(admin, card, "password-form", password__password="long-enough").status_code == 303
    assert isp.get(sub).has_password

    off = admin.post(f"{card_url(sub)}/disable", {})
    assert off.status_code == 303 and isp.get(sub).status == "disabled"
    card = admin.get(card_url(sub)).text
    assert "Абонент отключён: обещанный платёж не подключается." in text_of(card)
    on = admin.post(f"{card_url(sub)}/enable", {})
    assert on.status_code == 303 and isp.get(sub).status == "active"

    bad = submit(admin, card, "contacts-form", contacts__email="not-an-email")
    assert bad.status_code == 422
    assert field_error(bad.text, "contacts-email") == (
        "Введите адрес эл. почты, например anna@example.ru."
    )
    assert 'value="not-an-email"' in bad.text


# --------------------------------------------------------------------------- every refusal


@pytest.mark.parametrize("locale", ["ru", "en"])
def test_every_refusal_of_the_domain_has_words_of_its_own(locale: str) -> None:
    """No code falls through to the generic text, and none shows the English detail."""
    from kopilka.core.errors import KopilkaError

    i18n.set_locale(locale)
    params = {
        "days": 7,
        "limit": 2,
        "amount": "100.00",
        "price": "600.00",
        "needed": "700.00",
        "status": "new",
        "allowed_from": "2026-05-02T09:00:00+00:00",
    }
    generic = refusal_text(KopilkaError("no_such_code", "x"), "RUB")
    for code in SubscriberErrorCode:
        error = KopilkaError(code, "ENGLISH DETAIL", **params)
        text = refusal_text(error, "RUB")
        assert text != generic and "ENGLISH DETAIL" not in text, code
        if locale == "ru":
            assert re.search("[а-яё]", text, re.I), (code, text)

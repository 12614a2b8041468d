"""In a real browser, the subscriber's self-service cabinet of the demo provider (seed
003, "Подключение обещанного платежа в личном кабинете"): a subscriber blocked for debt
signs in, opens "Обещанный платёж", double-clicks "Активировать обещанный платёж" and
sees the threshold lowered and until when, with one promised payment taken; asking again
is refused with the reason (one is in force; once repaid, the tariff's once-a-month
rule). Then the cabinet in English, and a wrong password said by the form."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import Connection, func, select

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.ledger.posting import run_transaction
from kopilka.subscribers import billing
from kopilka.subscribers.registry import SubscriberIn, SubscriberView, create_subscriber
from kopilka.subscribers.schema import sub_promised_payments
from kopilka.subscribers.tariffs import ServiceIn, TariffIn, create_service, create_tariff

from .conftest import Live, Watched

ACTOR = Actor.cli("browser tests")
SECRET = "cabinet secret 1"


def _provider(live: Live, *, money_minor: int) -> tuple[SubscriberView, int]:
    """A tariff (600,00 a month, once a month), its promised payment service for the
    cabinet (600,00 for 5 days) and a subscriber activated yesterday with ``money_minor``
    paid in; the subscriber and the service's id."""
    t = live.demo.tenant.id
    tag = uuid.uuid4().hex[:6]
    started = utcnow() - timedelta(days=1)

    def work(conn: Connection) -> tuple[SubscriberView, int]:
        tariff = create_tariff(
            conn,
            tenant_id=t,
            data=TariffIn(f"Домашний {tag}", 600_00, "monthly", pp_once_a_month=True),
            actor=ACTOR,
        )
        service = create_service(
            conn,
            tenant_id=t,
            data=ServiceIn(
                f"Обещанный платёж {tag}",
                600_00,
                5,
                "daily",
                self_service=True,
                tariff_ids=(tariff.id,),
            ),
            actor=ACTOR,
        )
        sub = create_subscriber(
            conn,
            tenant_id=t,
            data=SubscriberIn(f"C-{tag}", "Анна Абонентова", tariff.id, password=SECRET),
            actor=ACTOR,
            now=started,
        )
        billing.activate(conn, tenant_id=t, subscriber_id=sub.id, actor=ACTOR, now=started)
        if money_minor:
            billing.top_up(
                conn,
                tenant_id=t,
                subscriber_id=sub.id,
                amount_minor=money_minor,
                operation_id=f"browser-{tag}",
                actor=ACTOR,
                now=started + timedelta(minutes=1),
            )
        return sub, service.id

    return run_transaction(live.engine, work)


def _sign_in(page: Watched, account_no: str, password: str = SECRET) -> None:
    page.goto(f"/cabinet/{page.live.demo.tenant.slug}/login")
    page.page.fill("input[name=account_no]", account_no)
    page.page.fill("input[name=password]", password)
    page.page.click("[data-testid=cabinet-sign-in]")


def _text(page: Watched, selector: str) -> str:
    return str(page.page.inner_text(selector)).replace("\u00a0", " ").replace("\u202f", " ")


def _taken(live: Live, sub: SubscriberView) -> int:
    query = select(func.count()).where(sub_promised_payments.c.subscriber_id == sub.id)
    with live.engine.connect() as conn:
        return int(conn.execute(query.select_from(sub_promised_payments)).scalar_one())


def test_a_subscriber_activates_a_promised_payment(page: Watched) -> None:
    sub, service_id = _provider(page.live, money_minor=0)
    _sign_in(page, sub.account_no)
    page.page.wait_for_selector("[data-testid=cabinet-sign-out]")
    assert "Kopilka Demo" in _text(page, "[data-testid=cabinet-tenant]")
    assert _text(page, "[data-testid=cabinet-threshold]") == "0,00 ₽"
    assert _text(page, "[data-testid=cabinet-status]") == "Заблокирован за неуплату"
    page.shot("cabinet-overview-blocked")

    page.page.click("[data-testid=cabinet-nav-promised]")
    offer = page.page.locator(f"[data-testid=offer-{service_id}]")
    assert "600,00 ₽" in _text(page, f"[data-testid=offer-{service_id}] [data-testid=offer-amount]")
    page.shot("cabinet-promised-offer")
    with page.page.expect_navigation(url=lambda url: "/promised?taken=" in url):
        offer.locator("[data-testid=take-promised]").dblclick()
    done = _text(page, "[data-testid=promised-taken]")
    assert "Обещанный платёж активирован." in done
    assert "Порог отключения теперь -600,00 ₽, до " in done
    assert _text(page, "[data-testid=cabinet-threshold]") == "-600,00 ₽"
    assert _taken(page.live, sub) == 1, "a double click takes one"
    page.shot("cabinet-promised-taken")

    # Asked again: one is in force, so the reason and no button.
    page.page.click("[data-testid=cabinet-nav-promised]")
    refusal = _text(page, f"[data-testid=offer-{service_id}] [data-testid=offer-refusal]")
    assert "У вас уже действует обещанный платёж" in refusal
    assert offer.locator("[data-testid=take-promised]").count() == 0

    # Paid back by a top-up, it is no longer in force; the tariff's rule now refuses.
    run_transaction(
        page.live.engine,
        lambda conn: billing.top_up(
            conn,
            tenant_id=page.live.demo.tenant.id,
            subscriber_id=sub.id,
            amount_minor=1_000_00,
            operation_id=f"browser-repay-{sub.account_no}",
            actor=ACTOR,
        ),
    )
    page.page.reload()
    refusal = _text(page, f"[data-testid=offer-{service_id}] [data-testid=offer-refusal]")
    assert "один обещанный платёж в календарный месяц" in refusal
    assert offer.locator("[data-testid=take-promised]").count() == 0
    page.shot("cabinet-promised-refused")

    page.page.click("[data-testid=cabinet-nav-overview]")
    assert _text(page, "[data-testid=cabinet-status]") == "Активен"
    assert "Обещанный платёж погашен" in _text(page, "[data-testid=cabinet-history]")
    page.page.click("[data-testid=cabinet-sign-out]")
    page.page.wait_for_url("**/login")


def test_the_cabinet_in_english_and_a_wrong_password(page: Watched) -> None:
    sub, _ = _provider(page.live, money_minor=1_000_00)
    _sign_in(page, sub.account_no, "not the password")
    assert "Неверный номер лицевого счёта или пароль." in _text(page, "[data-testid=form-error]")
    page.page.click("[data-testid=lang-en]")
    page.page.wait_for_selector("text=Your account number")
    _sign_in(page, sub.account_no)
    page.page.wait_for_selector("[data-testid=cabinet-sign-out]")
    assert _text(page, "[data-testid=cabinet-balance]") == "₽400.00"
    assert _text(page, "[data-testid=cabinet-status]") == "Active"
    page.page.click("[data-testid=cabinet-nav-password]")
    page.page.fill("input[name=old_password]", SECRET)
    page.page.fill("input[name=new_password]", "a new secret 2")
    page.page.fill("input[name=new_password_again]", "a new secret 2")
    page.page.click("[data-testid=password-save]")
    page.page.wait_for_selector("[data-testid=password-changed]")
    page.shot("cabinet-password-changed")

"""The online sale's public pages over HTTP (SPEC M-3, M-4, M-5, M-8, seed 004): a client
follows the studio's button, gives an e-mail, pays on the sandbox's card form and sees
the membership's number and activation code; the return and the provider's
notifications arriving in any order, any number of times, make one membership and one
e-mail; a forged notification, a tampered amount, a bad e-mail, a type not sold online
and the module switched off are refused and say so in the client's language.

The studio is ``tests.memberships.conftest``'s (a 3 % commission, "8 занятий в месяц" at
4 000,00, "Безлимит", "Пробное" not sold online), built in the web test's own tenant,
with a sandbox secret so the sandbox's notifications can be checked."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from babel.messages.pofile import read_po
from sqlalchemy import select, update

from kopilka.core.settings import get_settings
from kopilka.ledger.schema import transfers
from kopilka.mail.schema import mail_outbox
from kopilka.memberships import catalogue, checkout
from kopilka.memberships.catalogue import ButtonDesign, TypeIn
from kopilka.memberships.providers import sandbox
from kopilka.memberships.providers.base import (
    ForgedNotification,
    IgnoredNotification,
    Notification,
    ProviderError,
)
from kopilka.memberships.providers.registry import provider_for
from kopilka.memberships.schema import (
    membership_orders,
    memberships,
    provider_notifications,
    sandbox_payments,
)
from kopilka.tenancy.actions import Tenant
from kopilka.web import i18n
from kopilka.web.routes import shop as shop_routes
from tests.memberships.conftest import Studio
from tests.memberships.conftest import studio as studio  # the fixture, in this tenant
from tests.memberships.providers.conftest import stripe_api as stripe_api  # the fixture
from tests.memberships.providers.conftest import yookassa as yookassa  # the fixture
from tests.memberships.providers.stripe_stand_in import StripeStandIn
from tests.memberships.providers.yookassa_stand_in import YooKassaStandIn
from tests.web.conftest import Visitor, Web, text_of
from tests.web.test_i18n import ui_messages

NBSP = "\u00a0"
CARD_OK = "4242 4242 4242 4242"
CARD_DECLINED = "4000 0000 0000 0002"


@pytest.fixture
def tenant(web: Web) -> Tenant:
    """The studio is built in the tenant whose shop is opened."""
    return web.tenant


@pytest.fixture
def shop(studio: Studio) -> Studio:
    """The studio, its sandbox with a secret to sign notifications with."""

    def work(conn: Any) -> None:
        online = catalogue.get_settings(conn, studio.t)
        catalogue.update_settings(
            conn,
            tenant_id=studio.t,
            settings=replace(online, provider_config=sandbox.new_config()),
            actor=studio.actor,
        )

    studio.tx(work)
    return studio


@pytest.fixture
def shop_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """What the shop's doors log (the ``kopilka`` logger does not propagate to the
    root, where ``caplog`` listens)."""
    logger = logging.getLogger(shop_routes.__name__)
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger=shop_routes.__name__)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


# --------------------------------------------------------------------------- helpers


def plain(html: str) -> str:
    """What a person reads, with no-break spaces as spaces."""
    return text_of(html).replace(NBSP, " ").replace("\u202f", " ")


def client(web: Web, **headers: str) -> Visitor:
    visitor = web.visitor(**headers)
    visitor.client.follow_redirects = False
    return visitor


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def form_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page carries no form token"
    return match.group(1)


def code_of(html: str) -> str | None:
    match = re.search(r'data-error-code="([^"]+)"', html)
    return match.group(1) if match else None


def buy_url(studio: Studio, type_id: int | None = None) -> str:
    return f"/buy/{studio.tenant.slug}/{type_id or studio.eight.id}"


def send_checkout(
    visitor: Visitor, studio: Studio, email: str = "client@example.ru", **extra: str
) -> httpx.Response:
    url = buy_url(studio, int(extra.pop("type_id", 0)) or None)
    page = visitor.get(url)
    assert page.status_code == 200, plain(page.text)[:300]
    return visitor.client.post(
        url, data={"csrf_token": form_token(page.text), "email": email, **extra}
    )


def start(visitor: Visitor, studio: Studio, **kw: Any) -> tuple[str, str]:
    """Checkout sent: the sandbox card form's path and the order's return path."""
    answer = send_checkout(visitor, studio, **kw)
    assert answer.status_code == 303, plain(answer.text)[:300]
    card_form = path_of(answer.headers["location"])
    assert card_form.startswith("/sandbox/pay/sbx_")
    order = latest_order(studio)
    assert order.status == "pending"
    return card_form, f"/buy/{studio.tenant.slug}/orders/{order.token}"


def latest_order(studio: Studio) -> Any:
    return studio.read(
        lambda c: c.execute(
            select(membership_orders)
            .where(membership_orders.c.tenant_id == studio.t)
            .order_by(membership_orders.c.id.desc())
        ).first()
    )


def pay_on_card_form(
    visitor: Visitor, card_form: str, card: str = CARD_OK, action: str = "pay"
) -> httpx.Response:
    page = visitor.get(card_form)
    assert page.status_code == 200, plain(page.text)[:300]
    return visitor.client.post(
        card_form,
        data={
            "csrf_token": form_token(page.text),
            "card_number": card,
            "expiry": "12/39",
            "cvc": "123",
            "action": action,
        },
    )


def payment_id_of(card_form: str) -> str:
    return card_form.rsplit("/", 1)[1]


def signed_notification(studio: Studio, payment_id: str) -> tuple[bytes, dict[str, str]]:
    """The sandbox's own notification of how a payment stands now."""
    online = studio.read(lambda c: catalogue.get_settings(c, studio.t))
    provider = provider_for(
        "sandbox",
        online.provider_config,
        engine=studio.engine,
        public_base="http://testserver",
        tenant_id=studio.t,
    )
    assert isinstance(provider, sandbox.SandboxProvider)
    return provider.notification_for(provider.get_payment(payment_id))


def notify(
    visitor: Visitor, studio: Studio, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    return visitor.client.post(
        f"/pay/{studio.tenant.slug}/notify/sandbox", content=body, headers=headers
    )


def counts(studio: Studio) -> dict[str, int]:
    return {
        "orders": studio.count(membership_orders),
        "memberships": studio.count(memberships),
        "mail": studio.count(mail_outbox),
        "transfers": studio.count(transfers),
        "sandbox": studio.count(sandbox_payments),
    }


def notifications(studio: Studio) -> list[Any]:
    return list(
        studio.read(
            lambda c: c.execute(
                select(provider_notifications)
                .where(provider_notifications.c.tenant_id == studio.t)
                .order_by(provider_notifications.c.id)
            ).all()
        )
    )


def sold(studio: Studio) -> Any:
    return studio.read(
        lambda c: c.execute(select(memberships).where(memberships.c.tenant_id == studio.t)).one()
    )


def set_online(studio: Studio, **changes: Any) -> None:
    def work(conn: Any) -> None:
        online = catalogue.get_settings(conn, studio.t)
        catalogue.update_settings(
            conn, tenant_id=studio.t, settings=replace(online, **changes), actor=studio.actor
        )

    studio.tx(work)


# --------------------------------------------------------------------------- the whole flow


def test_a_client_buys_a_membership_through_the_sandbox(web: Web, shop: Studio) -> None:
    visitor = client(web, **{"Accept-Language": "ru-RU,ru;q=0.9"})
    page = visitor.get(buy_url(shop))
    assert page.status_code == 200
    text = plain(page.text)
    assert "8 занятий в месяц" in text and shop.tenant.name in text
    assert "Цена 4 000,00 ₽" in text
    assert "Комиссия платёжного сервиса (3 %) 120,00 ₽" in text
    assert "Итого к оплате 4 120,00 ₽" in text
    assert "shop_csrf" in page.headers["set-cookie"]
    # A page in the studio's design: its stylesheet, no inline style (the CSP allows none).
    assert f"/buy/{shop.tenant.slug}/theme.css?v=" in page.text
    assert "style=" not in page.text
    # The form leads to the provider's card form (a redirect after a POST counts).
    assert "form-action 'self' https:" in page.headers["content-security-policy"]

    answer = send_checkout(visitor, shop)
    assert answer.status_code == 303
    card_form = path_of(answer.headers["location"])
    assert card_form.startswith("/sandbox/pay/sbx_")
    form = visitor.get(card_form)
    assert form.status_code == 200
    assert "4 120,00 ₽" in plain(form.text) and "4242 4242 4242 4242" in plain(form.text)
    assert "Тестовые карты" in plain(form.text)

    paid = pay_on_card_form(visitor, card_form)
    assert paid.status_code == 303
    back = path_of(paid.headers["location"])
    order = latest_order(shop)
    assert back == f"/buy/{shop.tenant.slug}/orders/{order.token}"
    # The sandbox told Kopilka before the client came back: the sale is recorded.
    assert order.status == "paid"
    (seen,) = notifications(shop)
    assert seen.believed and seen.event == "payment.succeeded"

    success = visitor.get(back)
    assert success.status_code == 200
    membership = sold(shop)
    text = plain(success.text)
    assert 'data-state="paid"' in success.text
    assert f"Номер {membership.number}" in text
    assert membership.activation_code in text
    assert "Оплачено 4 120,00 ₽" in text
    assert "То же самое отправлено на client@example.ru." in text
    assert counts(shop) == {
        "orders": 1,
        "memberships": 1,
        "mail": 1,
        "transfers": 1,
        "sandbox": 1,
    }
    mail = shop.read(
        lambda c: c.execute(mail_outbox.select().where(mail_outbox.c.tenant_id == shop.t)).one()
    )
    assert mail.to_addr == "client@example.ru"
    assert membership.activation_code in mail.body_text and "Код активации" in mail.body_text
    # Coming back again (a reload, the back button) changes nothing.
    assert visitor.get(back).status_code == 200
    assert counts(shop)["memberships"] == 1
    shop.assert_clean()


def test_the_return_before_the_notifications_and_three_notifications(
    web: Web, shop: Studio
) -> None:
    visitor = client(web)
    card_form, back = start(visitor, shop)
    payment_id = payment_id_of(card_form)
    # The client pays, but the sandbox's notification has not arrived yet.
    sandbox.pay_with_card(shop.engine, payment_id, CARD_OK, expiry="12/39", cvc="123")
    assert latest_order(shop).status == "pending"

    returned = visitor.get(back)
    assert returned.status_code == 200 and 'data-state="paid"' in returned.text
    number = sold(shop).number
    assert number in returned.text

    body, headers = signed_notification(shop, payment_id)
    provider_side = client(web)
    for _ in range(3):
        answer = notify(provider_side, shop, body, headers)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "recorded", "order_status": "paid"}
    assert [n.believed for n in notifications(shop)] == [True, True, True]
    assert counts(shop) == {
        "orders": 1,
        "memberships": 1,
        "mail": 1,
        "transfers": 1,
        "sandbox": 1,
    }
    assert sold(shop).number == number
    shop.assert_clean()


def test_three_notifications_before_the_return(web: Web, shop: Studio) -> None:
    visitor = client(web)
    card_form, back = start(visitor, shop)
    payment_id = payment_id_of(card_form)
    sandbox.pay_with_card(shop.engine, payment_id, CARD_OK, expiry="12/39", cvc="123")
    body, headers = signed_notification(shop, payment_id)
    answers = [notify(client(web), shop, body, headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert counts(shop)["memberships"] == 1 and counts(shop)["mail"] == 1
    page = visitor.get(back)
    assert sold(shop).activation_code in page.text
    assert counts(shop)["memberships"] == 1 and counts(shop)["transfers"] == 1


def test_the_return_without_any_notification(web: Web, shop: Studio) -> None:
    visitor = client(web)
    card_form, back = start(visitor, shop)
    # Not paid yet: the page waits and reloads itself.
    waiting = visitor.get(back)
    assert waiting.status_code == 200 and 'data-state="pending"' in waiting.text
    assert '<meta http-equiv="refresh" content="3">' in waiting.text
    assert "Ожидаем оплату" in plain(waiting.text)
    sandbox.pay_with_card(shop.engine, payment_id_of(card_form), CARD_OK, expiry="1/39", cvc="1234")
    paid = visitor.get(back)
    assert 'data-state="paid"' in paid.text and "http-equiv" not in paid.text
    assert notifications(shop) == []
    assert counts(shop)["memberships"] == 1 and counts(shop)["mail"] == 1


def test_a_declined_card_a_mistyped_one_and_trying_again(web: Web, shop: Studio) -> None:
    visitor = client(web)
    card_form, back = start(visitor, shop)
    mistyped = pay_on_card_form(visitor, card_form, card="4242 4242 4242 4241")
    assert mistyped.status_code == 422
    assert code_of(mistyped.text) == "invalid_card_number"
    assert "проверьте цифры" in plain(mistyped.text)
    assert 'data-payment-status="pending"' in mistyped.text  # may try again

    declined = pay_on_card_form(visitor, card_form, card=CARD_DECLINED)
    assert declined.status_code == 200
    assert 'data-testid="sandbox-declined"' in declined.text
    assert "Карта отклонена" in plain(declined.text)
    failed = visitor.get(back)
    assert 'data-state="failed"' in failed.text
    assert f'href="{buy_url(shop)}"' in failed.text  # try again
    assert latest_order(shop).status == "canceled"
    assert counts(shop)["memberships"] == 0

    # Trying again is a new order, paid this time.
    card_form, back = start(visitor, shop)
    assert pay_on_card_form(visitor, card_form).status_code == 303
    assert 'data-state="paid"' in visitor.get(back).text
    assert counts(shop)["orders"] == 2 and counts(shop)["memberships"] == 1


def test_the_client_gives_up_on_the_card_form(web: Web, shop: Studio) -> None:
    visitor = client(web)
    card_form, back = start(visitor, shop)
    gave_up = pay_on_card_form(visitor, card_form, card="", action="cancel")
    assert gave_up.status_code == 303
    assert path_of(gave_up.headers["location"]) == back + "/cancel"
    page = visitor.get(back + "/cancel")
    assert page.status_code == 200 and 'data-state="failed"' in page.text
    assert "Попробовать ещё раз" in plain(page.text)
    assert latest_order(shop).status == "canceled"
    assert counts(shop)["memberships"] == 0


# --------------------------------------------------------------------------- not believed


def test_a_forged_notification_is_refused_and_logged(
    web: Web, shop: Studio, shop_log: pytest.LogCaptureFixture
) -> None:
    visitor = client(web)
    card_form, back = start(visitor, shop)
    payment_id = payment_id_of(card_form)
    body, headers = signed_notification(shop, payment_id)
    provider_side = client(web)

    forged_body = body.replace(b"pending", b"succeeded")
    answer = notify(provider_side, shop, forged_body, headers)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "forged_notification"
    unsigned = notify(provider_side, shop, body, {"Content-Type": "application/json"})
    assert unsigned.status_code == 400
    other_secret = sandbox.signature_header(body, "sbxsec_" + "x" * 40, int(headers_time(headers)))
    wrong = notify(provider_side, shop, body, {sandbox.SIGNATURE_HEADER: other_secret})
    assert wrong.status_code == 400

    logged = notifications(shop)
    assert [n.believed for n in logged] == [False, False, False]
    assert all(n.error for n in logged)
    assert [r.getMessage() for r in shop_log.records if "forged" in r.getMessage()]
    assert latest_order(shop).status == "pending"
    assert counts(shop)["memberships"] == 0 and counts(shop)["mail"] == 0
    assert 'data-state="pending"' in visitor.get(back).text


def headers_time(headers: dict[str, str]) -> str:
    return headers[sandbox.SIGNATURE_HEADER].split(",")[0].removeprefix("t=")


def test_a_tampered_amount_buys_nothing(web: Web, shop: Studio) -> None:
    visitor = client(web)
    # A tampered form: the price is the studio's, whatever the client sends.
    card_form, back = start(visitor, shop, total_minor="100", price="1", amount="1.00")
    order = latest_order(shop)
    assert (order.price_minor, order.commission_minor, order.total_minor) == (
        400_000,
        12_000,
        412_000,
    )
    payment_id = payment_id_of(card_form)
    sandbox.pay_with_card(shop.engine, payment_id, CARD_OK, expiry="12/39", cvc="123")
    # The provider took another amount than the order's (a payment made some other way).
    shop.tx(
        lambda c: c.execute(
            update(sandbox_payments)
            .where(sandbox_payments.c.id == payment_id)
            .values(amount_minor=100)
        )
    )
    body, headers = signed_notification(shop, payment_id)
    answer = notify(client(web), shop, body, headers)
    assert answer.status_code == 422
    assert answer.json()["code"] == "payment_mismatch"
    page = visitor.get(back)
    assert page.status_code == 422
    assert code_of(page.text) == "payment_mismatch"
    assert "Платёж не совпадает с заказом" in plain(page.text)
    assert counts(shop)["memberships"] == 0 and counts(shop)["mail"] == 0
    assert latest_order(shop).status == "pending"


def test_notifications_that_are_not_for_this_shop(web: Web, shop: Studio) -> None:
    provider_side = client(web)
    slug = shop.tenant.slug
    assert (
        provider_side.client.post("/pay/no-such-shop/notify/sandbox", content=b"{}").status_code
        == 404
    )
    wrong_provider = provider_side.client.post(f"/pay/{slug}/notify/yookassa", content=b"{}")
    assert wrong_provider.status_code == 404
    assert wrong_provider.headers["content-type"].startswith("application/problem+json")
    assert provider_side.client.post(f"/pay/{slug}/notify/paypal", content=b"{}").status_code == 404
    huge = provider_side.client.post(
        f"/pay/{slug}/notify/sandbox", content=b"x" * (shop_routes.NOTIFY_MAX_BYTES + 1)
    )
    assert huge.status_code == 413 and huge.json()["code"] == "notification_too_large"
    assert notifications(shop) == []


class _Stub:
    """A provider that cannot be reached, or that sends news of something else."""

    name = "sandbox"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def create_payment(self, request: Any) -> Any:
        raise ProviderError("connection refused", retryable=True)

    def get_payment(self, provider_payment_id: str) -> Any:
        raise ProviderError("timed out", retryable=True)

    def verify_notification(self, body: bytes, headers: Any) -> Notification:
        raise self.error


def test_a_provider_that_cannot_be_asked(
    web: Web, shop: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    visitor = client(web)
    _, back = start(visitor, shop)
    slug = shop.tenant.slug
    monkeypatch.setattr(
        checkout, "provider_of", lambda *a: _Stub(ProviderError("down", retryable=True))
    )
    answer = client(web).client.post(f"/pay/{slug}/notify/sandbox", content=b"{}")
    assert answer.status_code == 503 and answer.headers["retry-after"]
    assert answer.json()["code"] == "provider_unavailable"
    # The client's return waits, says why, and checks again.
    waiting = visitor.get(back)
    assert waiting.status_code == 200 and 'data-state="pending"' in waiting.text
    assert code_of(waiting.text) == "provider_unavailable"
    # A new checkout cannot start: said on the page, 503.
    refused = send_checkout(visitor, shop)
    assert refused.status_code == 503 and code_of(refused.text) == "provider_unavailable"
    assert "Платёжный сервис не ответил" in plain(refused.text)

    monkeypatch.setattr(checkout, "provider_of", lambda *a: _Stub(IgnoredNotification("payout")))
    ignored = client(web).client.post(f"/pay/{slug}/notify/sandbox", content=b"{}")
    assert ignored.status_code == 200 and ignored.json() == {"status": "ignored"}
    monkeypatch.setattr(checkout, "provider_of", lambda *a: _Stub(ForgedNotification("no")))
    assert client(web).client.post(f"/pay/{slug}/notify/sandbox", content=b"{}").status_code == 400


# --------------------------------------------------------------------------- real providers


def test_yookassa_notifications_are_checked_by_asking_yookassa(
    web: Web, shop: Studio, yookassa: YooKassaStandIn
) -> None:
    set_online(shop, provider="yookassa", provider_config=yookassa.config())
    visitor = client(web)
    page = visitor.get(buy_url(shop))
    # The form may lead to YooKassa's card form (here the stand-in's address).
    assert f"https: {yookassa.base_url}" in page.headers["content-security-policy"]
    answer = send_checkout(visitor, shop)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(yookassa.base_url)
    order = latest_order(shop)
    payment_id = order.provider_payment_id
    back = f"/buy/{shop.tenant.slug}/orders/{order.token}"
    provider_side = client(web)
    url = f"/pay/{shop.tenant.slug}/notify/yookassa"

    # Unsigned, so believed only as YooKassa answers: "succeeded" of a pending payment is
    # not, and one of a payment YooKassa never had is forged.
    lying = provider_side.client.post(
        url, content=yookassa.notification(payment_id, "payment.succeeded")
    )
    assert lying.status_code == 200 and lying.json()["order_status"] == "pending"
    forged = provider_side.client.post(url, content=yookassa.forged_notification())
    assert forged.status_code == 400 and forged.json()["code"] == "forged_notification"
    assert counts(shop)["memberships"] == 0

    yookassa.pay(payment_id)
    body = yookassa.notification(payment_id)
    for _ in range(3):
        heard = provider_side.client.post(url, content=body)
        assert heard.status_code == 200 and heard.json()["order_status"] == "paid"
    assert counts(shop)["memberships"] == 1 and counts(shop)["mail"] == 1
    page = visitor.get(back)
    assert sold(shop).activation_code in page.text
    assert counts(shop)["memberships"] == 1 and counts(shop)["transfers"] == 1
    shop.assert_clean()


def test_stripe_events_are_checked_by_their_signature(
    web: Web, shop: Studio, stripe_api: StripeStandIn
) -> None:
    set_online(shop, provider="stripe", provider_config=stripe_api.config())
    visitor = client(web)
    answer = send_checkout(visitor, shop)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(stripe_api.base_url)
    order = latest_order(shop)
    session_id = order.provider_payment_id
    back = f"/buy/{shop.tenant.slug}/orders/{order.token}"
    provider_side = client(web)
    url = f"/pay/{shop.tenant.slug}/notify/stripe"

    def send(body: bytes, headers: dict[str, str]) -> httpx.Response:
        return provider_side.client.post(url, content=body, headers=headers)

    # Signed with another secret, or long ago: not believed.
    forged = stripe_api.event("checkout.session.completed", session_id, secret="whsec_other")
    assert send(*forged).status_code == 400
    stale = stripe_api.event("checkout.session.completed", session_id, timestamp=1_000_000_000)
    assert send(*stale).status_code == 400
    # Signed, but for another amount than the order's: a tampered amount buys nothing.
    cheap = {
        **stripe_api.session(session_id),
        "amount_total": 100,
        "status": "complete",
        "payment_status": "paid",
    }
    tampered = send(*stripe_api.event("checkout.session.completed", session_id, session=cheap))
    assert tampered.status_code == 422 and tampered.json()["code"] == "payment_mismatch"
    assert counts(shop)["memberships"] == 0

    stripe_api.pay(session_id)
    event = stripe_api.event("checkout.session.completed", session_id)
    assert [send(*event).status_code for _ in range(3)] == [200, 200, 200]
    assert counts(shop)["memberships"] == 1 and counts(shop)["mail"] == 1
    assert sold(shop).number in visitor.get(back).text
    assert [n.believed for n in notifications(shop)] == [False, False, True, True, True, True]
    shop.assert_clean()


# --------------------------------------------------------------------------- refused checkouts


def test_a_bad_email_writes_nothing(web: Web, shop: Studio) -> None:
    visitor = client(web)
    before = counts(shop)
    for email in ("not-an-address", "", "a@b", 'quote"d@example.ru', "x" * 300 + "@example.ru"):
        answer = send_checkout(visitor, shop, email=email)
        assert answer.status_code == 422, email
        assert code_of(answer.text) == "invalid_email"
        assert "Укажите адрес электронной почты" in plain(answer.text)
        assert 'aria-invalid="true"' in answer.text
    assert counts(shop) == before


def test_a_form_without_its_token_writes_nothing(web: Web, shop: Studio) -> None:
    visitor = client(web)
    visitor.get(buy_url(shop))
    for token in ("", "forged"):
        answer = visitor.client.post(
            buy_url(shop), data={"csrf_token": token, "email": "client@example.ru"}
        )
        assert answer.status_code == 403 and code_of(answer.text) == "csrf"
        assert "Нажмите «Оплатить» ещё раз" in plain(answer.text)
    # From another site, with no cookie at all.
    stranger = client(web)
    answer = stranger.client.post(
        buy_url(shop), data={"csrf_token": "x" * 43, "email": "client@example.ru"}
    )
    assert answer.status_code == 403
    assert counts(shop)["orders"] == 0


def test_a_type_not_sold_online(web: Web, shop: Studio) -> None:
    visitor = client(web)
    page = visitor.get(buy_url(shop, shop.trial.id))
    assert page.status_code == 404 and code_of(page.text) == "not_sold_online"
    assert "Этот абонемент не продаётся онлайн." in plain(page.text)
    assert "Пробное" not in page.text and 'data-testid="checkout-form"' not in page.text
    token = form_token(visitor.get(buy_url(shop)).text)
    answer = visitor.client.post(
        buy_url(shop, shop.trial.id), data={"csrf_token": token, "email": "client@example.ru"}
    )
    assert answer.status_code == 422 and code_of(answer.text) == "not_sold_online"
    missing = visitor.get(buy_url(shop, 987_654_321))
    assert missing.status_code == 404 and code_of(missing.text) == "membership_type_not_found"
    assert counts(shop)["orders"] == 0


def test_the_module_switched_off(web: Web, shop: Studio) -> None:
    visitor = client(web)
    token = form_token(visitor.get(buy_url(shop)).text)
    set_online(shop, online_enabled=False)
    page = visitor.get(buy_url(shop))
    assert page.status_code == 404 and code_of(page.text) == "online_sale_off"
    assert f"{shop.tenant.name} сейчас не продаёт абонементы онлайн." in plain(page.text)
    answer = visitor.client.post(
        buy_url(shop), data={"csrf_token": token, "email": "client@example.ru"}
    )
    assert answer.status_code == 422 and code_of(answer.text) == "online_sale_off"
    assert counts(shop)["orders"] == 0


def test_the_module_switched_off_mid_payment_still_records_it(web: Web, shop: Studio) -> None:
    visitor = client(web)
    card_form, back = start(visitor, shop)
    set_online(shop, online_enabled=False)
    assert pay_on_card_form(visitor, card_form).status_code == 303
    assert 'data-state="paid"' in visitor.get(back).text


def test_unknown_shops_and_orders(web: Web, shop: Studio) -> None:
    visitor = client(web)
    assert visitor.get("/buy/no-such-shop/1").status_code == 404
    missing = visitor.get(f"/buy/{shop.tenant.slug}/orders/{'A' * 32}")
    assert missing.status_code == 404 and code_of(missing.text) == "order_not_found"
    assert visitor.get(f"/buy/{shop.tenant.slug}/orders/x<y>").status_code == 404
    assert visitor.get("/sandbox/pay/sbx_" + "0" * 32).status_code == 404
    # Another studio's order is not found under this one's address.
    _, back = start(visitor, shop)
    token = back.rsplit("/", 1)[1]
    assert visitor.get(f"/buy/no-such-shop/orders/{token}").status_code == 404


# --------------------------------------------------------------------------- words and design


def test_names_stay_text(web: Web, shop: Studio) -> None:
    name = '<script>alert(1)</script> Йога & "пилатес"'
    kind = shop.tx(
        lambda c: catalogue.create_type(
            c,
            tenant_id=shop.t,
            data=TypeIn(name, 100_000, 30, sell_online=True, button_text="<b>Купить</b>"),
            actor=shop.actor,
        )
    )
    visitor = client(web)
    page = visitor.get(buy_url(shop, kind.id))
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Йога &amp; &#34;пилатес&#34;" in page.text
    card_form, back = start(visitor, shop, type_id=str(kind.id), email="o'neil@example.ru")
    form = visitor.get(card_form)
    assert "<script>alert(1)" not in form.text and "&lt;script&gt;" in form.text
    assert pay_on_card_form(visitor, card_form).status_code == 303
    success = visitor.get(back)
    assert "<script>alert(1)" not in success.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in success.text
    assert "o&#39;neil@example.ru" in success.text


def test_russian_and_english(web: Web, shop: Studio) -> None:
    english = client(web, **{"Accept-Language": "en-GB,en;q=0.9"})
    page = english.get(buy_url(shop))
    assert '<html lang="en">' in page.text
    text = plain(page.text)
    assert "Total to pay ₽4,120.00" in text
    assert "Payment service commission (3%) ₽120.00" in text
    assert "30 days from activation" in text

    # A browser in another language: the studio's (Russian here).
    french = client(web, **{"Accept-Language": "fr-FR,fr;q=0.9"})
    assert "Итого к оплате 4 120,00 ₽" in plain(french.get(buy_url(shop)).text)
    assert "30 дней с момента активации" in plain(french.get(buy_url(shop)).text)

    # The client's choice wins over the browser's and is kept.
    chosen = french.get(buy_url(shop) + "?lang=en")
    assert "Total to pay" in plain(chosen.text)
    assert "kopilka_shop_locale=en" in chosen.headers["set-cookie"]
    assert "Total to pay" in plain(french.get(buy_url(shop)).text)
    refused = send_checkout(french, shop, email="nope")
    assert "Enter your e-mail address" in plain(refused.text)

    # Bought in English: the card form, the pages after and the e-mail are English.
    card_form, back = start(english, shop)
    assert "Test cards" in plain(english.get(card_form).text)
    assert pay_on_card_form(english, card_form).status_code == 303
    stranger = client(web, **{"Accept-Language": "ru"})  # the order's page, elsewhere
    text = plain(stranger.get(back).text)
    assert "Your activation code" in text and "The same was sent to client@example.ru." in text
    assert "Activation code" in latest_mail(shop).body_text
    assert "Ваш код активации" in plain(stranger.get(back + "?lang=ru").text)


def latest_mail(studio: Studio) -> Any:
    return studio.read(
        lambda c: c.execute(
            select(mail_outbox)
            .where(mail_outbox.c.tenant_id == studio.t)
            .order_by(mail_outbox.c.id.desc())
        ).first()
    )


def test_the_pages_follow_the_studios_design(web: Web, shop: Studio) -> None:
    design = ButtonDesign(
        text_color="#111111", bg_color="#FFCC00", border_color="#aa0000", radius=20, width=300
    )
    set_online(shop, button=design)
    visitor = client(web)
    page = visitor.get(buy_url(shop))
    theme_url = re.search(r'href="(/buy/[^"]+/theme\.css\?v=[0-9a-f]+)"', page.text)
    assert theme_url
    theme = visitor.get(theme_url.group(1))
    assert theme.status_code == 200 and theme.headers["content-type"].startswith("text/css")
    assert "--shop-accent:#ffcc00" in theme.text and "--shop-accent-ink:#111111" in theme.text
    assert "border-radius:20px" in theme.text and "width:300px" in theme.text
    set_online(shop, button=replace(design, bg_color="#00aa00"))
    assert theme_url.group(1) not in visitor.get(buy_url(shop)).text  # a new address


def test_every_shop_string_has_its_russian_once() -> None:
    """Every string of these pages is in Russian, and ``shop.po`` says nothing another
    catalogue says (a message has one translation)."""
    catalogue_ru = i18n.translations("ru")
    mine = [
        m for filename, _, m in ui_messages() if "shop" in filename or "sandbox_pay" in filename
    ]
    assert len(mine) > 40
    for message in mine:
        if isinstance(message, tuple):
            assert catalogue_ru.ngettext(message[0], message[1], 5) != message[1], message
        else:
            assert catalogue_ru.gettext(message) != message or message == "CVC", message
    folder = Path(i18n.TRANSLATIONS_DIR) / "ru" / "LC_MESSAGES"
    ours = msgids(folder / "shop.po")
    for po in sorted(folder.glob("*.po")):
        if po.name != "shop.po":
            assert not ours & msgids(po), (po.name, sorted(ours & msgids(po)))


def msgids(po: Path) -> set[str]:
    with po.open("rb") as handle:
        return {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(handle) if m.id}


def test_the_checkout_opens_from_any_site(web: Web, shop: Studio) -> None:
    """The studio's button is a plain link from its own site: a GET with another site as
    the referrer, no cookie, no token."""
    visitor = client(web, Referer="https://studio.example/prices", Origin="https://studio.example")
    page = visitor.get(buy_url(shop))
    assert page.status_code == 200 and 'data-testid="checkout-form"' in page.text
    cookie = page.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert f"path=/buy/{shop.tenant.slug}" in cookie.lower()


def test_the_pay_button_pressed_twice_is_one_order(web: Web, shop: Studio) -> None:
    visitor = client(web)
    url = buy_url(shop)
    page = visitor.get(url)
    key = re.search(r'name="checkout_key" value="([^"]+)"', page.text)
    assert key, "the form carries its own key"
    data = {
        "csrf_token": form_token(page.text),
        "email": "client@example.ru",
        "checkout_key": key.group(1),
    }
    first = visitor.client.post(url, data=data)
    second = visitor.client.post(url, data=data)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert counts(shop)["orders"] == 1 and counts(shop)["sandbox"] == 1
    again = visitor.get(url)  # a new form: a new order
    other = re.search(r'name="checkout_key" value="([^"]+)"', again.text)
    assert other and other.group(1) != key.group(1)


def test_one_address_begins_only_so_many_checkouts(
    web: Web, shop: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each checkout asks the provider for a payment: an address that starts too many is
    told to wait (429 with Retry-After), in the shop's words; a form sent twice is one
    order and never counts twice; another address is not held back."""
    monkeypatch.setenv("KOPILKA_CHECKOUT_LIMIT_PER_ADDRESS", "3")
    get_settings.cache_clear()
    try:
        visitor = client(web, **{"Accept-Language": "ru-RU,ru;q=0.9"})
        url = buy_url(shop)
        page = visitor.get(url)
        again = {
            "csrf_token": form_token(page.text),
            "email": "a@example.ru",
            "checkout_key": "same-form-1",
        }
        for _ in range(3):  # one form sent three times: one order
            assert visitor.client.post(url, data=again).status_code == 303
        for n in range(2):
            assert send_checkout(visitor, shop, email=f"c{n}@example.ru").status_code == 303
        before = counts(shop)
        refused = send_checkout(visitor, shop, email="late@example.ru")
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 600
        assert code_of(refused.text) == "too_many_checkouts"
        assert "слишком много оплат" in plain(refused.text)
        assert counts(shop) == before  # nothing made, the provider not asked
        # The form sent again after the limit is still its own order, not refused.
        assert visitor.client.post(url, data=again).status_code == 303
        # Another address is not held back.
        assert send_checkout(client(web), shop, email="other@example.ru").status_code == 303
    finally:
        get_settings.cache_clear()


def test_provider_secrets_are_never_logged_nor_shown(
    web: Web,
    shop: Studio,
    yookassa: YooKassaStandIn,
    stripe_api: StripeStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every log record of whole sales through both providers, a provider refusing our
    key and a provider that does not answer, at DEBUG and from every library: no secret
    in any of them; the settings screen shows a stored secret only masked."""
    caplog.set_level(logging.DEBUG)
    secrets_ = [yookassa.secret_key, stripe_api.secret_key, stripe_api.webhook_secret]
    for provider, stand_in in (("yookassa", yookassa), ("stripe", stripe_api)):
        set_online(shop, provider=provider, provider_config=stand_in.config())
        assert send_checkout(client(web), shop).status_code == 303
        # The provider refuses our key; then it does not answer at all.
        set_online(
            shop,
            provider=provider,
            provider_config=stand_in.config(secret_key="sk_wrong_k3y_0123456789"),
        )
        assert send_checkout(client(web), shop).status_code == 503
        secrets_.append("sk_wrong_k3y_0123456789")
        set_online(
            shop, provider=provider, provider_config=stand_in.config(api_base="http://127.0.0.1:9/")
        )
        assert send_checkout(client(web), shop).status_code == 503
        set_online(shop, provider=provider, provider_config=stand_in.config())
    owner = web.sign_in("owner")
    screen = owner.get("/settings/memberships")
    assert screen.status_code == 200
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert len(caplog.records) > 20  # the run was heard
    for secret in secrets_:
        assert secret not in logged, secret
        assert secret not in screen.text, secret

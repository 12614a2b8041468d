"""In a real browser, the online sale of a studio's memberships (seed 004, "Онлайн оплата
абонементов"): the studio's own site (a plain HTML page on another address, with the
buy button's snippet as the settings screen makes it) → the checkout page in the
studio's design → an e-mail → the provider's card form → the success page with the
membership's number and activation code → the e-mail with that code, taken by a real
SMTP server on 127.0.0.1.

Three providers: the built-in sandbox (its card form, the test card 4242 4242 4242
4242), and YooKassa and Stripe against their local stand-ins, whose hosted card pages
(YooKassa's confirmation page, Stripe Checkout) the browser goes through as a client
does: the card number typed, "Pay" clicked, the provider's redirect back to the shop.
Their notifications reach the live server over HTTP as each test tells the stand-in:
before the client's return (checked while the browser's return is held up), three times,
after the client is back; and a forged one, refused. A declined card, and a client who
cancels on the provider's page, are shown as such."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.ledger.posting import run_transaction
from kopilka.mail.schema import mail_outbox
from kopilka.mail.sender import deliver_due_mail
from kopilka.memberships import catalogue
from kopilka.memberships.catalogue import ButtonDesign, OnlineSettings, TypeIn
from kopilka.memberships.providers import sandbox
from kopilka.memberships.schema import membership_orders, memberships
from kopilka.tenancy.actions import Tenant, create_tenant
from kopilka.web.routes.memberships_settings import snippet
from tests.mail.conftest import SmtpServer
from tests.mail.conftest import smtp_server as smtp_server  # the fixture
from tests.memberships.providers.conftest import stripe_api as stripe_api  # the fixture
from tests.memberships.providers.conftest import yookassa as yookassa  # the fixture
from tests.memberships.providers.stand_in_server import StandInServer, post
from tests.memberships.providers.stripe_stand_in import StripeStandIn
from tests.memberships.providers.yookassa_stand_in import YooKassaStandIn

from .conftest import Live, Watched

ACTOR = Actor.cli("browser tests")
DESIGN = ButtonDesign(
    text_color="#ffffff",
    text_size=18,
    bold=True,
    bg_color="#c2185b",
    border_color="#880e4f",
    border_width=2,
    radius=24,
    width=280,
    height=52,
)


@dataclass
class Studio:
    live: Live
    tenant: Tenant
    kind: catalogue.TypeView

    @property
    def slug(self) -> str:
        return self.tenant.slug

    def notify_url(self, provider: str) -> str:
        return f"{self.live.url}/pay/{self.slug}/notify/{provider}"

    def latest_order(self) -> Any:
        with read_only(self.live.engine) as conn:
            return conn.execute(
                select(membership_orders)
                .where(membership_orders.c.tenant_id == self.tenant.id)
                .order_by(membership_orders.c.id.desc())
            ).first()

    def count(self, table: Any) -> int:
        query = select(func.count()).select_from(table).where(table.c.tenant_id == self.tenant.id)
        with read_only(self.live.engine) as conn:
            return int(conn.execute(query).scalar_one())

    def return_url(self) -> str:
        return f"{self.live.url}/buy/{self.slug}/orders/{self.latest_order().token}"


def open_studio(live: Live, provider: str, config: dict[str, str]) -> Studio:
    """A dance studio of its own, selling "8 занятий в месяц" (4 000,00 and a 3 %
    commission) online through ``provider``."""

    def work(conn: Any) -> Studio:
        tenant = create_tenant(
            conn, slug=f"studio-{uuid.uuid4().hex[:8]}", name="Студия танца «Ритм»", actor=ACTOR
        )
        catalogue.update_settings(
            conn,
            tenant_id=tenant.id,
            settings=OnlineSettings(
                online_enabled=True,
                commission_bp=300,
                provider=provider,
                provider_config=config,
                button=DESIGN,
            ),
            actor=ACTOR,
        )
        kind = catalogue.create_type(
            conn,
            tenant_id=tenant.id,
            data=TypeIn(
                "8 занятий в месяц",
                400_000,
                30,
                classes=8,
                sell_online=True,
                button_text="Купить 8 занятий",
            ),
            actor=ACTOR,
        )
        return Studio(live, tenant, kind)

    return run_transaction(live.engine, work)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def studio_site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The studio's own web site: a folder served on ``localhost`` (another site than
    Kopilka's 127.0.0.1)."""
    folder = tmp_path / "site"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield folder, f"http://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def put_button_on_site(studio: Studio, site: tuple[Path, str]) -> str:
    """The studio's price page with the buy button's snippet pasted in; its address."""
    folder, base = site
    button = snippet(studio.live.url, studio.slug, studio.kind.id, DESIGN, studio.kind.button_text)
    (folder / "prices.html").write_text(
        "<!doctype html><html lang='ru'><head><meta charset='utf-8'>"
        "<link rel='icon' href='data:,'><title>Студия танца «Ритм»: цены</title></head>"
        "<body><h1>Абонементы</h1><p>8 занятий в месяц: 4 000 ₽</p>"
        f"<p id='buy'>{button}</p></body></html>",
        encoding="utf-8",
    )
    return f"{base}/prices.html"


def text_of(page: Watched, selector: str) -> str:
    return str(page.page.inner_text(selector)).replace("\u00a0", " ").replace("\u202f", " ")


def checkout_from_the_site(page: Watched, studio: Studio, site: tuple[Path, str]) -> None:
    """From the studio's site to the provider: the button, the checkout, the e-mail."""
    page.page.goto(put_button_on_site(studio, site))
    page.page.click("#buy a")
    page.page.wait_for_selector("[data-testid=checkout-form]")
    assert page.page.url.startswith(f"{studio.live.url}/buy/{studio.slug}/{studio.kind.id}")
    assert text_of(page, "[data-testid=shop-studio]") == studio.tenant.name
    assert text_of(page, "[data-testid=type-name]") == "8 занятий в месяц"
    assert text_of(page, "[data-testid=price]") == "4 000,00 ₽"
    assert text_of(page, "[data-testid=commission]") == "120,00 ₽"
    assert text_of(page, "[data-testid=total]") == "4 120,00 ₽"
    # The studio's design: the Pay button has its colours, size and corners.
    pay = page.page.locator("[data-testid=pay]")
    style = pay.evaluate(
        "b => { const s = getComputedStyle(b); return [s.backgroundColor, s.borderRadius,"
        " s.width, s.fontSize]; }"
    )
    assert style == ["rgb(194, 24, 91)", "24px", "280px", "18px"]
    page.shot("shop-checkout")
    # A mistyped address is said on the page, in Russian.
    page.page.fill("[data-testid=email]", "anna.example.ru")
    page.page.click("[data-testid=pay]")
    page.page.wait_for_selector("[data-error-code=invalid_email]")
    assert "Укажите адрес электронной почты" in text_of(page, "[data-testid=refusal]")
    assert studio.count(membership_orders) == 0
    page.page.fill("[data-testid=email]", "anna@example.ru")
    page.page.click("[data-testid=pay]")


def the_membership_is_shown_and_mailed(
    page: Watched, studio: Studio, smtp: SmtpServer
) -> tuple[str, str]:
    page.page.wait_for_selector("[data-testid=activation-code]")
    assert page.page.url.startswith(f"{studio.live.url}/buy/{studio.slug}/orders/")
    number = text_of(page, "[data-testid=membership-number]")
    code = text_of(page, "[data-testid=activation-code]")
    with read_only(studio.live.engine) as conn:
        row = conn.execute(
            select(memberships).where(memberships.c.tenant_id == studio.tenant.id)
        ).one()
    assert (number, code) == (row.number, row.activation_code)
    assert text_of(page, "[data-testid=paid]") == "4 120,00 ₽"
    assert "То же самое отправлено на anna@example.ru." in text_of(page, "[data-testid=sent-to]")

    counts = deliver_due_mail(studio.live.engine, tenant_id=studio.tenant.id)
    assert counts.sent == 1, counts
    (message,) = smtp.wait_for(1)
    assert message["To"] == "anna@example.ru"
    assert number in str(message["Subject"])
    body = message.get_body(("plain",))
    assert body is not None
    content = body.get_content()
    assert f"Код активации: {code}" in content and "8 занятий в месяц" in content
    return number, code


def one_sale(studio: Studio) -> None:
    assert studio.count(memberships) == 1
    assert studio.count(mail_outbox) == 1
    assert studio.latest_order().status == "paid"


# --------------------------------------------------------------------------- the sandbox


def test_buying_with_the_sandbox(
    page: Watched, studio_site: tuple[Path, str], smtp_server: SmtpServer
) -> None:
    studio = open_studio(page.live, "sandbox", sandbox.new_config())
    checkout_from_the_site(page, studio, studio_site)
    page.page.wait_for_selector("[data-testid=sandbox-form]")
    assert text_of(page, "[data-testid=sandbox-amount]") == "4 120,00 ₽"
    assert "4242 4242 4242 4242" in text_of(page, "[data-testid=test-cards]")
    page.shot("shop-sandbox-card-form")
    # A card that is not one of the test cards: said, and the form stays.
    page.page.fill("[data-testid=card-number]", "5555 5555 5555 4444")
    page.page.fill("[data-testid=card-expiry]", "12/39")
    page.page.fill("[data-testid=card-cvc]", "123")
    page.page.click("[data-testid=sandbox-pay-button]")
    page.page.wait_for_selector("[data-error-code=not_a_test_card]")
    page.page.fill("[data-testid=card-number]", "4242 4242 4242 4242")
    page.page.fill("[data-testid=card-cvc]", "123")
    page.page.click("[data-testid=sandbox-pay-button]")
    the_membership_is_shown_and_mailed(page, studio, smtp_server)
    page.shot("shop-paid")
    one_sale(studio)
    # Reloading the page (or coming back to it) sells nothing more.
    page.page.reload()
    page.page.wait_for_selector("[data-testid=activation-code]")
    one_sale(studio)


# --------------------------------------------------------------------------- real providers


@dataclass
class AtReturn:
    """What Kopilka had recorded as the provider sent the browser back to the shop."""

    url: str
    order_status: str
    memberships: int


def watch_the_return(stand_in: StandInServer, studio: Studio) -> list[AtReturn]:
    """Look at the sale as the provider's page redirects the browser back (after its
    notifications, before the shop is asked): whatever is recorded then came by a
    notification."""
    seen: list[AtReturn] = []
    stand_in.before_redirect(
        lambda url: seen.append(
            AtReturn(url, studio.latest_order().status, studio.count(memberships))
        )
    )
    return seen


def at_the_providers_card_page(page: Watched, stand_in_base: str) -> None:
    """The checkout's form led the browser to the provider's card page (the page's
    Content-Security-Policy lets a form's redirect go there): the amount to pay, what for."""
    page.page.wait_for_selector("[data-testid=provider-card-form]")
    assert page.page.url.startswith(f"{stand_in_base}/")
    assert text_of(page, "[data-testid=provider-amount]") == "4120.00 RUB"
    assert text_of(page, "[data-testid=provider-description]") == "8 занятий в месяц"


def pay_at_the_provider(page: Watched, card: str = "4242 4242 4242 4242") -> None:
    page.page.fill("[data-testid=provider-card-number]", card)
    page.page.click("[data-testid=provider-pay]")


def test_buying_with_yookassa(
    page: Watched,
    studio_site: tuple[Path, str],
    smtp_server: SmtpServer,
    yookassa: YooKassaStandIn,
) -> None:
    studio = open_studio(page.live, "yookassa", yookassa.config())
    url = studio.notify_url("yookassa")
    # YooKassa, unsure it was heard, sends its notification three times, all before the
    # client is back.
    yookassa.notify_on_pay(url, times=3)
    checkout_from_the_site(page, studio, studio_site)
    at_the_providers_card_page(page, yookassa.base_url)
    payment_id = studio.latest_order().provider_payment_id
    assert yookassa.payment(payment_id)["amount"] == {"value": "4120.00", "currency": "RUB"}
    page.shot("shop-yookassa-card-page")
    at_return = watch_the_return(yookassa, studio)

    pay_at_the_provider(page)
    the_membership_is_shown_and_mailed(page, studio, smtp_server)
    assert at_return == [AtReturn(studio.return_url(), "paid", 1)]
    assert yookassa.payment(payment_id)["status"] == "succeeded"
    assert [(d.event, d.status) for d in yookassa.deliveries] == [("payment.succeeded", 200)] * 3
    one_sale(studio)
    # One about a payment YooKassa never had: refused.
    assert yookassa.send(url, yookassa.forged_notification()) == 400
    one_sale(studio)


def test_cancelling_at_yookassa(
    page: Watched, studio_site: tuple[Path, str], yookassa: YooKassaStandIn
) -> None:
    studio = open_studio(page.live, "yookassa", yookassa.config())
    url = studio.notify_url("yookassa")
    yookassa.notify_on_pay(url)
    checkout_from_the_site(page, studio, studio_site)
    at_the_providers_card_page(page, yookassa.base_url)
    payment_id = studio.latest_order().provider_payment_id
    at_return = watch_the_return(yookassa, studio)

    # The client gives up on YooKassa's page: the payment is canceled, Kopilka is told,
    # and the browser is back at the shop, which says nothing was paid.
    page.page.click("[data-testid=provider-cancel]")
    page.page.wait_for_selector("[data-testid=order][data-state=failed]")
    assert at_return == [AtReturn(studio.return_url(), "canceled", 0)]
    assert yookassa.payment(payment_id)["status"] == "canceled"
    assert [(d.event, d.status) for d in yookassa.deliveries] == [("payment.canceled", 200)]
    assert page.page.is_visible("[data-testid=try-again]")
    page.shot("shop-yookassa-canceled")
    assert studio.latest_order().status == "canceled"
    assert studio.count(memberships) == 0
    assert studio.count(mail_outbox) == 0


def test_buying_with_stripe(
    page: Watched,
    studio_site: tuple[Path, str],
    smtp_server: SmtpServer,
    stripe_api: StripeStandIn,
) -> None:
    studio = open_studio(page.live, "stripe", stripe_api.config())
    url = studio.notify_url("stripe")
    stripe_api.notify_on_pay(url)  # once, before the client is back
    checkout_from_the_site(page, studio, studio_site)
    at_the_providers_card_page(page, stripe_api.base_url)
    session_id = studio.latest_order().provider_payment_id
    assert stripe_api.session(session_id)["amount_total"] == 412_000
    page.shot("shop-stripe-checkout")
    at_return = watch_the_return(stripe_api, studio)

    # A declined card: Stripe says so on its page; nothing is paid, nobody is told.
    pay_at_the_provider(page, "4000 0000 0000 0002")
    page.page.wait_for_selector("[data-testid=provider-error][data-error-code=card_declined]")
    assert stripe_api.session(session_id)["status"] == "open"
    assert stripe_api.deliveries == []
    assert studio.latest_order().status == "pending"

    pay_at_the_provider(page)
    the_membership_is_shown_and_mailed(page, studio, smtp_server)
    assert at_return == [AtReturn(studio.return_url(), "paid", 1)]
    assert [(d.event, d.status) for d in stripe_api.deliveries] == [
        ("checkout.session.completed", 200)
    ]
    # The same event three times more: nothing new.
    assert (
        stripe_api.send_event(url, "checkout.session.completed", session_id, times=3) == [200] * 3
    )
    forged = stripe_api.event("checkout.session.completed", session_id, secret="whsec_other")
    assert post(url, *forged) == 400
    one_sale(studio)


def test_stripe_notifying_after_the_return(
    page: Watched,
    studio_site: tuple[Path, str],
    smtp_server: SmtpServer,
    stripe_api: StripeStandIn,
) -> None:
    studio = open_studio(page.live, "stripe", stripe_api.config())
    url = studio.notify_url("stripe")
    stripe_api.notify_on_pay(url, when="held")  # the event is late
    checkout_from_the_site(page, studio, studio_site)
    at_the_providers_card_page(page, stripe_api.base_url)
    at_return = watch_the_return(stripe_api, studio)

    # The client is back first: the shop asks Stripe, and sells.
    pay_at_the_provider(page)
    the_membership_is_shown_and_mailed(page, studio, smtp_server)
    assert at_return == [AtReturn(studio.return_url(), "pending", 0)]
    assert stripe_api.deliveries == []
    # The event, come at last: heard, nothing new.
    assert stripe_api.release_held() == [200]
    assert [d.event for d in stripe_api.deliveries] == ["checkout.session.completed"]
    one_sale(studio)

"""Seed 004 end to end in one browser session, as the issue asks: the studio's plain HTML
page with the buy button's snippet → the checkout → the sandbox's card form → the
success page → the e-mail with the activation code, taken by a real SMTP server → the
studio's administrator attaches the membership to a visitor by that code → and refunds
it; the visitor's profile shows it refunded. The studio is one of its own (a tenant
with an administrator), so nothing else sold in the run is counted."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import Connection

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.ledger.posting import run_transaction
from kopilka.ledger.verify import verify
from kopilka.memberships import catalogue
from kopilka.memberships.providers import sandbox
from kopilka.tenancy.actions import create_user
from tests.browser.test_shop import (
    checkout_from_the_site,
    open_studio,
    text_of,
    the_membership_is_shown_and_mailed,
)
from tests.browser.test_shop import studio_site as studio_site  # the fixture
from tests.mail.conftest import SmtpServer
from tests.mail.conftest import smtp_server as smtp_server  # the fixture

from .conftest import Watched

ACTOR = Actor.cli("browser tests")
PASSWORD = "studio-admin-1"


def test_seed_004_from_the_studios_site_to_a_refund(
    page: Watched, studio_site: tuple[Path, str], smtp_server: SmtpServer
) -> None:
    studio = open_studio(page.live, "sandbox", sandbox.new_config())
    tag = uuid.uuid4().hex[:4]
    group_name, visitor_name = f"Йога {tag}", f"Ольга Смирнова {tag}"

    def setup(conn: Connection) -> None:
        t = studio.tenant.id
        create_user(
            conn,
            tenant_id=t,
            login="admin",
            password=PASSWORD,
            role="administrator",
            actor=ACTOR,
            locale="ru",
        )
        catalogue.create_group(conn, tenant_id=t, name=group_name, actor=ACTOR)
        catalogue.create_visitor(
            conn, tenant_id=t, full_name=visitor_name, phone="+7 916 555-00-11", actor=ACTOR
        )

    run_transaction(page.live.engine, setup)

    # The client, from the studio's own site.
    checkout_from_the_site(page, studio, studio_site)
    page.page.wait_for_selector("[data-testid=sandbox-form]")
    page.page.fill("[data-testid=card-number]", "4242 4242 4242 4242")
    page.page.fill("[data-testid=card-expiry]", "12/39")
    page.page.fill("[data-testid=card-cvc]", "123")
    page.page.click("[data-testid=sandbox-pay-button]")
    number, code = the_membership_is_shown_and_mailed(page, studio, smtp_server)

    # The studio's administrator: the code the client tells at the desk opens it.
    p = page.page
    page.goto("/login")
    p.fill("input[name=tenant]", studio.slug)
    p.fill("input[name=login]", "admin")
    p.fill("input[name=password]", PASSWORD)
    p.click("[data-testid=sign-in]")
    p.wait_for_selector("[data-testid=sign-out]")
    p.click("nav.sidebar >> text=Абонементы")
    p.fill("[data-testid=membership-find-q]", code.lower())
    p.click("[data-testid=membership-find-go]")
    attach = p.locator("[data-testid=attach-form]")
    attach.wait_for()
    assert number in text_of(page, "main")
    attach.locator("[data-testid=visitor-q]").fill(f"смирнова {tag}")
    choice = attach.locator("[data-testid=visitor-choices] label").filter(has_text=visitor_name)
    choice.locator("input[type=radio]").check()
    attach.locator("[data-testid=group-choices] label").filter(has_text=group_name).locator(
        "input"
    ).check()
    attach.locator("[data-testid=attach]").click()
    p.wait_for_selector("[data-testid=visitor-title]")
    held = p.locator(f"[data-testid=held-{number}]")
    assert "Закреплён" in held.inner_text() and group_name in held.inner_text()

    # Refunded whole through the sandbox: the payment shown first, then confirmed.
    held.locator(f"[data-testid=refund-{number}]").click()
    facts = text_of(page, "[data-testid=payment-facts]")
    assert "4 120,00 ₽" in facts and "120,00 ₽" in facts
    p.locator("[data-testid=refund-form] [data-testid=refund-next]").click()
    p.click("[data-testid=refund-execute]")
    p.wait_for_selector("text=Возврат 4 120,00 ₽ проведён")
    p.click("[data-testid=payment-visitor]")
    held = p.locator(f"[data-testid=held-{number}]")
    assert held.get_attribute("data-status") == "refunded"
    assert (
        sandbox.get_sandbox_payment(
            page.live.engine, studio.latest_order().provider_payment_id
        ).refunded_minor
        == 412_000
    )
    with read_only(page.live.engine) as conn:
        assert verify(conn, tenant_id=studio.tenant.id) == []

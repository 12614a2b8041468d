"""Seed 004 end to end in one browser session, as the issue asks: the studio's plain HTML
page with the buy button's snippet → the checkout → the sandbox's card form → the
success page → the e-mail with the activation code, taken by a real SMTP server → a
member of the staff attaches the membership to a visitor by that code → and refunds it;
the visitor's profile shows it refunded. The demo studio (``kopilka demo``) sells it."""

from __future__ import annotations

import uuid
from pathlib import Path

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.ledger.posting import run_transaction
from kopilka.ledger.verify import verify
from kopilka.memberships import catalogue
from tests.browser.test_shop import (
    DESIGN,
    Studio,
    checkout_from_the_site,
    text_of,
    the_membership_is_shown_and_mailed,
)
from tests.browser.test_shop import (
    studio_site as studio_site,  # the fixture
)
from tests.mail.conftest import SmtpServer
from tests.mail.conftest import smtp_server as smtp_server  # the fixture

from .conftest import Watched


def test_seed_004_from_the_studios_site_to_a_refund(
    page: Watched, studio_site: tuple[Path, str], smtp_server: SmtpServer
) -> None:
    live = page.live
    tenant = live.demo.tenant
    tag = uuid.uuid4().hex[:4]
    group_name, visitor_name = f"Йога {tag}", f"Ольга Смирнова {tag}"

    def setup(conn: object) -> catalogue.TypeView:
        from sqlalchemy import Connection

        assert isinstance(conn, Connection)
        settings = catalogue.get_settings(conn, tenant.id)
        catalogue.update_settings(
            conn,
            tenant_id=tenant.id,
            settings=catalogue.OnlineSettings(
                online_enabled=True,
                commission_bp=300,
                provider="sandbox",
                provider_config=settings.provider_config,
                button=DESIGN,
            ),
            actor=Actor.cli("tests"),
        )
        catalogue.create_group(conn, tenant_id=tenant.id, name=group_name, actor=Actor.cli("t"))
        catalogue.create_visitor(
            conn,
            tenant_id=tenant.id,
            full_name=visitor_name,
            phone="+7 916 555-00-11",
            actor=Actor.cli("t"),
        )
        return next(
            t for t in catalogue.list_types(conn, tenant.id) if t.name == "8 занятий в месяц"
        )

    kind = run_transaction(live.engine, setup)
    studio = Studio(live, tenant, kind)
    # The client, on the studio's site.
    checkout_from_the_site(page, studio, studio_site)
    page.page.wait_for_selector("[data-testid=sandbox-form]")
    page.page.fill("[data-testid=card-number]", "4242 4242 4242 4242")
    page.page.fill("[data-testid=card-expiry]", "12/39")
    page.page.fill("[data-testid=card-cvc]", "123")
    page.page.click("[data-testid=sandbox-pay-button]")
    number, code = the_membership_is_shown_and_mailed(page, studio, smtp_server)

    # The staff: the code the client tells at the desk opens the membership.
    p = page.page
    page.sign_in("administrator")
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
    with read_only(live.engine) as conn:
        assert verify(conn, tenant_id=tenant.id) == []

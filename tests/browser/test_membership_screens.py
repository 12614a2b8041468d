"""In a real browser, a studio's administrator lives through seed 004:

the online sale is switched on in Settings → Memberships with a 3 % commission and the
sandbox provider; a permanent membership type is added, its button's text unlocked by
"Allow online sale"; a group is added; the buy button's preview follows its background
colour as it is picked, and the button's HTML is copied for the studio's site. A client
buys the membership through the sandbox (the checkout, the sandbox's card page, the
return, all through the domain); the membership shows among those not attached, is
attached to a visitor found by name as it is typed, and is refunded whole through the
sandbox: the payment shown first, a confirmation, and the visitor's profile then shows
it refunded.
"""

from __future__ import annotations

import uuid
from typing import Any

from kopilka.core.actor import Actor
from kopilka.ledger.posting import run_transaction
from kopilka.memberships import catalogue, checkout
from kopilka.memberships.providers import registry, sandbox

from .conftest import Live, Watched


def _text(page: Watched, selector: str) -> str:
    return str(page.page.inner_text(selector)).replace("\u00a0", " ").strip()


def _rgb(colour: str) -> str:
    """``#2f6fdf`` as the browser computes it: ``rgb(47, 111, 223)``."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


def _sell(live: Live, type_name: str, email: str) -> str:
    """A client buys the type on the studio's site: the sandbox's card paid, the return
    recorded. The membership's number."""
    engine, tenant_id = live.engine, live.demo.tenant.id
    with engine.connect() as conn:
        kind = next(t for t in catalogue.list_types(conn, tenant_id) if t.name == type_name)
        settings = catalogue.get_settings(conn, tenant_id)
    provider = registry.provider_for(
        settings.provider,
        settings.provider_config,
        engine=engine,
        public_base=live.url,
        tenant_id=tenant_id,
    )
    order = checkout.begin(
        engine,
        provider,
        tenant_id=tenant_id,
        type_id=kind.id,
        email=email,
        locale="ru",
        urls_for=lambda o: checkout.Urls(f"{live.url}/x/{o.token}", f"{live.url}/y/{o.token}"),
    )
    assert order.provider_payment_id is not None
    sandbox.pay_with_card(
        engine, order.provider_payment_id, "4242 4242 4242 4242", expiry="12/39", cvc="123"
    )
    paid = checkout.on_return(
        engine, provider, tenant_id=tenant_id, token=order.token, actor=Actor.cli("client")
    )
    assert paid.status == "paid" and paid.membership_id is not None
    return f"M-{paid.id:06d}"


def _visitor(live: Live, name: str) -> Any:
    return run_transaction(
        live.engine,
        lambda conn: catalogue.create_visitor(
            conn,
            tenant_id=live.demo.tenant.id,
            full_name=name,
            phone="+7 916 700-11-22",
            actor=Actor.cli("tests"),
        ),
    )


def test_seed_004_a_membership_sold_online_attached_and_refunded(page: Watched) -> None:
    tag = uuid.uuid4().hex[:4]
    type_name, group_name, visitor_name = f"8 занятий {tag}", f"Йога {tag}", f"Ольга Танцева {tag}"
    p = page.page
    page.sign_in("administrator")

    # Settings → Memberships: the module on, 3 % on top, the sandbox.
    p.click("nav.sidebar >> text=Настройки")
    p.click(".subnav >> text=Абонементы")
    online = p.locator("[data-testid=online-form]")
    online.locator("input[name=online_enabled]").check()
    online.locator("input[name=commission]").fill("3")
    online.locator("select[name=provider]").select_option("sandbox")
    online.locator("[data-testid=save-online]").click()
    p.wait_for_selector("text=Онлайн-продажа включена, настройки сохранены.")

    # A permanent type: its button's text is locked until the online sale is allowed.
    p.click("[data-testid=sub-types]")
    p.click("[data-testid=new-type]")
    form = p.locator("[data-testid=type-form]")
    form.locator("input[name=name]").fill(type_name)
    form.locator("input[name=price]").fill("4000")
    form.locator("input[name=classes]").fill("8")
    form.locator("input[name=validity_days]").fill("30")
    button_text = form.locator("input[name=button_text]")
    assert button_text.is_disabled()
    form.locator("input[name=sell_online]").check()
    assert button_text.is_enabled()
    button_text.fill(f"Купить {tag}")
    form.locator("[data-testid=save-type]").click()
    p.wait_for_selector(f"text=Тип абонемента «{type_name}» добавлен.")

    p.click("[data-testid=sub-groups]")
    p.locator("[data-testid=group-form] input[name=name]").fill(group_name)
    p.click("[data-testid=save-group]")
    p.wait_for_selector(f"text=Группа «{group_name}» добавлена.")

    # The buttons: the preview follows the colour as it is picked; the HTML is copied.
    p.click("[data-testid=sub-online]")
    preview = p.locator("[data-testid=button-preview]")
    background = p.locator("[data-testid=design-form] input[name=bg_color]")
    assert preview.evaluate("e => getComputedStyle(e).backgroundColor") == _rgb(
        background.input_value()
    )
    background.fill("#ff0000")
    assert preview.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 0, 0)"
    p.locator("[data-testid=design-form] input[name=width]").fill("300")
    assert preview.evaluate("e => e.getBoundingClientRect().width") == 300
    page.shot("membership-settings")
    p.click("[data-testid=save-design]")
    p.wait_for_selector("text=Дизайн кнопок сохранён")
    snippet = p.locator("[data-testid=snippets] .snippet").filter(has_text=type_name)
    html = snippet.locator("textarea").input_value()
    assert f">Купить {tag}</a>" in html and "background:#ff0000;" in html
    assert f"/buy/{page.live.demo.tenant.slug}/" in html
    p.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=page.live.url)
    snippet.locator("button[data-copy]").click()
    snippet.locator("[data-copied]").filter(has_text="Скопировано").wait_for()
    assert p.evaluate("navigator.clipboard.readText()") == html

    # A client buys it; it waits among the memberships not attached.
    number = _sell(page.live, type_name, f"olga.{tag}@example.ru")
    _visitor(page.live, visitor_name)
    p.click("nav.sidebar >> text=Абонементы")
    row = p.locator(f"[data-testid=membership-{number}]")
    assert type_name in row.inner_text() and f"olga.{tag}@example.ru" in row.inner_text()

    # Its number typed (scanned) into the search opens it; the visitor found as typed.
    p.fill("[data-testid=membership-find-q]", number)
    p.click("[data-testid=membership-find-go]")
    attach = p.locator("[data-testid=attach-form]")
    attach.wait_for()
    attach.locator("[data-testid=visitor-q]").fill(f"Танцева {tag}")
    suggestion = attach.locator("[data-testid=visitor-choices] label").filter(has_text=visitor_name)
    suggestion.locator("input[type=radio]").check()
    attach.locator("[data-testid=group-choices] label").filter(has_text=group_name).locator(
        "input"
    ).check()
    attach.locator("[data-testid=class-choices]").filter(has_text="нет предстоящих").wait_for()
    page.shot("membership-attach")
    attach.locator("[data-testid=attach]").click()
    p.wait_for_selector("[data-testid=visitor-title]")
    assert _text(page, "[data-testid=visitor-title]") == visitor_name
    held = p.locator(f"[data-testid=held-{number}]")
    assert "Закреплён" in held.inner_text() and group_name in held.inner_text()

    # Refunded whole through the sandbox, from the visitor's profile.
    held.locator(f"[data-testid=refund-{number}]").click()
    facts = _text(page, "[data-testid=payment-facts]")
    assert "4 120,00 ₽" in facts and "120,00 ₽" in facts and "sbx_" in facts
    refund = p.locator("[data-testid=refund-form]")
    assert refund.locator("input[name=amount]").input_value() == "4120,00"
    refund.locator("[data-testid=refund-next]").click()
    summary = _text(page, "[data-testid=refund-summary]")
    assert "4 120,00 ₽" in summary and visitor_name in summary
    page.shot("membership-refund-confirm")
    p.click("[data-testid=refund-execute]")
    p.wait_for_selector("text=Возврат 4 120,00 ₽ проведён")
    assert p.locator(f"text=отмечен возвращённым в профиле посетителя {visitor_name}").count()
    p.click("[data-testid=payment-visitor]")
    held = p.locator(f"[data-testid=held-{number}]")
    assert held.get_attribute("data-status") == "refunded"
    assert "Возвращён полностью" in held.inner_text()
    page.shot("membership-visitor")

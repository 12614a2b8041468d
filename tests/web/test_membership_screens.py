"""Memberships on screen (SPEC M-1 … M-8, X-1, X-2, X-4; seed 004): Settings → Memberships
(the module, the commission, the provider with its secrets never shown back, the
notification address, the buttons' design with the HTML to copy, types, groups and
classes), the memberships sold and not attached, attaching one found by its number or
activation code to a visitor found by name or phone (or added on the spot), the visitor's
profile, and refunds through the built-in sandbox provider: the payment shown first, a
confirmation, a confirmation sent twice refunding once, a provider that does not answer
leaving the refund waiting; every refusal by its form in the user's language, nothing
written; who may do what, and only in their own company."""

from __future__ import annotations

import html
import re
import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from kopilka.core.actor import Actor
from kopilka.memberships import attaching, catalogue, checkout
from kopilka.memberships.attaching import MembershipView
from kopilka.memberships.catalogue import TypeIn
from kopilka.memberships.error_codes import MembershipErrorCode
from kopilka.memberships.providers import registry, sandbox
from kopilka.memberships.providers.base import ProviderError
from kopilka.memberships.sales import OrderView
from kopilka.memberships.schema import (
    membership_refunds,
    sandbox_payments,
    sandbox_refunds,
    visitors,
)
from kopilka.tenancy.actions import Tenant, create_tenant, create_user
from kopilka.tenancy.roles import PERMISSIONS
from kopilka.web import i18n
from kopilka.web.routes.memberships import refusal_text
from tests.memberships.conftest import Studio
from tests.memberships.conftest import studio as studio  # the fixture, in this tenant
from tests.web.conftest import PASSWORD, ROLES, Visitor, Web, text_of
from tests.web.test_front_desk import block, field_error, form_error, form_of, submit

ACTOR = Actor.cli("tests")
HOME = "/memberships"
SETTINGS = "/settings/memberships"
NBSP = "\u00a0"
BASE = "http://testserver"


@pytest.fixture
def tenant(web: Web) -> Tenant:
    """The studio (``studio``) is built in the tenant whose staff sign in."""
    return web.tenant


def flash(page: str) -> str:
    return " ".join(
        re.sub(r"\s+", " ", m).strip() for m in re.findall(r'class="flash[^"]*"[^>]*>(.*?)<', page)
    )


def shown(text: str) -> str:
    return text.replace(NBSP, " ").replace("\u202f", " ")


def sell(
    studio: Studio, kind: catalogue.TypeView | None = None, email: str = "olga@example.ru"
) -> tuple[OrderView, MembershipView]:
    """A membership bought for real through the sandbox: the checkout, the card paid on
    the sandbox's page, the client's return recorded (the sandbox asked)."""
    provider = registry.provider_for(
        "sandbox", {}, engine=studio.engine, public_base=BASE, tenant_id=studio.t
    )
    order = checkout.begin(
        studio.engine,
        provider,
        tenant_id=studio.t,
        type_id=(kind or studio.eight).id,
        email=email,
        locale="ru",
        urls_for=lambda o: checkout.Urls(f"{BASE}/back/{o.token}", f"{BASE}/cancel/{o.token}"),
    )
    assert order.provider_payment_id and order.provider_payment_id.startswith("sbx_")
    sandbox.pay_with_card(
        studio.engine, order.provider_payment_id, "4242 4242 4242 4242", expiry="12/39", cvc="123"
    )
    paid: OrderView = checkout.on_return(
        studio.engine, provider, tenant_id=studio.t, token=order.token, actor=studio.actor
    )
    assert paid.status == "paid" and paid.membership_id is not None
    membership = studio.read(lambda c: attaching.get_membership(c, studio.t, paid.membership_id))
    return paid, membership


def membership_now(studio: Studio, membership: MembershipView) -> MembershipView:
    return studio.read(lambda c: attaching.get_membership(c, studio.t, membership.id))


def sandbox_refunded(studio: Studio, order: OrderView) -> int:
    query = select(sandbox_payments.c.refunded_minor).where(
        sandbox_payments.c.id == order.provider_payment_id
    )
    return int(studio.read(lambda c: c.execute(query).scalar_one()))


def english(web: Web, role: str) -> Visitor:
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


def visitor_named(studio: Studio, name: str, **kw: Any) -> catalogue.VisitorView:
    return studio.tx(
        lambda c: catalogue.create_visitor(
            c, tenant_id=studio.t, full_name=name, actor=studio.actor, **kw
        )
    )


def textarea(page: str, testid: str) -> str:
    """What a ``<textarea>`` holds, as the browser shows it (entities read once)."""
    match = re.search(
        rf'<textarea[^>]*data-testid="{re.escape(testid)}"[^>]*>(.*?)</textarea>', page, re.S
    )
    assert match, f"no textarea {testid}"
    return html.unescape(match.group(1))


# --------------------------------------------------------------------------- who may


def test_who_may_attach_refund_and_set_up(web: Web, studio: Studio) -> None:
    """Read from the one table of permissions: everyone at the desk attaches; refunds
    and the settings are the managers'; another company sees nothing of it."""
    _order, membership = sell(studio)
    desk_roles = sorted(PERMISSIONS["memberships"] - PERMISSIONS["memberships.refunds"])
    assert set(desk_roles) == {"cashier", "front_desk"}
    assert PERMISSIONS["memberships"] == set(ROLES)
    assert PERMISSIONS["settings.memberships"] == {"owner", "administrator"}
    for role in desk_roles:
        desk = web.sign_in(role)
        home = desk.get("/")
        assert 'href="/memberships"' in home.text and "Абонементы" in text_of(home.text)
        listed = desk.get(HOME)
        assert listed.status_code == 200
        assert f'data-testid="membership-{membership.number}"' in listed.text
        assert 'data-testid="tab-refunds"' not in listed.text
        page = desk.get(f"{HOME}/{membership.id}")
        assert page.status_code == 200 and 'data-testid="attach-form"' in page.text
        assert 'data-testid="open-refund"' not in page.text
        assert desk.get(f"{HOME}/refunds").status_code == 403
        assert desk.get(f"{HOME}/{membership.id}/refund").status_code == 403
        sent = desk.post(f"{HOME}/{membership.id}/refund", {"amount": "10"})
        assert sent.status_code == 403
        assert desk.get(SETTINGS).status_code == 403
        assert desk.get(f"{SETTINGS}/types").status_code == 403
        assert desk.post(f"{SETTINGS}/online", {"commission": "5"}).status_code == 403
    assert studio.count(membership_refunds) == 0
    assert studio.read(lambda c: catalogue.get_settings(c, studio.t)).commission_bp == 300

    for role in ("owner", "administrator"):
        manager = web.sign_in(role)
        assert manager.get(SETTINGS).status_code == 200
        assert manager.get(f"{HOME}/{membership.id}/refund").status_code == 200
        assert 'data-testid="tab-memberships"' in manager.get("/settings/users").text
        assert 'data-testid="open-refund"' in manager.get(f"{HOME}/{membership.id}").text

    stranger = other_tenant(web)
    assert stranger.get(f"{HOME}/{membership.id}").status_code == 404
    assert stranger.get(f"{HOME}/{membership.id}/refund").status_code == 404
    assert f'membership-{membership.number}"' not in stranger.get(HOME).text
    found = stranger.get(f"{HOME}/find", params={"q": membership.activation_code})
    assert "Нет абонемента с таким номером или кодом активации." in field_error(found.text, "q")
    sent = stranger.post(
        f"{HOME}/{membership.id}/attach",
        {"new_name": "Чужой", "group_ids": str(studio.yoga.id), "valid_from": "2026-01-01"},
    )
    assert sent.status_code == 404
    assert membership_now(studio, membership).status == "unattached"


def test_a_form_without_the_csrf_token_attaches_nothing(web: Web, studio: Studio) -> None:
    _order, membership = sell(studio)
    desk = web.sign_in("front_desk")
    action, fields = form_of(desk.get(f"{HOME}/{membership.id}").text, "attach-form")
    fields.update(new_name="Ольга Смирнова", group_ids=str(studio.yoga.id))
    fields.pop("csrf_token")
    sent = desk.client.post(action, data=fields, follow_redirects=False)
    assert sent.status_code == 403
    assert membership_now(studio, membership).status == "unattached"
    assert studio.count(visitors) == 0


# --------------------------------------------------------------------------- settings


def test_the_online_sale_is_set_up_and_secrets_never_come_back(web: Web, studio: Studio) -> None:
    admin = web.sign_in("administrator")
    page = admin.get(SETTINGS).text
    words = text_of(page)
    for label in ("Продавать абонементы онлайн", "Комиссия платёжного сервиса", "Платёжный сервис"):
        assert label in words, label
    assert text_of(block(page, "notify-yookassa")) == (
        f"{BASE}/pay/{web.tenant.slug}/notify/yookassa"
    )
    assert 'data-testid="not-https"' in page  # the test server is http

    # A commission out of its rules, and YooKassa switched on without its keys.
    wrong = submit(admin, page, "online-form", commission="101", provider="yookassa", yk_shop_id="")
    assert wrong.status_code == 422
    assert field_error(wrong.text, "commission").startswith("Введите комиссию от 0 до 100 %")
    assert 'value="101"' in wrong.text
    fixed = submit(admin, wrong.text, "online-form", commission="2,5", provider="yookassa")
    assert fixed.status_code == 422
    assert field_error(fixed.text, "yk_shop_id") == (
        "Введите идентификатор магазина из личного кабинета ЮKassa: цифры, например 123456."
    )
    assert field_error(fixed.text, "yk_secret_key") == (
        "Введите секретный ключ из кабинета платёжного сервиса."
    )
    letters = submit(
        admin, fixed.text, "online-form", yk_shop_id="shop-one", yk_secret_key="test_key_1"
    )
    assert field_error(letters.text, "yk_shop_id").startswith("Введите идентификатор магазина")
    assert 'value="test_key_1"' not in letters.text  # a secret is never sent back
    assert studio.read(lambda c: catalogue.get_settings(c, studio.t)).provider == "sandbox"

    secret = "test_Fh8hjw8dSecretKey0042"
    saved = submit(
        admin,
        fixed.text,
        "online-form",
        commission="2,5",
        provider="yookassa",
        yk_shop_id="123456",
        yk_secret_key=secret,
    )
    assert saved.status_code == 303, text_of(saved.text)[:800]
    after = admin.follow(saved)
    assert "Онлайн-продажа включена, настройки сохранены." in flash(after.text)
    settings = studio.read(lambda c: catalogue.get_settings(c, studio.t))
    assert (settings.provider, settings.commission_bp, settings.online_enabled) == (
        "yookassa",
        250,
        True,
    )
    assert settings.provider_config["secret_key"] == secret
    assert secret not in after.text and "••••0042" in after.text
    assert 'value="123456"' in after.text and 'value="2,50"' in after.text

    # A secret left empty keeps the stored one; the shop id may be changed alone.
    again = submit(admin, after.text, "online-form", yk_shop_id="654321")
    assert again.status_code == 303
    settings = studio.read(lambda c: catalogue.get_settings(c, studio.t))
    assert settings.provider_config == {"shop_id": "654321", "secret_key": secret}

    # Another provider never inherits this one's secret.
    stripe = submit(admin, admin.get(SETTINGS).text, "online-form", provider="stripe")
    assert stripe.status_code == 422
    assert field_error(stripe.text, "stripe_secret_key").endswith("sk_.")
    assert field_error(stripe.text, "stripe_webhook_secret").endswith("whsec_.")
    assert secret not in stripe.text

    # Switched off, back to the sandbox: it gets a secret of its own for notifications.
    off = submit(
        admin, admin.get(SETTINGS).text, "online-form", online_enabled=None, provider="sandbox"
    )
    assert off.status_code == 303
    settings = studio.read(lambda c: catalogue.get_settings(c, studio.t))
    assert not settings.online_enabled and settings.provider == "sandbox"
    assert set(settings.provider_config) == {"secret"}
    assert settings.provider_config["secret"] not in admin.get(SETTINGS).text
    assert 'data-testid="online-off"' in admin.get(SETTINGS).text


def test_the_buttons_design_is_checked_and_the_snippet_escapes_the_text(
    web: Web, studio: Studio
) -> None:
    hostile = studio.tx(
        lambda c: catalogue.create_type(
            c,
            tenant_id=studio.t,
            data=TypeIn(
                "Хитрый",
                100_000,
                30,
                sell_online=True,
                button_text='<script>alert("x")</script> & «Купить»',
            ),
            actor=studio.actor,
        )
    )
    admin = web.sign_in("administrator")
    page = admin.get(SETTINGS).text
    assert "<script>alert" not in page
    design = studio.read(lambda c: catalogue.get_settings(c, studio.t)).button
    snippet = textarea(page, f"snippet-html-{hostile.id}")
    assert snippet == (
        f'<a href="{BASE}/buy/{web.tenant.slug}/{hostile.id}" style="{design.css()}">'
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; «Купить»</a>"
    )
    plain = textarea(page, f"snippet-html-{studio.eight.id}")
    assert plain.endswith(">Купить 8 занятий</a>")
    assert f'data-testid="snippet-{studio.trial.id}"' not in page  # not sold online
    assert 'data-testid="copy-' in page and 'data-copy="snippet-' in page

    # The nine parameters in the seed's words; wrong ones refused by their fields.
    words = text_of(block(page, "design-form"))
    for label in (
        "Цвет текста",
        "Размер текста (пиксели)",
        "Жирный текст",
        "Цвет фона",
        "Цвет рамки",
        "Толщина рамки (пикселей)",
        "Скругление углов (пиксели)",
        "Ширина кнопки (пикселей)",
        "Высота кнопки (пикселей)",
    ):
        assert label in words, label
    wrong = submit(admin, page, "design-form", text_color="red", bg_color="#12345g", width="5")
    assert wrong.status_code == 422
    assert field_error(wrong.text, "text_color") == "Введите цвет, например #2f6fdf."
    assert field_error(wrong.text, "bg_color") == "Введите цвет, например #2f6fdf."
    assert field_error(wrong.text, "width") == "Введите целое число от 40 до 1000."
    assert 'value="red"' in wrong.text  # kept as typed
    assert studio.read(lambda c: catalogue.get_settings(c, studio.t)).button == design

    saved = submit(
        admin, page, "design-form", text_color="#000000", bg_color="#FFCC00", bold=None, radius="20"
    )
    assert saved.status_code == 303
    button = studio.read(lambda c: catalogue.get_settings(c, studio.t)).button
    assert (button.text_color, button.bg_color, button.bold, button.radius) == (
        "#000000",
        "#ffcc00",
        False,
        20,
    )
    after = admin.follow(saved).text
    snippet = textarea(after, f"snippet-html-{studio.eight.id}")
    assert "color:#000000;" in snippet and "background:#ffcc00;" in snippet
    assert "font-weight:400;" in snippet and "border-radius:20px;" in snippet


def test_membership_types_only_permanent_ones_sold_online(web: Web, studio: Studio) -> None:
    admin = web.sign_in("administrator")
    listed = admin.get(f"{SETTINGS}/types").text
    row = text_of(block(listed, f"type-{studio.eight.id}"))
    assert "8 занятий в месяц" in row and "4 000,00 ₽" in shown(row) and "Купить 8 занятий" in row
    page = admin.get(f"{SETTINGS}/types/new").text
    assert "Разрешить продажу онлайн" in text_of(page) and "Текст кнопки" in text_of(page)
    # The button's text is locked until the online sale is allowed (seed 004).
    assert re.search(
        r'<input[^>]*disabled[^>]*name="button_text"|<input[^>]*name="button_text"[^>]*disabled',
        page,
    )

    not_permanent = submit(
        admin,
        page,
        "type-form",
        name="Разовое",
        price="500",
        validity_days="1",
        is_permanent=None,
        sell_online="y",
        button_text="Купить",
    )
    assert not_permanent.status_code == 422
    assert field_error(not_permanent.text, "sell_online") == (
        "Онлайн продаются только постоянные абонементы."
    )
    no_text = submit(
        admin, page, "type-form", name="Утро", price="3000", validity_days="30", sell_online="y"
    )
    assert no_text.status_code == 422
    assert field_error(no_text.text, "button_text").startswith("Для продажи онлайн нужен текст")
    assert not re.search(r'name="button_text"[^>]*disabled', no_text.text)  # unlocked now
    wrong = submit(
        admin, page, "type-form", name="Утро", price="abc", validity_days="0", classes="x"
    )
    assert wrong.status_code == 422
    assert field_error(wrong.text, "price")
    assert field_error(wrong.text, "validity_days") == "Введите целое число от 1 до 3660."
    assert field_error(wrong.text, "classes").endswith("или оставьте поле пустым.")
    taken = submit(admin, page, "type-form", name="Безлимит", price="10", validity_days="30")
    assert field_error(taken.text, "name") == "Тип абонемента с таким названием уже есть."

    made = submit(
        admin,
        page,
        "type-form",
        name="Утро",
        price="3 000,00",
        validity_days="30",
        classes="12",
        sell_online="y",
        button_text="  Купить   утро ",
    )
    assert made.status_code == 303
    assert "Тип абонемента «Утро» добавлен." in flash(admin.follow(made).text)
    morning = next(
        t for t in studio.read(lambda c: catalogue.list_types(c, studio.t)) if t.name == "Утро"
    )
    assert (morning.price_minor, morning.classes, morning.validity_days) == (300_000, 12, 30)
    assert morning.sell_online and morning.button_text == "Купить утро"

    # Unticked, the locked text is not sent, and is kept for when it is ticked again.
    edit = admin.get(f"{SETTINGS}/types/{morning.id}").text
    assert 'value="3000,00"' in edit
    saved = submit(admin, edit, "type-form", sell_online=None, button_text=None, classes="")
    assert saved.status_code == 303
    morning = studio.read(lambda c: catalogue.get_type(c, studio.t, morning.id))
    assert not morning.sell_online and morning.button_text == "Купить утро"
    assert morning.classes is None
    assert admin.get(f"{SETTINGS}/types/999999999").status_code == 404


def test_groups_and_their_classes(web: Web, studio: Studio) -> None:
    owner = web.sign_in("owner")
    page = owner.get(f"{SETTINGS}/groups").text
    assert "Йога" in text_of(block(page, "groups-table"))
    taken = submit(owner, page, "group-form", name="Йога")
    assert taken.status_code == 422
    assert field_error(taken.text, "name") == "Группа с таким названием уже есть."
    made = submit(owner, page, "group-form", name="Стретчинг")
    assert made.status_code == 303
    group_page = owner.follow(made)
    assert "Группа «Стретчинг» добавлена." in flash(group_page.text)
    wrong = submit(
        owner, group_page.text, "class-form", starts_at="завтра", minutes="0", capacity="-1"
    )
    assert wrong.status_code == 422
    assert field_error(wrong.text, "starts_at")
    assert field_error(wrong.text, "minutes") == "Введите целое число от 1 до 1440."
    assert field_error(wrong.text, "capacity")
    added = submit(
        owner,
        group_page.text,
        "class-form",
        starts_at="2099-03-31T18:00",
        minutes="90",
        capacity="12",
    )
    assert added.status_code == 303
    after = owner.follow(added).text
    (stretch,) = [
        g
        for g in studio.read(lambda c: catalogue.list_groups(c, studio.t))
        if g.name == "Стретчинг"
    ]
    (lesson,) = studio.read(lambda c: catalogue.list_classes(c, studio.t, group_ids=[stretch.id]))
    assert lesson.minutes == 90 and lesson.capacity == 12
    assert lesson.starts_at.hour == 15  # 18:00 in Moscow
    assert "31.03.2099" in text_of(block(after, f"class-{lesson.id}"))


# --------------------------------------------------------------------------- attaching


def test_attaching_a_membership_found_by_its_code_to_a_visitor_found_by_phone(
    web: Web, studio: Studio
) -> None:
    olga = visitor_named(studio, "Ольга Смирнова", phone="+7 916 111-22-33")
    _order, membership = sell(studio, email="olga@example.ru")
    desk = web.sign_in("front_desk")

    # The list of memberships not attached: number, type, sold, e-mail.
    row = text_of(block(desk.get(HOME).text, f"membership-{membership.number}"))
    assert "8 занятий в месяц" in row and "olga@example.ru" in row and "Не закреплён" in row

    # Typed or scanned: a code in any case opens it; an unknown one says so by the field.
    found = desk.get(
        f"{HOME}/find", params={"q": membership.activation_code.lower()}, follow_redirects=False
    )
    assert found.status_code == 303 and found.headers["location"] == f"{HOME}/{membership.id}"
    by_number = desk.get(
        f"{HOME}/find", params={"q": str(int(membership.number[2:]))}, follow_redirects=False
    )
    assert by_number.headers["location"] == f"{HOME}/{membership.id}"
    unknown = desk.get(f"{HOME}/find", params={"q": "ZZZZ-9999"})
    assert field_error(unknown.text, "q") == ("Нет абонемента с таким номером или кодом активации.")
    assert 'value="ZZZZ-9999"' in unknown.text

    page = desk.get(f"{HOME}/{membership.id}").text
    assert "Закрепить за посетителем" in text_of(page)
    action, fields = form_of(page, "attach-form")
    assert action == f"{HOME}/{membership.id}/attach"
    assert fields["valid_from"] and fields["valid_until"]

    # The visitor suggested as the phone is typed (htmx asks for that part only).
    suggested = desk.post(
        f"{HOME}/{membership.id}/choices",
        {**fields, "visitor_q": "111-22"},
        headers={"HX-Request": "true", "HX-Target": "visitor-choices"},
    )
    assert suggested.status_code == 200 and "<html" not in suggested.text
    assert (
        f'data-testid="visitor-{olga.id}"' in suggested.text and "Ольга Смирнова" in suggested.text
    )
    # The classes of the groups ticked, asked for as they are ticked.
    classes = desk.post(
        f"{HOME}/{membership.id}/choices",
        {**fields, "group_ids": str(studio.yoga.id)},
        headers={"HX-Request": "true", "HX-Target": "class-choices"},
    )
    assert f'data-testid="class-{studio.yoga_class.id}"' in classes.text

    # Nothing chosen: said by each part of the form, what was typed kept.
    empty = desk.post(action, {**fields, "visitor_q": "Ольга"})
    assert empty.status_code == 422
    assert field_error(empty.text, "visitor_id") == (
        "Выберите посетителя, найденного по имени или телефону, или введите имя нового."
    )
    assert field_error(empty.text, "group_ids") == "Выберите хотя бы одну группу."
    assert 'value="Ольга"' in empty.text

    # A class of a group not chosen is refused by the domain; nothing is written.
    wrong = desk.post(
        action,
        {
            **fields,
            "visitor_id": str(olga.id),
            "group_ids": str(studio.dance.id),
            "class_ids": str(studio.yoga_class.id),
        },
    )
    assert wrong.status_code == 422
    assert field_error(wrong.text, "class_ids") == "Бронируйте только занятия выбранных групп."
    assert re.search(rf'value="{studio.dance.id}" checked', block(wrong.text, "group-choices"))
    assert membership_now(studio, membership).status == "unattached"

    saved = desk.post(
        action,
        {
            **fields,
            "visitor_id": str(olga.id),
            "group_ids": [str(studio.yoga.id), str(studio.dance.id)],
            "class_ids": str(studio.yoga_class.id),
            "valid_from": "2026-03-01",
            "valid_until": "2026-03-31",
        },
    )
    assert saved.status_code == 303 and saved.headers["location"] == f"{HOME}/visitors/{olga.id}"
    profile = desk.follow(saved).text
    assert f"Абонемент {membership.number} (действует 1 мар. 2026" in flash(profile)
    assert "закреплён за посетителем Ольга Смирнова." in flash(profile)
    held = text_of(block(profile, f"held-{membership.number}"))
    assert "Закреплён" in held and "Йога" in held and "Танцы" in held
    assert "1 мар. 2026" in held and "31 мар. 2026" in held
    attached = membership_now(studio, membership)
    assert attached.status == "attached" and attached.visitor_id == olga.id
    assert attached.booked_class_ids == (studio.yoga_class.id,)

    # Attached once: the page has no form, and another attempt is refused on top.
    assert 'data-testid="attach-form"' not in desk.get(f"{HOME}/{membership.id}").text
    again = desk.post(
        action, {**fields, "visitor_id": str(olga.id), "group_ids": str(studio.yoga.id)}
    )
    assert again.status_code == 422
    assert form_error(again.text) == (
        "Этот абонемент уже закреплён: его код активации использован."
    )
    assert membership_now(studio, membership).visitor_id == olga.id


def test_a_new_visitor_is_added_with_the_attaching_or_not_at_all(web: Web, studio: Studio) -> None:
    _order, membership = sell(studio)
    cashier = web.sign_in("cashier")
    page = cashier.get(f"{HOME}/{membership.id}").text
    action, fields = form_of(page, "attach-form")
    wrong = cashier.post(
        action,
        {
            **fields,
            "new_name": "Анна Новая",
            "new_phone": "12",
            "group_ids": str(studio.yoga.id),
            "valid_until": "2020-01-01",
        },
    )
    assert wrong.status_code == 422
    assert (
        field_error(wrong.text, "valid_until") == "Срок действия кончается раньше, чем начинается."
    )
    wrong = cashier.post(
        action,
        {**fields, "new_name": "Анна Новая", "new_phone": "12", "group_ids": str(studio.yoga.id)},
    )
    assert wrong.status_code == 422
    assert (
        field_error(wrong.text, "new_phone") == "Введите номер телефона, например +7 916 123-45-67."
    )
    assert 'value="Анна Новая"' in wrong.text
    assert studio.count(visitors) == 0  # refused: the visitor is not added either

    saved = cashier.post(
        action,
        {
            **fields,
            "new_name": "Анна Новая",
            "new_phone": "8 916 222-33-44",
            "new_email": "anna@example.ru",
            "group_ids": str(studio.dance.id),
        },
    )
    assert saved.status_code == 303
    (anna,) = studio.read(lambda c: catalogue.find_visitors(c, studio.t, "2223344"))
    assert anna.full_name == "Анна Новая" and anna.email == "anna@example.ru"
    attached = membership_now(studio, membership)
    assert attached.visitor_id == anna.id and attached.group_ids == (studio.dance.id,)
    assert (attached.valid_until - attached.valid_from).days == 29  # the type's 30 days
    found = cashier.get(f"{HOME}/visitors", params={"q": "новая"}).text
    assert f'data-testid="visitor-row-{anna.id}"' in found


# --------------------------------------------------------------------------- refunds


def _refund_page(admin: Visitor, membership: MembershipView) -> str:
    found = admin.get(f"{HOME}/refunds", params={"q": membership.number}, follow_redirects=False)
    assert found.status_code == 303
    return admin.follow(found).text


def test_a_refund_through_the_sandbox_shows_the_payment_first_and_refunds_once(
    web: Web, studio: Studio
) -> None:
    order, membership = sell(studio, email="Olga@Example.ru")
    olga = visitor_named(studio, "Ольга Смирнова")
    studio.tx(
        lambda c: attaching.attach(
            c,
            tenant_id=studio.t,
            membership_id=membership.id,
            visitor_id=olga.id,
            group_ids=[studio.yoga.id],
            actor=studio.actor,
        )
    )
    admin = web.sign_in("administrator")

    # Found by the client's e-mail too.
    by_email = admin.get(f"{HOME}/refunds", params={"q": "olga@example.ru"}).text
    assert f'data-testid="candidate-{membership.number}"' in by_email
    nobody = admin.get(f"{HOME}/refunds", params={"q": "nobody@example.ru"}).text
    assert field_error(nobody, "q") == "Абонементов, купленных с этой эл. почтой, нет."

    page = _refund_page(admin, membership)
    facts = shown(text_of(block(page, "payment-facts")))
    assert order.provider_payment_id in facts and "Песочница" in facts
    assert "4 120,00 ₽" in facts and "120,00 ₽" in facts  # paid, the 3 % commission
    action, fields = form_of(page, "refund-form")
    assert fields["amount"] == "4120,00"  # what is left
    assert fields["operation_id"]

    too_much = admin.post(action, {**fields, "amount": "4120,01"})
    assert too_much.status_code == 422
    assert shown(field_error(too_much.text, "amount")) == "Вернуть можно не больше 4 120,00 ₽."
    assert 'value="4120,01"' in too_much.text

    # A part: the confirmation says what will happen; nothing is refunded before it.
    asked = admin.post(action, {**fields, "amount": "1000"})
    assert asked.status_code == 200
    summary = shown(text_of(block(asked.text, "refund-summary")))
    assert "1 000,00 ₽" in summary and "Olga@example.ru" in summary and "Песочница" in summary
    assert studio.count(membership_refunds) == 0
    confirm_action, confirm = form_of(asked.text, "refund-confirm-form")
    assert confirm["operation_id"] == fields["operation_id"]
    done = admin.post(confirm_action, confirm)
    assert done.status_code == 303
    assert "Возврат 1 000,00 ₽ проведён" in shown(flash(admin.follow(done).text))
    assert sandbox_refunded(studio, order) == 100_000

    # The same confirmation sent again: said so, refunded once.
    twice = admin.post(confirm_action, confirm)
    assert twice.status_code == 303
    assert "Этот возврат уже оформлен: форма была отправлена дважды." in flash(
        admin.follow(twice).text
    )
    assert sandbox_refunded(studio, order) == 100_000
    assert studio.count(membership_refunds) == 1
    assert studio.count(sandbox_refunds) == 1

    # The rest: the membership is refunded and so marked on the visitor's profile.
    page = admin.get(f"{HOME}/{membership.id}/refund").text
    action, fields = form_of(page, "refund-form")
    assert fields["amount"] == "3120,00"
    asked = admin.post(action, fields)
    assert "будет отмечен возвращённым в профиле" in text_of(asked.text)
    confirm_action, confirm = form_of(asked.text, "refund-confirm-form")
    done = admin.follow(admin.post(confirm_action, confirm)).text
    assert (
        f"Абонемент {membership.number} отмечен возвращённым в профиле посетителя Ольга Смирнова."
        in flash(done)
    )
    assert 'data-testid="nothing-to-refund"' in done
    assert sandbox_refunded(studio, order) == 412_000
    assert membership_now(studio, membership).status == "refunded"
    profile = admin.get(f"{HOME}/visitors/{olga.id}").text
    assert 'data-status="refunded"' in block(profile, f"held-{membership.number}")
    assert "Возвращён" in text_of(block(profile, f"held-{membership.number}"))
    studio.assert_clean()


def test_a_provider_that_does_not_answer_leaves_the_refund_waiting(
    web: Web, studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    order, membership = sell(studio)
    admin = web.sign_in("owner")
    page = _refund_page(admin, membership)
    action, fields = form_of(page, "refund-form")
    asked = admin.post(action, fields)  # the whole payment
    confirm_action, confirm = form_of(asked.text, "refund-confirm-form")

    real_refund = sandbox.SandboxProvider.refund

    def times_out(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise ProviderError("timed out", retryable=True)

    monkeypatch.setattr(sandbox.SandboxProvider, "refund", times_out)
    failed = admin.post(confirm_action, confirm)
    assert failed.status_code == 503
    assert form_error(failed.text) == (
        "Платёжный сервис не ответил: возврат ждёт. Попробуйте ещё раз чуть позже."
    )
    (waiting,) = studio.read(
        lambda c: c.execute(
            select(membership_refunds).where(membership_refunds.c.tenant_id == studio.t)
        ).all()
    )
    assert waiting.status == "pending" and sandbox_refunded(studio, order) == 0
    # The page says what waits, and the same confirmation is offered again.
    again_action, again = form_of(failed.text, "refund-confirm-form")
    assert again == confirm

    monkeypatch.setattr(sandbox.SandboxProvider, "refund", real_refund)
    done = admin.post(again_action, again)
    assert done.status_code == 303
    assert "Возврат 4 120,00 ₽ проведён" in shown(flash(admin.follow(done).text))
    assert sandbox_refunded(studio, order) == 412_000
    assert studio.count(membership_refunds) == 1
    assert membership_now(studio, membership).status == "refunded"
    studio.assert_clean()


def test_a_waiting_refund_is_asked_again_from_the_list(
    web: Web, studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    order, membership = sell(studio)
    admin = web.sign_in("owner")
    page = _refund_page(admin, membership)
    action, fields = form_of(page, "refund-form")
    asked = admin.post(action, {**fields, "amount": "4120,00"})
    confirm_action, confirm = form_of(asked.text, "refund-confirm-form")
    real_refund = sandbox.SandboxProvider.refund
    monkeypatch.setattr(
        sandbox.SandboxProvider,
        "refund",
        lambda *a, **k: (_ for _ in ()).throw(ProviderError("down", retryable=True)),
    )
    assert admin.post(confirm_action, confirm).status_code == 503
    page = admin.get(f"{HOME}/{membership.id}/refund").text
    (waiting_id,) = re.findall(r'data-testid="retry-(\d+)"', page)
    assert 'data-testid="nothing-to-refund"' in page  # the whole amount is waiting
    monkeypatch.setattr(sandbox.SandboxProvider, "refund", real_refund)
    retried = admin.post(f"{HOME}/{membership.id}/refund/retry", {"refund_id": waiting_id})
    assert retried.status_code == 303
    assert "Возврат 4 120,00 ₽ проведён" in shown(flash(admin.follow(retried).text))
    assert membership_now(studio, membership).status == "refunded"
    assert sandbox_refunded(studio, order) == 412_000


def test_every_refusal_of_the_domain_has_its_words() -> None:
    """Each code of ``memberships.error_codes`` reads as a sentence in both languages."""
    from kopilka.core.errors import KopilkaError

    for locale in ("ru", "en"):
        i18n.set_locale(locale)
        for code in MembershipErrorCode:
            text = refusal_text(KopilkaError(code, "detail in English"), "RUB")
            assert "detail in English" not in text, (locale, code)
            assert text.endswith("."), (locale, code, text)
    i18n.set_locale("ru")


def test_the_screens_speak_english_too(web: Web, studio: Studio) -> None:
    _order, membership = sell(studio)
    admin = english(web, "administrator")
    words = text_of(admin.get(HOME).text)
    assert "Memberships sold" in words and "Not attached" in words and "Sold" in words
    assert "Attach to a visitor" in text_of(admin.get(f"{HOME}/{membership.id}").text)
    page = admin.get(f"{HOME}/{membership.id}/refund").text
    facts = shown(text_of(block(page, "payment-facts")))
    assert "₽4,120.00" in facts and "Sandbox (for trying it out)" in facts
    settings = text_of(admin.get(SETTINGS).text)
    assert "Online sale" in settings and "Text size (pixels)" in settings


def test_a_confirmation_sent_twice_at_once_refunds_once(web: Web, studio: Studio) -> None:
    """A double click: the same confirmation twice at the same moment (PostgreSQL runs
    them truly at once)."""
    if studio.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: the race is PostgreSQL's")
    order, membership = sell(studio)
    admin = web.sign_in("owner")
    page = _refund_page(admin, membership)
    action, fields = form_of(page, "refund-form")
    confirm_action, confirm = form_of(admin.post(action, fields).text, "refund-confirm-form")
    twin = web.visitor()
    twin.client.cookies.update(admin.client.cookies)
    twin.csrf = admin.csrf
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def click(who: Visitor) -> None:
        barrier.wait()
        codes.append(who.post(confirm_action, confirm).status_code)

    threads = [threading.Thread(target=click, args=(v,)) for v in (admin, twin)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # One of them refunds; the other finds it made, or (the sandbox books a refund's key
    # before it locks the payment, so the late twin may be told "more than is left")
    # says to try again: never a second refund.
    assert 303 in codes and set(codes) <= {303, 503}, codes
    assert studio.count(membership_refunds) == 1 and studio.count(sandbox_refunds) == 1
    assert sandbox_refunded(studio, order) == 412_000
    assert membership_now(studio, membership).status == "refunded"
    studio.assert_clean()
